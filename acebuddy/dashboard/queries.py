"""What the dashboard reads: the filtered conversation list, the escalation queue, the alert counters and
a conversation's timeline. Read-only; every write goes through `acebuddy.takeover`."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import selectinload

from .. import sla
from ..bot.workflows import WORKFLOWS
from ..extensions import db
from ..untrusted import strip_control
from ..models import (
    AGENT,
    BOT,
    CLOSED,
    ESCALATED,
    Conversation,
    ConversationEvent,
    Customer,
    Message,
    Notification,
    TicketAttempt,
    TicketRequest,
)

STATUS_FILTERS = {
    "open": "Open",
    BOT: "With the bot",
    ESCALATED: "Waiting for a person",
    AGENT: "With an agent",
    CLOSED: "Closed",
    "all": "All",
}
# Rows per list and queue view: an agent works from the top, and narrows the search for anything else;
# every row costs rendering on each live refresh of every open page (docs/performance/dashboard.md).
LIST_LIMIT = 100
QUEUE_LIMIT = 50
MAX_QUERY = 100


@dataclass
class ListFilters:
    status: str = "open"
    priority: str | None = None
    workflow: str | None = None
    q: str = ""
    notes: list[str] = field(default_factory=list)  # why some input was ignored, shown above the list

    def as_args(self) -> dict:
        args = {"status": self.status}
        if self.priority:
            args["priority"] = self.priority
        if self.workflow:
            args["workflow"] = self.workflow
        if self.q:
            args["q"] = self.q
        return args


def parse_filters(args) -> ListFilters:
    """Filters from the query string; anything unknown is ignored with a note, never an error."""
    filters = ListFilters()
    status = (args.get("status") or "open").strip().lower()
    if status in STATUS_FILTERS:
        filters.status = status
    else:
        filters.notes.append(f"Unknown status filter “{status[:40]}”: showing open conversations.")
    priority = (args.get("priority") or "").strip().capitalize()
    if priority in sla.PRIORITIES:
        filters.priority = priority
    elif priority:
        filters.notes.append(f"Unknown priority “{priority[:40]}”: showing every priority.")
    workflow = (args.get("workflow") or "").strip().lower()
    if workflow in WORKFLOWS:
        filters.workflow = workflow
    elif workflow:
        filters.notes.append(f"Unknown workflow “{workflow[:40]}”: showing every workflow.")
    q = " ".join(strip_control(args.get("q")).split())
    if len(q) > MAX_QUERY:
        filters.notes.append(f"The search was cut to its first {MAX_QUERY} characters.")
        q = q[:MAX_QUERY]
    filters.q = q
    return filters


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _search(q: str):
    pattern = _like(q.lstrip("#") or q)
    tickets = select(TicketRequest.conversation_id).where(
        or_(TicketRequest.desk_ticket_number.ilike(pattern, escape="\\"), TicketRequest.ref.ilike(pattern, escape="\\"))
    )
    customers = select(Customer.id).where(
        or_(Customer.name.ilike(pattern, escape="\\"), Customer.username.ilike(pattern, escape="\\"),
            Customer.email.ilike(pattern, escape="\\"))
    )
    return or_(
        Conversation.visitor_name.ilike(pattern, escape="\\"),
        Conversation.visitor_email.ilike(pattern, escape="\\"),
        Conversation.visitor_phone.ilike(pattern, escape="\\"),
        Conversation.salesiq_id.ilike(pattern, escape="\\"),
        Conversation.workflow.ilike(pattern, escape="\\"),
        Conversation.customer_id.in_(customers),
        Conversation.id.in_(tickets),
    )


def _with_list_data(query):
    return query.options(selectinload(Conversation.customer), selectinload(Conversation.agent),
                         selectinload(Conversation.ticket_requests))


def list_conversations(filters: ListFilters) -> list[Conversation]:
    query = select(Conversation)
    if filters.status == "open":
        query = query.where(Conversation.status != CLOSED)
    elif filters.status != "all":
        query = query.where(Conversation.status == filters.status)
    if filters.priority:
        query = query.where(Conversation.priority == filters.priority)
    if filters.workflow:
        query = query.where(Conversation.workflow == filters.workflow)
    if filters.q:
        query = query.where(_search(filters.q))
    query = query.order_by(Conversation.last_message_at.desc(), Conversation.id.desc()).limit(LIST_LIMIT)
    return list(db.session.scalars(_with_list_data(query)))


def _priority_rank():
    return case({p: n for n, p in enumerate(sla.PRIORITIES)}, value=Conversation.priority, else_=len(sla.PRIORITIES))


def escalation_queue() -> list[Conversation]:
    """The first chats waiting for a person: highest priority first, then the longest wait."""
    query = (
        select(Conversation)
        .where(Conversation.status == ESCALATED)
        .order_by(_priority_rank(), Conversation.escalated_at.is_(None), Conversation.escalated_at, Conversation.id)
        .limit(QUEUE_LIMIT)
    )
    return list(db.session.scalars(_with_list_data(query)))


def waiting_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Conversation).where(Conversation.status == ESCALATED))


def escalation_marker() -> int:
    """The newest escalation's timeline id: the alert counts anything newer as new."""
    return db.session.scalar(select(func.max(ConversationEvent.id)).where(ConversationEvent.kind == "escalated")) or 0


