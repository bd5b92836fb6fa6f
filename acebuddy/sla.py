"""The SLA policy (CONTRACT.md defaults, configurable): per priority the ETA told to customers, the
resolution target that becomes the Desk due date and the first-response target for escalated chats;
the business-hours calendar those targets count in; and the clocks of tickets and escalations.

The ETA in the chat and e-mails and the Desk `dueDate` all come from here, so they always agree.
Times are naive UTC, like the database; the calendar converts to its own time zone to find its hours.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Ten years of days: far beyond any target, and a guard against a calendar that never opens.
MAX_DAYS = 3660


@dataclass(frozen=True)
class Calendar:
    """When SLA time runs: `hours` holds per weekday (Monday first) an opening and closing minute of
    the local day, or None when closed; `hours=None` is 24x7. Holidays are local dates, closed all day."""

    timezone: str = "UTC"
    hours: tuple[tuple[int, int] | None, ...] | None = None
    holidays: frozenset[date] = field(default_factory=frozenset)

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def always_open(self) -> bool:
        return self.hours is None and not self.holidays

    def local(self, moment: datetime) -> datetime:
        """A naive-UTC moment as aware local time."""
        return moment.replace(tzinfo=timezone.utc).astimezone(self.zone)

    def utc(self, day: date, minute: int = 0) -> datetime:
        """Naive UTC of a local wall-clock minute of `day` (minute 1440 is the next midnight)."""
        wall = datetime.combine(day, time(0), tzinfo=self.zone) + timedelta(minutes=minute)
        return wall.astimezone(timezone.utc).replace(tzinfo=None)

    def windows(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals (naive UTC) from the local day of `start` on, in order."""
        first = self.local(start).date()
        for offset in range(MAX_DAYS):
            day = first + timedelta(days=offset)
            if day in self.holidays:
                continue
            span = (0, 1440) if self.hours is None else self.hours[day.weekday()]
            if span is not None:
                yield self.utc(day, span[0]), self.utc(day, span[1])

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment `duration` of open time after `start`."""
        if self.always_open:
            return start + duration
        remaining = duration
        for opens, closes in self.windows(start):
            if closes <= start:
                continue
            begin = max(opens, start)
            if remaining <= closes - begin:
                return begin + remaining
            remaining -= closes - begin
        raise ValueError("the SLA calendar is never open")

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Open time between two moments (zero when `end` is not after `start`)."""
        if end <= start:
            return timedelta(0)
        if self.always_open:
            return end - start
        total = timedelta(0)
        for opens, closes in self.windows(start):
            if opens >= end:
                break
            total += max(timedelta(0), min(closes, end) - max(opens, start))
        return total

    def describe(self) -> str:
        if self.hours is None:
            return "24x7" + (" except holidays" if self.holidays else "")
        parts = []
        for index, span in enumerate(self.hours):
            if span is None:
                continue
            text = f"{span[0] // 60:02d}:{span[0] % 60:02d}-{span[1] // 60:02d}:{span[1] % 60:02d}"
            if parts and parts[-1][1] == index - 1 and parts[-1][2] == text:
                parts[-1][1] = index
            else:
                parts.append([index, index, text])
        days = ", ".join(f"{DAYS[a].title()}{'-' + DAYS[b].title() if b > a else ''} {t}" for a, b, t in parts)
        return f"{days} {self.timezone}"


@dataclass(frozen=True)
class Policy:
    tiers: Mapping[str, Tier] = field(default_factory=lambda: dict(DEFAULT_TIERS))
    calendar: Calendar = field(default_factory=Calendar)
    warn_at: float = 0.75  # share of the target used when the warning goes out


DEFAULT_POLICY = Policy()


def policy() -> Policy:
    configured = current_app.config.get("SLA_POLICY") if has_app_context() else None
    found = configured if isinstance(configured, Policy) else DEFAULT_POLICY
    if has_app_context() and current_app.config.get("SLA_TIERS"):  # tiers alone, as earlier versions read
        found = replace(found, tiers=current_app.config["SLA_TIERS"])
    return found


def tier(priority: str | None) -> Tier:
    tiers = policy().tiers
    return tiers.get(priority) or tiers["Medium"]


