"""SalesIQ conversation event webhooks (spec §6): after a hand-off the bot no longer hears the chat, so
visitor and operator replies arrive here and keep the transcript complete; `completed` closes it.

Deliveries are deduplicated on event + entity (+ message id or event time), ignoring `attempt`.
"""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import conversations
from ..bot import redaction
from ..extensions import db
from ..models import BOT, Conversation, WebhookDelivery
from ..takeover import salesiq_forwarded
from .intake import answer_through_rest
from .payload import clean_text

log = logging.getLogger(__name__)

REPLIED = {"conversation.visitor.replied": "customer", "conversation.operator.replied": "agent"}
COMPLETED = "conversation.completed"


class EventError(ValueError):
    """Not a SalesIQ event envelope."""


def _conversation_id(body: dict, entity: dict) -> str | None:
    for value in (entity.get("id"), body.get("entity_id"), entity.get("conversation_id")):
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()[:120]
    return None


def receive(body) -> dict:
    if not isinstance(body, dict):
        raise EventError("expected a SalesIQ event object")
    event = body.get("event")
    if not isinstance(event, str) or not event:
        raise EventError("event must be a non-empty string")
    entity = body.get("entity") or {}
    if not isinstance(entity, dict):
        raise EventError("entity must be an object")
    message = entity.get("message") if isinstance(entity.get("message"), dict) else {}
    conversation_id = _conversation_id(body, entity)
    if conversation_id is None:
        raise EventError("entity_id is missing")
    marker = message.get("msgid") or message.get("id") or body.get("event_time") or ""
    key = f"siqevent:{event}:{conversation_id}:{marker}"[:250]
    try:
        with db.session.begin_nested():
            db.session.add(WebhookDelivery(key=key))
    except IntegrityError:
        db.session.rollback()
        return {"status": "duplicate"}

    conv = db.session.scalar(
        select(Conversation).where(Conversation.salesiq_id == conversation_id).order_by(Conversation.id.desc())
    )
    outcome = "ignored"
    if conv is not None and event in REPLIED:
        text = message.get("text")
        if (REPLIED[event] == "customer" and conv.status == BOT and isinstance(text, str) and clean_text(text)
                and salesiq_forwarded(conv)):
            # Handed back to the bot after a SalesIQ `forward`, so SalesIQ no longer calls the bot
            # webhook for this chat: the bot answers over REST instead.
            answer_through_rest(conv, clean_text(text))
            outcome = "answered"
        elif isinstance(text, str) and clean_text(text):
            role = REPLIED[event]
            conversations.add_message(conv, role, redaction.redact(clean_text(text)) if role == "customer" else clean_text(text))
            if role == "agent" and conv.first_human_reply_at is None:
                from .. import clock

                conv.first_human_reply_at = clock.now()
            outcome = "stored"
    elif conv is not None and event == COMPLETED:
        outcome = "closed" if conversations.close_with_followups(conv, "salesiq_completed") else "already closed"
    db.session.commit()
    return {"status": outcome}