def escalated_since(marker: int) -> list[Conversation]:
    """Chats escalated after `marker` that still wait for a person."""
    escalated = select(ConversationEvent.conversation_id).where(
        ConversationEvent.kind == "escalated", ConversationEvent.id > marker
    )
    query = (select(Conversation).where(Conversation.id.in_(escalated), Conversation.status == ESCALATED)
             .order_by(_priority_rank(), Conversation.escalated_at))
    return list(db.session.scalars(query))


def messages(conv: Conversation) -> list[Message]:
    return list(db.session.scalars(select(Message).where(Message.conversation_id == conv.id).order_by(Message.id)))


def deliveries(conv: Conversation) -> dict[int, Notification]:
    """The outbox row of each agent line, by message id (the transcript shows whether it arrived)."""
    rows = db.session.scalars(
        select(Notification).where(Notification.conversation_id == conv.id, Notification.message_id.is_not(None))
    )
    return {row.message_id: row for row in rows}


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str
    detail: str
    source: str  # event | attempt | notification
    order: int


def timeline(conv: Conversation) -> list[TimelineEntry]:
    """Steps, verification, escalation and agent actions (events), every try at filing the ticket
    (attempts) and every e-mail or chat line owed (notifications), in time order."""
    entries = [
        TimelineEntry(e.created_at, e.kind, e.detail, "event", e.id)
        for e in db.session.scalars(
            select(ConversationEvent).where(ConversationEvent.conversation_id == conv.id).order_by(ConversationEvent.id)
        )
    ]
    attempts = db.session.execute(
        select(TicketAttempt, TicketRequest.ref)
        .join(TicketRequest, TicketAttempt.ticket_request_id == TicketRequest.id)
        .where(TicketRequest.conversation_id == conv.id)
        .order_by(TicketAttempt.id)
    ).all()
    for attempt, ref in attempts:
        outcome = attempt.outcome or "in progress"
        detail = f"{ref}: {outcome}" + (f" ({attempt.error})" if attempt.error else "")
        entries.append(TimelineEntry(attempt.started_at, "ticket_attempt", detail, "attempt", attempt.id))
    for row in db.session.scalars(
        select(Notification).where(Notification.conversation_id == conv.id).order_by(Notification.id)
    ):
        detail = f"{row.kind} by {row.channel}: {row.state}"
        if row.attempts > 1:
            detail += f" after {row.attempts} attempts"
        if row.last_error and row.state != "sent":
            detail += f" ({row.last_error})"
        entries.append(TimelineEntry(row.created_at, "queued_" + row.channel, detail, "notification", row.id))
    rank = {"event": 0, "attempt": 1, "notification": 2}
    return sorted(entries, key=lambda e: (e.at, rank[e.source], e.order))
