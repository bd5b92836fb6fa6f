"""SLA reports: the clocks of tickets and escalations read from the database, the live at-risk list,
the figures of a period (% met per priority and per workflow, breaches per day) and their CSV exports.

Definitions (docs/sla.md): a ticket's clock runs from the ticket request to Desk's close; an
escalation's from `escalated_at` to the first human reply. Failed ticket requests are not measured.
"""
from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import selectinload

from . import clock, sla
from .extensions import db
from .models import FAILED, Conversation, TicketRequest

TICKET, ESCALATION = "ticket", "escalation"
KINDS = {TICKET: "Ticket", ESCALATION: "Escalation"}
STATUSES = {sla.ON_TRACK: "On track", sla.AT_RISK: "At risk", sla.BREACHED: "Breached", sla.MET: "Met"}
NO_WORKFLOW = "none"
MAX_PERIOD_DAYS = 366
# Dates a report may cover: far enough for any real chat, near enough that a period's UTC bounds (a
# day past its end, shifted by the calendar's zone) stay within what a datetime can hold.
EARLIEST, LATEST = date(2000, 1, 1), date(2999, 12, 31)


@dataclass(frozen=True)
class Item:
    """A ticket or an escalation with its SLA clock."""

    kind: str
    clock: sla.Clock
    conversation: Conversation
    request: TicketRequest | None = None

    @property
    def ref(self) -> str:
        if self.request is not None:
            return self.request.ref
        return f"conv{self.conversation.id}:esc{self.clock.start:%Y%m%dT%H%M%S}"

    @property
    def priority(self) -> str:
        return self.request.priority if self.request is not None else sla.tier(self.conversation.priority).priority

    @property
    def workflow(self) -> str:
        return (self.request.workflow if self.request is not None else self.conversation.workflow) or NO_WORKFLOW

    @property
    def customer(self) -> str:
        return self.request.contact_name if self.request is not None else self.conversation.display_name

    @property
    def on_hold(self) -> bool:
        return self.request is not None and self.request.desk_status_type == "On Hold"


def _ticket_items(query) -> list[Item]:
    query = query.where(TicketRequest.state != FAILED).options(
        selectinload(TicketRequest.conversation).selectinload(Conversation.customer)
    )
    return [Item(TICKET, sla.ticket_clock(r), r.conversation, r) for r in db.session.scalars(query)]


def _escalation_items(query) -> list[Item]:
    query = query.where(Conversation.escalated_at.is_not(None)).options(selectinload(Conversation.customer))
    items = []
    for conv in db.session.scalars(query):
        found = sla.escalation_clock(conv)
        if found is not None:
            items.append(Item(ESCALATION, found, conv))
    return items


def _ticket_running():
    # Spelled positively: NOT over a NULL status type would drop the rows that matter most.
    return or_(
        and_(TicketRequest.desk_status_type.is_(None), TicketRequest.desk_closed_at.is_(None)),
        and_(TicketRequest.desk_status_type.is_not(None), TicketRequest.desk_status_type != "Closed"),
    )


def running_items() -> list[Item]:
    """Every clock still running: open tickets and escalations nobody has answered yet."""
    tickets = _ticket_items(select(TicketRequest).where(_ticket_running()))
    escalations = _escalation_items(
        select(Conversation).where(Conversation.first_human_reply_at.is_(None), Conversation.closed_at.is_(None))
    )
    return tickets + escalations


def at_risk(now: datetime | None = None) -> list[Item]:
    """The live list: running clocks at risk or breached, the most urgent first."""
    now = now or clock.now()
    items = [i for i in running_items() if i.clock.status(now) in (sla.AT_RISK, sla.BREACHED)]
    return sorted(items, key=lambda i: (i.clock.due, i.kind, i.ref))


@dataclass(frozen=True)
class Period:
    """Local dates (the SLA calendar's time zone), both included."""

    first: date
    last: date

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    def bounds(self) -> tuple[datetime, datetime]:
        calendar = sla.policy().calendar
        return calendar.utc(self.first), calendar.utc(self.last + timedelta(days=1))


