"""Intake of one SalesIQ call: drop repeats, find or create the conversation, store every message,
run the bot's turn, and, when the turn filed a ticket, wait briefly so the reply can carry its number.

A repeated delivery (same `request.id` or flat `message_id`) gets the stored answer and changes nothing.
A turn is one transaction, written in one flush at its end (the turn is on the webhook's hot path:
docs/performance/webhook.md): the delivery record goes in last, with the answer, so a concurrent
repeat fails on its unique key and is rolled back whole. If the bot fails, the turn is rolled back and
redone as a hand-over with the customer's line stored, so a bot failure loses nothing they said.
"""
from __future__ import annotations

import logging
import time

from flask import current_app
from sqlalchemy import bindparam, insert, literal_column, select, update
from sqlalchemy.exc import IntegrityError

from .. import clock, conversations, notifications
from ..bot import engine, redaction
from ..bot.engine import Turn
from ..extensions import db
from ..models import CREATED, FAILED, Conversation, TicketRequest, WebhookDelivery
from ..prebuilt import Prebuilt, connection, together
from .payload import Inbound
from .responses import BotReply

log = logging.getLogger(__name__)

SECRET_MASK = "•••• (verification answer hidden)"


def process(inbound: Inbound, *, retried: bool = False) -> dict:
    key = inbound.delivery_key
    stored, found = _look_up(key, inbound.conversation_key)
    if stored is not None:
        return stored
    try:
        conv, turn = _handle(inbound, found)
        body = turn.reply.to_json()
        wait = turn.ticket is not None and _reply_wait() > 0
        if turn.ticket is not None and not wait:
            body = _with_line(body, _filing_line(conv))
        _commit_turn(conv, key, body, keep_loaded=not wait)
    except IntegrityError:
        # Nothing of this attempt's turn was kept. Either the same delivery was answered meanwhile (its
        # record won the unique key): give its answer; or another message of a new chat opened its
        # conversation first (the open key): the turn runs again, once, on that conversation.
        db.session.rollback()
        stored = _stored_answer(key) if key else None
        if stored is not None:
            return stored
        if retried or found is not None:
            raise
        return process(inbound, retried=True)

    if wait:
        extra = _ticket_reply(turn.ticket.id, conv)
        if extra:
            body = _with_line(body, extra)
            if key:
                _REANSWER.run(connection(db.session()), {"k": key, "answer": body})
            db.session.commit()
    return body


def _commit_turn(conv: Conversation | None, key: str | None, body: dict, *, keep_loaded: bool) -> None:
    """Write the turn and, last, its delivery record with the answer, and commit. The conversation's
    change goes as one plain UPDATE when it is all the turn changed (conversations.write_changes);
    otherwise (a ticket filed, a customer verified) the ORM's flush writes everything."""
    session = db.session()
    turn_connection = connection(session)
    # The writes go together at the block's end (PostgreSQL: as one statement; prebuilt.together), and
    # the commit follows at once: `last`, so that one statement alone goes as its own transaction.
    with together(turn_connection, last=True):
        if conv is None or not conversations.write_changes(conv):
            session.flush()
        if key:
            _RECORD.run(turn_connection, {"key": key, "conversation_id": conv.id if conv else None,
                                          "response": body, "created_at": clock.now()})
    if keep_loaded:
        # Nothing reads the turn's objects after this commit (the request ends): expiring them all would
        # only cost time. The ticket wait reads the ticket and the conversation afresh, so it expires.
        conversations.commit_keeping_loaded()
    else:
        db.session.commit()


def _with_line(body: dict, line: str) -> dict:
    return {**body, "replies": body["replies"] + [line]}


def _handle(inbound: Inbound, found: Conversation | None):
    if inbound.handler == "trigger":
        return _trigger(inbound, found)
    if inbound.handler not in ("message", "context"):
        # Unknown handlers (e.g. a failure notice) are acknowledged; nothing changes (spec §3 [U]).
        log.info("acknowledged SalesIQ handler %r", inbound.handler)
        return None, Turn(BotReply(["Sorry, something went wrong on our side. Please type your message again."]))
    text = inbound.text
    if inbound.handler == "context":
        text = " ".join(str(a.get("text", a)) if isinstance(a, dict) else str(a) for a in inbound.answers.values())
        if not inbound.conversation_key or not text.strip():
            return None, Turn(BotReply(["Thanks! What can I help you with?"]))
    conv = conversations.open_found(inbound, found, deferred=True)
    try:
        # Nothing is written until the turn's end: one flush instead of one per query the bot makes,
        # and the turn's lines and timeline entries as plain rows.
        conversations.batch_rows()
        with db.session.no_autoflush:
            turn, _lines = run_turn(conv, text, savepoint=False)
    except Exception as exc:
        db.session.rollback()
        if found is None and isinstance(exc, IntegrityError) and conversations.find_open(inbound.conversation_key):
            # A new chat's conversation flushed mid-turn (an escalation needs its id) lost the open key
            # to another line of the chat, whose conversation is there now: not the bot's failure;
            # `process` runs the turn again on it.
            raise
        log.exception("bot turn failed on conversation %s", conv.id or "(new)")
        conv = conversations.open_conversation(inbound)
        _store_customer_line(conv, text)
        reply = _fallback_hand_over(conv)
        _store_bot_lines(conv, reply)
        turn = Turn(reply)
    return conv, turn


