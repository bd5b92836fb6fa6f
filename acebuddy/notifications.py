"""Notifications: every e-mail and chat message owed to someone is a row first, then a job.

Rows are keyed (`<ticket ref>:<kind>`), so asking twice queues once; delivery claims the row, so two
workers never send the same one; a rejected address is recorded as failed, not retried forever.
"""
from __future__ import annotations

import logging
from datetime import timedelta

import redis
from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from . import clock, conversations, jobs, sla
from .desk.errors import PermanentError, RetryableError
from .extensions import db
from .models import N_FAILED, N_PENDING, N_SENDING, N_SENT, Conversation, Notification, TicketRequest
from .redisconn import get_redis

log = logging.getLogger(__name__)

EMAIL, CHAT, DESK = "email", "chat", "desk"
MAX_ATTEMPTS = 12
BACKOFF = (10, 30, 60, 120, 300, 600, 900, 1800)
# A "sending" row untouched this long belonged to a worker that died mid-delivery.
SENDING_LEASE = 180


def sending_lease() -> float:
    """SENDING_LEASE scaled like every outbox delay (OUTBOX_BACKOFF_SCALE), never under three client
    timeouts, so a delivery still running is not taken over (production: 180 s)."""
    config = current_app.config
    floor = 3 * max(config.get("MAIL_TIMEOUT", 10.0), config.get("SALESIQ_TIMEOUT", 10.0), config.get("DESK_TIMEOUT", 10.0))
    return max(SENDING_LEASE * config.get("OUTBOX_BACKOFF_SCALE", 1.0), floor)


def queue(kind: str, *, key: str, channel: str, recipient: str | None, conversation: Conversation | None,
          ticket_request: TicketRequest | None = None, message=None, not_before=None) -> Notification | None:
    """Add a notification row in the caller's transaction (no-op without a recipient or when it exists)."""
    if not recipient:
        return None
    if db.session.scalar(select(Notification.id).where(Notification.key == key)) is not None:
        return None
    if ticket_request is not None and ticket_request.id is None:
        db.session.flush()  # the request goes in before the savepoint below, whose rollback must not take it
    row = Notification(
        key=key, kind=kind, channel=channel, recipient=recipient[:254],
        conversation_id=conversations.saved_id(conversation) if conversation else None,
        ticket_request_id=ticket_request.id if ticket_request else None,
        message_id=message.id if message is not None else None,
        not_before=not_before or clock.now(),
    )
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:  # queued concurrently by another worker
        return None
    jobs.after_commit(jobs.deliver_notification, row, at=row.not_before)
    return row


def queue_chat_line(message, kind: str) -> Notification | None:
    """A stored agent or bot line, posted into the customer's chat through SalesIQ's REST API."""
    conv = message.conversation
    return queue(kind, key=f"msg{message.id}:{kind}", channel=CHAT, recipient=conv.salesiq_id,
                 conversation=conv, message=message)


def queue_ticket_notifications(request: TicketRequest) -> None:
    """What the seed's notification flow owes once a ticket exists: chat, customer, support, point of contact."""
    conv = request.conversation
    wait = float(current_app.config.get("TICKET_REPLY_WAIT", 3.0))
    # The webhook may still hand the number over in its own reply; the follow-up waits until it can't.
    chat_after = request.created_at + timedelta(seconds=wait + 1.5)
    queue("ticket_chat", key=f"{request.ref}:chat", channel=CHAT, recipient=conv.salesiq_id,
          conversation=conv, ticket_request=request, not_before=max(chat_after, clock.now()))
    queue("ticket_customer", key=f"{request.ref}:customer", channel=EMAIL, recipient=request.contact_email,
          conversation=conv, ticket_request=request)
    queue("ticket_support", key=f"{request.ref}:support", channel=EMAIL,
          recipient=current_app.config.get("SUPPORT_TEAM_EMAIL"), conversation=conv, ticket_request=request)
    poc = conv.customer.account.poc_email if conv.customer and conv.customer.account else None
    if poc and poc.lower() != (request.contact_email or "").lower():
        queue("ticket_poc", key=f"{request.ref}:poc", channel=EMAIL, recipient=poc,
              conversation=conv, ticket_request=request)


