"""Idle close: a conversation with no message for IDLE_CLOSE_MINUTES is closed with the usual closing
steps (closing comment on its Desk ticket, final counts, archived). The customer's next line then opens
a fresh conversation, because intake only continues open ones. Run every minute by the cron worker.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from . import clock, conversations
from .extensions import db
from .models import CLOSED, Conversation

log = logging.getLogger(__name__)

REASON = "inactivity"
BATCH = 500


def idle_cutoff(now: datetime | None = None) -> datetime | None:
    """Conversations whose last message is older than this are idle; None when idle close is off."""
    minutes = float(current_app.config.get("IDLE_CLOSE_MINUTES") or 0)
    if minutes <= 0:
        return None
    return (now or clock.now()) - timedelta(minutes=minutes)


def close_idle(now: datetime | None = None) -> int:
    """Close every idle open conversation; answers how many were closed. Safe to run concurrently."""
    cutoff = idle_cutoff(now)
    if cutoff is None:
        return 0
    ids = db.session.scalars(
        select(Conversation.id)
        .where(Conversation.status != CLOSED, Conversation.last_message_at < cutoff)
        .order_by(Conversation.last_message_at)
        .limit(BATCH)
    ).all()
    db.session.rollback()
    closed = 0
    for conversation_id in ids:
        # Re-read under a row lock (PostgreSQL; SQLite serialises writers): a message that arrived since
        # the query keeps the conversation open.
        conv = db.session.scalar(select(Conversation).where(Conversation.id == conversation_id).with_for_update()
                                 .execution_options(populate_existing=True))
        if conv is None or conv.status == CLOSED or conv.last_message_at >= cutoff:
            db.session.rollback()
            continue
        if conversations.close_with_followups(conv, REASON):
            closed += 1
        db.session.commit()
    if closed:
        log.info("closed %d idle conversation(s)", closed)
    return closed