def run_turn(conv, text: str, *, savepoint: bool = True) -> tuple[Turn, list]:
    """Store the customer's line (masked if it answers a secret question), then run the bot's turn in a
    savepoint: a failing bot hands the chat to a person and loses nothing said. Returns the turn and
    the bot lines it stored. Without the savepoint (the webhook, which owns its transaction) a failing
    bot raises and the caller rolls back and hands over."""
    _store_customer_line(conv, text)
    if not savepoint:
        turn = engine.respond(conv, text)
        return turn, _store_bot_lines(conv, turn.reply)
    db.session.flush()
    try:
        with db.session.begin_nested():
            turn = engine.respond(conv, text)
            lines = _store_bot_lines(conv, turn.reply)
    except Exception:
        log.exception("bot turn failed on conversation %s", conv.id)
        reply = _fallback_hand_over(conv)
        return Turn(reply), _store_bot_lines(conv, reply)
    return turn, lines


def answer_through_rest(conv, text: str) -> Turn:
    """A visitor line that reached us as an event (after a SalesIQ hand-over that an agent gave back to
    the bot): the bot answers through the REST API, since there is no webhook reply to carry it."""
    turn, lines = run_turn(conv, text)
    for message in lines:
        notifications.queue_chat_line(message, "bot_message")
    if turn.reply.action == "forward":
        notifications.queue("transfer_chat", key=f"conv{conv.id}:transfer:{len(conv.messages)}",
                            channel=notifications.CHAT, recipient=conv.salesiq_id, conversation=conv)
    return turn


def _fallback_hand_over(conv) -> BotReply:
    """The bot failed: hand the chat to a person, recording it if the database lets us."""
    db.session.refresh(conv)
    try:
        with db.session.begin_nested():
            reply = engine.hand_over(conv, "bot_error")
        return reply
    except Exception:
        log.exception("could not record the hand-over of conversation %s", conv.id)
        return BotReply(["Sorry, something went wrong. I'm connecting you with our support team."],
                        action="forward", department=current_app.config.get("SALESIQ_DEPARTMENT_ID"))


def _trigger(inbound: Inbound, found: Conversation | None):
    if not inbound.conversation_key:
        return None, Turn(engine.greet(None, inbound.visitor.name))
    conv = conversations.open_found(inbound, found, deferred=True)
    reply = engine.greet(conv, inbound.visitor.name or conv.visitor_name)
    _store_bot_lines(conv, reply)
    return conv, Turn(reply)


def _store_customer_line(conv, text: str) -> None:
    secret = engine.expects_secret(conv)
    stored = SECRET_MASK if secret else redaction.redact(text or "(attachment)")
    conversations.add_message(conv, "customer", stored, masked=secret or stored != text)


def _store_bot_lines(conv, reply: BotReply) -> list:
    return [conversations.add_message(conv, "bot", text) for text in reply.texts() if text]


def _reply_wait() -> float:
    return float(current_app.config.get("TICKET_REPLY_WAIT", 3.0))


def _filing_line(conv) -> str:
    text = "I'm filing your ticket now; I'll post the ticket number here in a moment."
    conversations.add_message(conv, "bot", text)
    return text


def _ticket_reply(request_id: int, conv) -> str | None:
    """Wait up to TICKET_REPLY_WAIT for the ticket job; the chat line if the number can go in this reply."""
    deadline = time.monotonic() + _reply_wait()
    while True:
        db.session.rollback()  # end the read snapshot, so the worker's commit is visible
        request = db.session.get(TicketRequest, request_id)
        if request.state == CREATED:
            if notifications.claim_inline_chat(request):
                text = notifications.chat_text("ticket_chat", request)
                conversations.add_message(conv, "bot", text)
                conversations.record_event(conv, "notification", "ticket_chat sent via reply")
                db.session.commit()
                return text
            return None
        if request.state == FAILED or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if request.state == FAILED:
        return None  # the failure path tells the customer through its own follow-up
    text = _filing_line(conv)
    db.session.commit()
    return text


def _stored_answer(key: str) -> dict | None:
    return db.session.scalar(select(WebhookDelivery.response).where(WebhookDelivery.key == key))


# Built once: constructing a statement costs more than running it, and these run on every call
# (docs/performance/webhook.md). The delivery record, and its answer rewritten when a ticket's number
# made it into the reply:
_RECORD = Prebuilt(insert(WebhookDelivery.__table__))
_REANSWER = Prebuilt(update(WebhookDelivery.__table__).where(WebhookDelivery.__table__.c.key == bindparam("k"))
                     .values(response=bindparam("answer")))
# The stored answer and the open conversation's columns (a NULL key matches nothing), as plain SQL:
_LOOK_UP = Prebuilt(
    select(select(WebhookDelivery.response).where(WebhookDelivery.key == bindparam("key"))
           .scalar_subquery().label("answer"), *conversations.COLUMNS)
    .select_from(select(literal_column("1").label("one")).subquery())
    .outerjoin(Conversation.__table__, Conversation.__table__.c.open_key == bindparam("chat"))
)


def _look_up(key: str | None, conversation_key: str | None) -> tuple[dict | None, Conversation | None]:
    """(the stored answer to this delivery, the chat's open conversation) in one query: both are read
    on every call, and a round trip is a good part of a turn. No conversation without a key (the
    handlers that need one refuse a call without it)."""
    if not conversation_key:
        return (_stored_answer(key) if key else None), None
    session = db.session()
    if session.new or session.dirty or session.deleted:
        session.flush()  # what the ORM's autoflush would do before a query
    row = _LOOK_UP.first(connection(session), {"key": key, "chat": conversation_key})
    return row[0], conversations.adopt(row[1:])