def claim_inline_chat(request: TicketRequest) -> bool:
    """The webhook reply carries the ticket number itself: take the chat follow-up so it is not sent twice."""
    claimed = db.session.execute(
        update(Notification)
        .where(Notification.key == f"{request.ref}:chat", Notification.state == N_PENDING)
        .values(state=N_SENT, sent_at=clock.now(), sent_via="reply", updated_at=clock.now())
    )
    return claimed.rowcount == 1


def chat_text(kind: str, request: TicketRequest) -> str:
    if kind == "ticket_chat":
        return (
            "✅ Your request has been logged!\n"
            f"Ticket ID: {request.desk_ticket_id}\n"
            f"Ticket #: {request.desk_ticket_number}\n"
            f"Priority: {request.priority}\n"
            f"ETA: {sla.eta_text(request.priority)}\n"
            "Our support team has been notified. Check your e-mail for details."
        )
    if kind == "ticket_failed_chat":
        return ("I'm sorry: I couldn't file your ticket in our system automatically. I've alerted our support "
                "team and a person will pick up your request in this chat. Nothing you told me is lost.")
    raise ValueError(f"no chat text for {kind}")


def deliver(notification_id: int) -> str:
    """The job body: claim the row, send it, record the outcome."""
    row = db.session.get(Notification, notification_id)
    if row is None or row.state in (N_SENT, N_FAILED):
        return "done"
    now = clock.now()
    if row.not_before > now + timedelta(seconds=1):
        jobs.enqueue(jobs.deliver_notification, row.id, at=row.not_before)
        return "early"
    stale = now - timedelta(seconds=sending_lease())
    claimed = db.session.execute(
        update(Notification)
        .where(Notification.id == row.id, Notification.attempts == row.attempts,
               (Notification.state == N_PENDING) | ((Notification.state == N_SENDING) & (Notification.updated_at < stale)))
        .values(state=N_SENDING, attempts=row.attempts + 1, updated_at=now)
    )
    if claimed.rowcount != 1:
        db.session.rollback()
        return "busy"
    db.session.commit()
    db.session.refresh(row)
    if row.attempts > 1 and _handed_over(row):
        return _finish(row, N_SENT, via="earlier attempt")
    try:
        via = _send(row)
    except PermanentError as exc:
        return _finish(row, N_FAILED, error=str(exc))
    except RetryableError as exc:
        return _retry(row, str(exc), exc.retry_after)
    return _finish(row, N_SENT, via=via)


# Between the SMTP server (or SalesIQ, or Desk) accepting a notification and the row being marked sent
# there is a database commit, which can wait seconds for SQLite's write lock; a worker killed there left
# the row "sending", and after the lease it was sent again (seen in the soak). A mark in Redis, written
# the moment the send succeeds, narrows that window to one Redis round trip: a later claim finds the mark
# and records the row as sent without sending it again. Losing the mark (Redis flushed as well) only
# brings back the at-least-once of before.
HANDED_OVER_TTL = 7 * 24 * 3600


def _handed_over_key(row: Notification) -> str:
    # The row's unique key, not its id: after a database restore, ids are handed out again, keys are not.
    return f"acebuddy:notification:{row.key}:handed-over"


def _mark_handed_over(row: Notification) -> None:
    try:
        get_redis().set(_handed_over_key(row), "1", ex=HANDED_OVER_TTL)
    except (redis.RedisError, OSError) as exc:
        log.warning("notification %s: could not mark it handed over (%s)", row.id, exc)


def _handed_over(row: Notification) -> bool:
    try:
        return bool(get_redis().exists(_handed_over_key(row)))
    except (redis.RedisError, OSError):
        return False


