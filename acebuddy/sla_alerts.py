"""SLA alerts: a warning when a running clock has used its warning share of the target (75%), an alert
when it breaches, e-mailed to the SLA managers once per clock and recipient, checked every minute.

Exactly-once comes from the notification keys (`<ref>:sla-warning:<email>`): a second evaluation,
in this worker or another, finds the row and queues nothing.
"""
from __future__ import annotations

import hashlib
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from . import clock, notifications, reports, sla
from .extensions import db
from .models import Notification, User

WARNING, BREACH = "warning", "breach"
KINDS = {
    (sla.RESOLUTION, WARNING): "sla_warning",
    (sla.RESOLUTION, BREACH): "sla_breach",
    (sla.FIRST_RESPONSE, WARNING): "sla_response_warning",
    (sla.FIRST_RESPONSE, BREACH): "sla_response_breach",
}
KEY_MAX = 120  # Notification.key


def recipients() -> list[str]:
    """`SLA_ALERT_EMAILS`, else every active manager."""
    configured = current_app.config.get("SLA_ALERT_EMAILS") or []
    if configured:
        return list(dict.fromkeys(e.strip().lower() for e in configured if e.strip()))
    emails = db.session.scalars(
        select(User.email).where(User.role == "manager", User.active.is_(True)).order_by(User.id)
    )
    return list(dict.fromkeys(e.lower() for e in emails))


def alert_key(ref: str, stage: str, email: str) -> str:
    key = f"{ref}:sla-{stage}:{email}"
    if len(key) > KEY_MAX:  # a very long address: a digest keeps the key unique and within the column
        key = f"{ref}:sla-{stage}:{hashlib.sha256(email.encode()).hexdigest()[:32]}"
    return key


def evaluate(now: datetime | None = None) -> dict:
    """Queue the warnings and breach alerts now due; returns how many were queued.

    A clock found already breached gets the breach alert only (a late warning would be noise); a
    ticket On Hold in Desk gets none until it leaves On Hold (its clock still runs: docs/sla.md).
    """
    now = now or clock.now()
    emails = recipients()
    counts = {WARNING: 0, BREACH: 0}
    wanted = []
    for item in reports.running_items():
        status = item.clock.status(now)
        if item.on_hold or status not in (sla.AT_RISK, sla.BREACHED):
            continue
        stage = BREACH if status == sla.BREACHED else WARNING
        wanted.extend((item, stage, email, alert_key(item.ref, stage, email)) for email in emails)
    existing = _existing_keys([key for *_, key in wanted])
    for item, stage, email, key in wanted:
        if key in existing:
            continue
        row = notifications.queue(
            KINDS[(item.clock.kind, stage)], key=key, channel=notifications.EMAIL, recipient=email,
            conversation=item.conversation, ticket_request=item.request,
        )
        counts[stage] += row is not None
    db.session.commit()
    return counts


def _existing_keys(keys: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        found.update(db.session.scalars(select(Notification.key).where(Notification.key.in_(chunk))))
    return found


def alert_facts(kind: str, request, conv) -> dict:
    """What an alert e-mail says about its clock, as of sending (templates/email/sla_*)."""
    item = (reports.Item(reports.TICKET, sla.ticket_clock(request), conv, request)
            if kind in (KINDS[(sla.RESOLUTION, WARNING)], KINDS[(sla.RESOLUTION, BREACH)]) else None)
    if item is None:
        found = sla.escalation_clock(conv)
        item = reports.Item(reports.ESCALATION, found, conv) if found else None
    if item is None:
        return {}
    now = clock.now()
    calendar = item.clock.calendar
    left = item.clock.left(now)
    return {
        "item": item,
        "status": reports.STATUSES[item.clock.status(now)],
        "percent_used": f"{100 * item.clock.used(now):.0f}%",
        "left": ("overdue by " if left.total_seconds() < 0 else "") + reports.duration_text(left)
                + ("" if left.total_seconds() < 0 else " left"),
        "started": calendar.local(item.clock.start).strftime("%a %d %b %Y %H:%M %Z"),
        "due": calendar.local(item.clock.due).strftime("%a %d %b %Y %H:%M %Z"),
        "hours": calendar.describe(),
        "manager_url": f"{current_app.config['PUBLIC_URL']}/manager/",
    }
