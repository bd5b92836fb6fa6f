"""The SLA policy of CONTRACT.md: per priority, the ETA told to customers, the resolution target that
becomes the Desk due date, and the first-human-response target for escalated chats.

The ETA in the chat, in the e-mails and the Desk `dueDate` all come from here, so they always agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, has_app_context

from . import clock


@dataclass(frozen=True)
class Tier:
    priority: str
    eta_text: str
    resolution: timedelta
    first_response: timedelta
    escalation: str


DEFAULT_TIERS = {
    "High": Tier("High", "1-2 hours", timedelta(hours=2), timedelta(minutes=15), "immediate"),
    "Medium": Tier("Medium", "2-4 hours", timedelta(hours=4), timedelta(minutes=30), "if needed"),
    "Low": Tier("Low", "4-8 hours", timedelta(hours=8), timedelta(minutes=60), "if requested"),
}
PRIORITIES = tuple(DEFAULT_TIERS)


def tier(priority: str) -> Tier:
    tiers = DEFAULT_TIERS
    if has_app_context():
        tiers = current_app.config.get("SLA_TIERS") or DEFAULT_TIERS
    return tiers.get(priority) or tiers["Medium"]


def due_at(priority: str, start: datetime | None = None) -> datetime:
    return (start or clock.now()) + tier(priority).resolution


def eta_text(priority: str) -> str:
    return tier(priority).eta_text


def alerts_at_once(priority: str) -> bool:
    """High priority: the support team is alerted immediately (CONTRACT.md escalation column)."""
    return tier(priority).escalation == "immediate"