def today(now: datetime | None = None) -> date:
    return sla.policy().calendar.local(now or clock.now()).date()


def parse_period(first: str | None, last: str | None, now: datetime | None = None) -> tuple[Period, str | None]:
    """The period asked for, or the last seven days with an error message when it is unreadable."""
    end = today(now)
    default = Period(end - timedelta(days=6), end)
    if not first and not last:
        return default, None
    try:
        period = Period(date.fromisoformat(first or last), date.fromisoformat(last or first))
    except ValueError:
        return default, "Dates must look like 2025-03-10; showing the last seven days."
    if not (EARLIEST <= period.first and period.last <= LATEST):
        return default, (f"Dates must lie between {EARLIEST.isoformat()} and {LATEST.isoformat()}; "
                         "showing the last seven days.")
    if period.last < period.first:
        return default, "The period ends before it starts; showing the last seven days."
    if (period.last - period.first).days >= MAX_PERIOD_DAYS:
        return default, f"Choose at most {MAX_PERIOD_DAYS} days; showing the last seven days."
    return period, None


def period_items(period: Period) -> list[Item]:
    """Tickets requested and escalations opened within the period."""
    start, end = period.bounds()
    tickets = _ticket_items(
        select(TicketRequest).where(TicketRequest.created_at >= start, TicketRequest.created_at < end)
        .order_by(TicketRequest.created_at, TicketRequest.id)
    )
    escalations = _escalation_items(
        select(Conversation).where(Conversation.escalated_at >= start, Conversation.escalated_at < end)
        .order_by(Conversation.escalated_at, Conversation.id)
    )
    return tickets + escalations


def filter_items(items: list[Item], now: datetime, *, kind=None, priority=None, workflow=None, status=None) -> list[Item]:
    return [
        i for i in items
        if (not kind or i.kind == kind) and (not priority or i.priority == priority)
        and (not workflow or i.workflow == workflow) and (not status or i.clock.status(now) == status)
    ]


@dataclass
class Figures:
    """Counts of one group; % met counts decided clocks only (met or breached)."""

    label: str
    total: int = 0
    on_track: int = 0
    at_risk: int = 0
    breached: int = 0
    met: int = 0

    @property
    def decided(self) -> int:
        return self.met + self.breached

    @property
    def percent_met(self) -> float | None:
        return round(100 * self.met / self.decided, 1) if self.decided else None

    def add(self, status: str) -> None:
        self.total += 1
        setattr(self, status, getattr(self, status) + 1)


def summarise(items: list[Item], now: datetime, key, labels: tuple[str, ...] = ()) -> list[Figures]:
    groups = {label: Figures(label) for label in labels}
    for item in items:
        label = key(item)
        groups.setdefault(label, Figures(label)).add(item.clock.status(now))
    ordered = [groups[label] for label in labels] + [groups[k] for k in sorted(set(groups) - set(labels))]
    return ordered


@dataclass(frozen=True)
class DayBreaches:
    day: date
    tickets: int
    escalations: int

    @property
    def total(self) -> int:
        return self.tickets + self.escalations


@dataclass
class Report:
    period: Period
    now: datetime
    tickets_by_priority: list[Figures] = field(default_factory=list)
    tickets_by_workflow: list[Figures] = field(default_factory=list)
    escalations_by_priority: list[Figures] = field(default_factory=list)
    escalations_by_workflow: list[Figures] = field(default_factory=list)
    ticket_totals: Figures = field(default_factory=lambda: Figures("All"))
    escalation_totals: Figures = field(default_factory=lambda: Figures("All"))
    breaches_per_day: list[DayBreaches] = field(default_factory=list)

    @property
    def most_breaches_in_a_day(self) -> int:
        return max((d.total for d in self.breaches_per_day), default=0)

    def sections(self) -> list[tuple[str, list[Figures]]]:
        return [
            ("tickets by priority", self.tickets_by_priority + [self.ticket_totals]),
            ("tickets by workflow", self.tickets_by_workflow),
            ("escalations by priority", self.escalations_by_priority + [self.escalation_totals]),
            ("escalations by workflow", self.escalations_by_workflow),
        ]