def _send(row: Notification) -> str:
    """Deliver the row and set its hand-over mark the moment the other side has it."""
    if row.channel == EMAIL:
        from . import mail

        # The mark goes before the SMTP connection's QUIT: a worker killed during QUIT must find it.
        mail.send_notification(row, accepted=lambda: _mark_handed_over(row))
        return "smtp"
    via = _send_elsewhere(row)
    _mark_handed_over(row)
    return via


def _send_elsewhere(row: Notification) -> str:
    if row.channel == DESK:
        _comment_on_ticket(row)
        return "desk"
    from .salesiq.client import salesiq_client

    client = salesiq_client()
    if row.kind == "transfer_chat":
        failed = row.ticket_request is not None and row.ticket_request.state == "failed"
        note = "AceBuddy could not file the ticket; please take over." if failed else "AceBuddy handed this chat over."
        client.transfer(row.recipient, current_app.config["SALESIQ_DEPARTMENT_ID"], note=note)
    elif row.message is not None:  # an agent's or the bot's stored line; its text lives on the message
        client.post_message(row.recipient, row.message.text)
    else:
        client.post_message(row.recipient, chat_text(row.kind, row.ticket_request))
    return "rest"


def closing_comment(row: Notification) -> str:
    from .bot import redaction

    conv, request = row.conversation, row.ticket_request
    tail = conversations.transcript(conv, since=request.created_in_desk_at or request.created_at)
    closed = conv.closed_at.strftime("%Y-%m-%d %H:%M UTC") if conv.closed_at else "now"
    text = (f"AceBuddy: the chat was closed ({conv.close_reason}) at {closed}. "
            f"Messages in the conversation: {conv.message_count}.")
    if tail:
        text += "\n\nSince the ticket was filed:\n" + redaction.redact(tail)
    return text


def _comment_on_ticket(row: Notification) -> None:
    from .desk import desk_client
    from .models import CREATED, FAILED

    request = row.ticket_request
    if request.state == FAILED:
        raise PermanentError("the ticket was never created")
    if request.state != CREATED:
        raise RetryableError("the ticket is not created yet", retry_after=30)
    desk_client().add_comment(request.desk_ticket_id, closing_comment(row), is_public=False)


def _finish(row: Notification, state: str, *, via: str | None = None, error: str | None = None) -> str:
    row.state = state
    row.sent_via = via
    row.last_error = error[:500] if error else None
    if state == N_SENT:
        row.sent_at = clock.now()
    if row.conversation is not None:
        detail = f"{row.kind} {'sent' if state == N_SENT else 'failed'}" + (f" via {via}" if via else "")
        conversations.record_event(row.conversation, "notification", detail)
    db.session.commit()
    if state == N_FAILED:
        log.error("notification %s (%s) failed permanently", row.id, row.kind)
    return state


def _retry(row: Notification, error: str, retry_after: float | None) -> str:
    if row.attempts >= MAX_ATTEMPTS:
        return _finish(row, N_FAILED, error=f"gave up after {row.attempts} attempts: {error}")
    row.state = N_PENDING
    row.last_error = error[:500]
    db.session.commit()
    delay = max(jobs.backoff(BACKOFF, row.attempts - 1), retry_after or 0)
    log.warning("notification %s: %s; retrying in %ss", row.id, error, delay)
    jobs.enqueue_in(jobs.deliver_notification, row.id, delay)
    return "retry"


def sweep() -> int:
    """Queue again every due notification whose job is gone."""
    now = clock.now()
    stale_after = current_app.config["SWEEP_STALE_AFTER"]
    rows = db.session.scalars(
        select(Notification.id).where(
            Notification.updated_at < now - timedelta(seconds=stale_after),
            Notification.not_before <= now,
            (Notification.state == N_PENDING)
            | ((Notification.state == N_SENDING) & (Notification.updated_at < now - timedelta(seconds=sending_lease()))),
        )
    ).all()
    return jobs.requeue_missing(jobs.deliver_notification, rows, started_grace=sending_lease())
