"""How the dashboard names and shows things: status labels, workflow progress, verification, elapsed
times, the collected answers (masked), and links that are safe to put in an href."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from .. import clock
from ..bot import redaction, verification, workflows
from ..models import AGENT, BOT, CLOSED, ESCALATED, Conversation

STATUS_LABELS = {BOT: "With the bot", ESCALATED: "Waiting for a person", AGENT: "With an agent", CLOSED: "Closed"}
ROLE_LABELS = {"customer": "Customer", "bot": "AceBuddy (bot)", "agent": "Agent", "system": "System"}
VERIFICATION_LABELS = {"none": "Not started", "pending": "In progress", "verified": "Verified", "failed": "Failed"}
DELIVERY_LABELS = {"pending": "sending…", "sending": "sending…", "sent": "delivered", "failed": "not delivered"}


@dataclass(frozen=True)
class Progress:
    step: int  # 1-based
    total: int
    label: str

    @property
    def text(self) -> str:
        return f"step {self.step} of {self.total}"


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


def workflow_title(intent: str | None) -> str | None:
    workflow = workflows.get(intent)
    return workflow.title if workflow else intent


def progress(conv: Conversation) -> Progress | None:
    """Where the running workflow is: "step k of n" over the workflow's declared steps."""
    workflow = workflows.get(conv.workflow)
    if workflow is None or conv.step is None:
        return None
    names = workflow.step_names
    total = len(names)
    if conv.step in names:
        if conv.step == workflows.VERIFY:
            label = "identity check"
        else:
            label = workflow.step(conv.step).label
        return Progress(names.index(conv.step) + 1, total, label)
    if conv.step == "confirm":
        return Progress(total, total, "confirming the ticket")
    if conv.step == "change":
        return Progress(total, total, "changing an answer")
    return Progress(1, total, conv.step)


def verification_text(conv: Conversation) -> str:
    label = VERIFICATION_LABELS.get(conv.verification, conv.verification)
    if conv.verification in ("pending", "failed"):
        left = verification.attempts_left(conv)
        label += f" · {left} attempt{'s' if left != 1 else ''} left"
    return label


def elapsed(since: datetime | None, now: datetime | None = None) -> str:
    if since is None:
        return "—"
    seconds = max(0, int(((now or clock.now()) - since).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d {hours % 24} h"


def iso(moment: datetime | None) -> str:
    """Naive UTC as ISO-8601 with a Z, for <time datetime> and the page's own clock."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


def clock_time(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S") if moment else "—"


def http_url(value) -> str | None:
    """Only http(s) links go into an href: a Desk URL is outside data, and `javascript:` must never run."""
    if not isinstance(value, str):
        return None
    parts = urlsplit(value.strip())
    if parts.scheme in ("http", "https") and parts.netloc:
        return value.strip()
    return None


def collected_answers(conv: Conversation) -> list[tuple[str, str]]:
    """The workflow data as (label, value), masked again on the way out (they were masked when stored)."""
    workflow = workflows.get(conv.workflow)
    rows = []
    for key, value in (conv.data or {}).items():
        step = workflow.step(key) if workflow else None
        label = step.label if step else key.replace("_", " ").capitalize()
        if isinstance(value, bool):
            shown = "Yes" if value else "No"
        elif value is None:
            shown = "—"
        else:
            shown = redaction.redact(str(value))
        rows.append((label, shown))
    return rows


def helpers() -> dict:
    """What every dashboard template may call."""
    return {
        "status_label": status_label,
        "workflow_title": workflow_title,
        "progress": progress,
        "verification_text": verification_text,
        "elapsed": elapsed,
        "iso": iso,
        "clock_time": clock_time,
        "http_url": http_url,
        "collected_answers": collected_answers,
        "role_label": lambda role: ROLE_LABELS.get(role, role),
        "delivery_label": lambda state: DELIVERY_LABELS.get(state, state),
        "STATUS_LABELS": STATUS_LABELS,
    }