def build_report(period: Period, now: datetime | None = None) -> Report:
    now = now or clock.now()
    items = period_items(period)
    tickets = [i for i in items if i.kind == TICKET]
    escalations = [i for i in items if i.kind == ESCALATION]
    report = Report(period, now)
    report.tickets_by_priority = summarise(tickets, now, lambda i: i.priority, sla.PRIORITIES)
    report.tickets_by_workflow = summarise(tickets, now, lambda i: i.workflow)
    report.escalations_by_priority = summarise(escalations, now, lambda i: i.priority, sla.PRIORITIES)
    report.escalations_by_workflow = summarise(escalations, now, lambda i: i.workflow)
    for item in tickets:
        report.ticket_totals.add(item.clock.status(now))
    for item in escalations:
        report.escalation_totals.add(item.clock.status(now))
    report.breaches_per_day = breaches_per_day(period, now)
    return report


def breaches_per_day(period: Period, now: datetime) -> list[DayBreaches]:
    """Breaches by the local day they happened (the due moment passed), whenever the clock started."""
    start, end = period.bounds()
    tickets = _ticket_items(select(TicketRequest).where(TicketRequest.due_at >= start, TicketRequest.due_at < end))
    # A breach inside the period needs a clock that started before its end and stopped (if at all) after its start.
    escalations = _escalation_items(
        select(Conversation).where(
            Conversation.escalated_at < end,
            or_(Conversation.first_human_reply_at > start,
                and_(Conversation.first_human_reply_at.is_(None),
                     or_(Conversation.closed_at.is_(None), Conversation.closed_at > start))),
        )
    )
    calendar = sla.policy().calendar
    counts: dict[str, Counter] = {TICKET: Counter(), ESCALATION: Counter()}
    for item in tickets + escalations:
        if start <= item.clock.due < end and item.clock.status(now) == sla.BREACHED:
            counts[item.kind][calendar.local(item.clock.due).date()] += 1
    return [DayBreaches(day, counts[TICKET][day], counts[ESCALATION][day]) for day in period.days]


def duration_text(span: timedelta) -> str:
    """`2 d 3 h`, `1 h 05 min`, `12 min` (sign dropped: the caller says left or overdue)."""
    minutes = int(abs(span).total_seconds() // 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min"


def _cell(value) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas; customer names are untrusted."""
    if value is None or isinstance(value, (int, float)):
        return "" if value is None else str(value)
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv(rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def report_csv(report: Report) -> str:
    rows = [("section", "group", "total", "on_track", "at_risk", "breached", "met", "percent_met")]
    for section, figures in report.sections():
        for f in figures:
            rows.append((section, f.label, f.total, f.on_track, f.at_risk, f.breached, f.met,
                         "" if f.percent_met is None else f"{f.percent_met:.1f}"))
    for day in report.breaches_per_day:
        rows.append(("ticket breaches per day", day.day.isoformat(), "", "", "", day.tickets, "", ""))
    for day in report.breaches_per_day:
        rows.append(("escalation breaches per day", day.day.isoformat(), "", "", "", day.escalations, "", ""))
    return _csv(rows)


def iso_utc(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


def items_csv(items: list[Item], now: datetime, public_url: str) -> str:
    rows = [("kind", "ref", "desk_ticket_number", "conversation_id", "conversation_url", "customer", "workflow",
             "priority", "started_utc", "due_utc", "stopped_utc", "status", "percent_used", "minutes_left")]
    for i in items:
        left = i.clock.left(now)
        rows.append((
            i.kind, i.ref, i.request.desk_ticket_number if i.request else "", i.conversation.id,
            f"{public_url}/dashboard/conversations/{i.conversation.id}", i.customer, i.workflow, i.priority,
            iso_utc(i.clock.start), iso_utc(i.clock.due), iso_utc(i.clock.stop), i.clock.status(now),
            f"{100 * i.clock.used(now):.0f}", int(left.total_seconds() // 60),
        ))
    return _csv(rows)
