"""Ticket status back from Zoho Desk: webhook events and, as a safety net, a poll by modified time.

Our record keeps Desk's `status`, `statusType`, `closedTime` and `webUrl`, so SLA clocks stop when the
ticket is closed in Desk. Events are matched by Desk ticket id, or by `cf_acebuddy_ref` when the event
arrives before our own record of the create was committed.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from . import clock, conversations
from .extensions import db
from .models import TicketRequest, WebhookDelivery

log = logging.getLogger(__name__)

TICKET_EVENTS = {"Ticket_Add", "Ticket_Update"}
POLL_CURSOR_KEY = "acebuddy:desk:poll-cursor"
POLL_OVERLAP = timedelta(minutes=2)


class EventError(ValueError):
    """A Desk webhook body we cannot read."""


def apply_ticket(data: dict, source: str) -> bool:
    """Copy Desk's view of one ticket onto our record; True if it is one of ours and changed."""
    ticket_id = str(data.get("id") or "")
    ref = (data.get("cf") or {}).get("cf_acebuddy_ref") if isinstance(data.get("cf"), dict) else None
    if not ticket_id and not ref:
        return False
    conditions = [TicketRequest.desk_ticket_id == ticket_id] if ticket_id else []
    if ref:
        conditions.append(TicketRequest.ref == str(ref))
    request = db.session.scalar(select(TicketRequest).where(or_(*conditions)))
    if request is None:
        return False
    before = (request.desk_status, request.desk_status_type, request.desk_closed_at)
    if data.get("status"):
        request.desk_status = str(data["status"])[:40]
    if data.get("statusType"):
        request.desk_status_type = str(data["statusType"])[:20]
    if "closedTime" in data:
        request.desk_closed_at = clock.parse_iso(data.get("closedTime"))
    if data.get("webUrl"):
        request.desk_web_url = str(data["webUrl"])[:500]
    changed = before != (request.desk_status, request.desk_status_type, request.desk_closed_at)
    if changed:
        conversations.record_event(request.conversation, "desk_status",
                                   f"#{request.desk_ticket_number} {request.desk_status} ({source})")
    return changed


def receive_events(body) -> dict:
    """Apply a Desk webhook delivery: a JSON array of events (a single object is accepted too)."""
    events = body if isinstance(body, list) else [body] if isinstance(body, dict) else None
    if events is None:
        raise EventError("expected a JSON array of Desk events")
    applied = duplicates = ignored = 0
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("payload"), dict):
            raise EventError("each event needs an eventType and a payload object")
        kind = str(event.get("eventType") or "")
        payload = event["payload"]
        if kind not in TICKET_EVENTS:
            ignored += 1
            continue
        stamp = payload.get("modifiedTime") or event.get("eventTime") or ""
        key = f"desk:{kind}:{payload.get('id')}:{stamp}:{payload.get('status')}"[:250]
        try:
            with db.session.begin_nested():
                db.session.add(WebhookDelivery(key=key))
        except IntegrityError:
            duplicates += 1
            continue
        applied += int(apply_ticket(payload, "webhook"))
    db.session.commit()
    return {"applied": applied, "duplicates": duplicates, "ignored": ignored}


def poll(client, redis) -> int:
    """Fetch tickets modified since the last poll (with overlap) and apply them; returns how many changed."""
    now = clock.now()
    raw = redis.get(POLL_CURSOR_KEY)
    since = clock.parse_iso(raw.decode()) if raw else now - timedelta(hours=1)
    changed = 0
    for ticket in client.tickets_modified_between(since - POLL_OVERLAP, now):
        changed += int(apply_ticket(ticket.raw, "poll"))
    db.session.commit()
    redis.set(POLL_CURSOR_KEY, clock.iso_z(now))
    return changed