def due_at(priority: str, start: datetime | None = None) -> datetime:
    """The resolution due date (the Desk `dueDate`): the target counted in the calendar's open time."""
    return policy().calendar.add(start or clock.now(), tier(priority).resolution)


def eta_text(priority: str) -> str:
    """The ETA customers are told; outside 24x7 it says which hours count, as the due date does."""
    current = policy()
    text = tier(priority).eta_text
    if current.calendar.always_open:
        return text
    return f"{text} (business hours: {current.calendar.describe()})"


def alerts_at_once(priority: str) -> bool:
    """High priority: the support team is alerted immediately (CONTRACT.md escalation column)."""
    return tier(priority).escalation == "immediate"



ON_TRACK, AT_RISK, BREACHED, MET = "on_track", "at_risk", "breached", "met"
RESOLUTION, FIRST_RESPONSE = "resolution", "first_response"


@dataclass(frozen=True)
class Clock:
    """One SLA clock: runs from `start` until `stop` (None: still running) against `due`."""

    kind: str
    start: datetime
    due: datetime
    warn_at: datetime
    stop: datetime | None
    target: timedelta  # open time from start to due
    calendar: Calendar

    @property
    def running(self) -> bool:
        return self.stop is None

    def status(self, now: datetime) -> str:
        end = self.stop or now
        if end > self.due:
            return BREACHED
        if self.stop is not None:
            return MET
        return AT_RISK if now >= self.warn_at else ON_TRACK

    def used(self, now: datetime) -> float:
        """Share of the target used, in open time (1.0 at the due moment)."""
        end = self.stop or now
        if self.target <= timedelta(0):
            return 1.0 if end >= self.due else 0.0
        return self.calendar.elapsed(self.start, end) / self.target

    def left(self, now: datetime) -> timedelta:
        """Open time left before the due moment; negative when overdue."""
        end = self.stop or now
        if end <= self.due:
            return self.calendar.elapsed(end, self.due)
        return -self.calendar.elapsed(self.due, end)


def make_clock(kind: str, start: datetime, due: datetime, stop: datetime | None) -> Clock:
    current = policy()
    calendar = current.calendar
    target = calendar.elapsed(start, due)
    warn = calendar.add(start, target * current.warn_at) if target > timedelta(0) else due
    return Clock(kind, start, due, min(warn, due), max(stop, start) if stop else None, target, calendar)


def ticket_stop(request) -> datetime | None:
    """When Desk closed the ticket; our record keeps Desk's current status only (docs/sla.md)."""
    if request.desk_status_type == "Closed":
        return request.desk_closed_at or request.updated_at
    if request.desk_status_type is None and request.desk_closed_at is not None:
        return request.desk_closed_at
    return None


def ticket_clock(request) -> Clock:
    """Resolution clock: from the ticket request to Desk's close, against the due date it was given."""
    return make_clock(RESOLUTION, request.created_at, request.due_at, ticket_stop(request))


def escalation_clock(conv) -> Clock | None:
    """First-response clock: from the escalation to the first human reply. None when there is nothing
    to measure: no escalation, or the chat ended unanswered before its due moment (docs/sla.md)."""
    if conv.escalated_at is None:
        return None
    start = conv.escalated_at
    due = policy().calendar.add(start, tier(conv.priority).first_response)
    stop = conv.first_human_reply_at
    if stop is None and conv.closed_at is not None:
        if conv.closed_at <= due:
            return None
        stop = conv.closed_at
    return make_clock(FIRST_RESPONSE, start, due, stop)



_SPAN = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def parse_hours(text: str) -> tuple[tuple[int, int] | None, ...] | None:
    """`24x7`, or `mon-fri 09:00-17:00; sat 10:00-14:00` (days: names, ranges, comma lists)."""
    text = (text or "").strip().lower()
    if text in ("", "24x7", "24/7"):
        return None
    hours: list[tuple[int, int] | None] = [None] * 7
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        try:
            days_text, span_text = entry.split()
        except ValueError:
            raise ValueError(f"business hours entry {entry!r}: expected 'DAYS HH:MM-HH:MM'") from None
        match = _SPAN.match(span_text)
        if not match:
            raise ValueError(f"business hours entry {entry!r}: expected HH:MM-HH:MM")
        h1, m1, h2, m2 = map(int, match.groups())
        opens, closes = h1 * 60 + m1, h2 * 60 + m2
        if m1 > 59 or m2 > 59 or not 0 <= opens < closes <= 1440:
            raise ValueError(f"business hours entry {entry!r}: opening must come before closing, within one day")
        for day in _parse_days(days_text, entry):
            hours[day] = (opens, closes)
    if all(span is None for span in hours):
        raise ValueError("business hours name no open day")
    return tuple(hours)


def _parse_days(text: str, entry: str) -> list[int]:
    days: list[int] = []
    for item in text.split(","):
        first, _, last = item.partition("-")
        if first[:3] not in DAYS or (last and last[:3] not in DAYS):
            raise ValueError(f"business hours entry {entry!r}: unknown day in {item!r}")
        a, b = DAYS.index(first[:3]), DAYS.index((last or first)[:3])
        days.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(b + 1)])
    return days


def parse_holidays(value) -> frozenset[date]:
    items = value if isinstance(value, list) else str(value or "").replace(";", ",").split(",")
    try:
        return frozenset(date.fromisoformat(str(item).strip()) for item in items if str(item).strip())
    except ValueError as exc:
        raise ValueError(f"holidays must be YYYY-MM-DD dates: {exc}") from None


def _tiers(raw) -> dict[str, Tier]:
    tiers = dict(DEFAULT_TIERS)
    if not isinstance(raw, dict):
        raise ValueError('"tiers" must be an object keyed by High, Medium, Low')
    for priority, spec in raw.items():
        if priority not in DEFAULT_TIERS or not isinstance(spec, dict):
            raise ValueError(f"unknown priority {priority!r} (High, Medium, Low) or its settings are not an object")
        base = tiers[priority]
        resolution = _minutes(spec, "resolution_minutes", base.resolution)
        first_response = _minutes(spec, "first_response_minutes", base.first_response)
        # A changed target without its own wording gets a truthful one rather than the old range.
        default_eta = base.eta_text if resolution == base.resolution else f"within {_hours_text(resolution)}"
        tiers[priority] = Tier(priority, str(spec.get("eta") or default_eta), resolution, first_response,
                               str(spec.get("escalation") or base.escalation))
    return tiers


def _minutes(spec: dict, key: str, default: timedelta) -> timedelta:
    if key not in spec:
        return default
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{key} must be a positive number of minutes")
    return timedelta(minutes=value)


def _hours_text(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    if minutes % 60:
        return f"{minutes} minutes"
    return "1 hour" if minutes == 60 else f"{minutes // 60} hours"


def policy_from_env(env: Mapping[str, str]) -> Policy:
    """`SLA_POLICY` (JSON) and the single settings that override its parts; ValueError when malformed."""
    raw = {}
    if (env.get("SLA_POLICY") or "").strip():
        try:
            raw = json.loads(env["SLA_POLICY"])
        except json.JSONDecodeError as exc:
            raise ValueError(f"SLA_POLICY is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError("SLA_POLICY must be a JSON object")
        unknown = set(raw) - {"tiers", "timezone", "business_hours", "holidays", "warn_at"}
        if unknown:
            raise ValueError(f"SLA_POLICY has unknown keys: {', '.join(sorted(unknown))}")
    zone = env.get("SLA_TIMEZONE") or raw.get("timezone") or "UTC"
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown SLA time zone {zone!r} (use an IANA name such as Europe/London)") from None
    hours = parse_hours(env.get("SLA_BUSINESS_HOURS") or raw.get("business_hours") or "24x7")
    holidays = parse_holidays(env.get("SLA_HOLIDAYS") or raw.get("holidays") or [])
    warn_raw = env.get("SLA_WARN_AT") or raw.get("warn_at") or 0.75
    try:
        warn_at = float(warn_raw)
    except (TypeError, ValueError):
        raise ValueError(f"SLA_WARN_AT must be a number between 0 and 1, got {warn_raw!r}") from None
    if not 0 < warn_at < 1:
        raise ValueError(f"SLA_WARN_AT must be between 0 and 1, got {warn_at}")
    return Policy(_tiers(raw.get("tiers", {})), Calendar(str(zone), hours, holidays), warn_at)
