"""SLA report figures on a simulated week of tickets and escalations, counted by hand.

The week runs Monday 10 to Sunday 16 March 2025 (default policy: 24x7, UTC); "now" is Sunday 17:00.
"""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta

import pytest

from acebuddy import clock, reports, sla
from acebuddy.extensions import db
from acebuddy.models import CLOSED, CREATED, ESCALATED, FAILED, Conversation, TicketRequest

NOW = datetime(2025, 3, 16, 17, 0)
WEEK = reports.Period(date(2025, 3, 10), date(2025, 3, 16))


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute)


def make_conversation(name: str, *, workflow=None, priority=None, escalated=None, replied=None, closed=None) -> Conversation:
    conv = Conversation(
        salesiq_id=f"siq-{name}", open_key=None if closed else f"siq-{name}", visitor_name=f"Customer {name}",
        visitor_email=f"{name.lower()}@customer.example", workflow=workflow, priority=priority,
        status=CLOSED if closed else ESCALATED if escalated else "bot", escalated_at=escalated,
        first_human_reply_at=replied, closed_at=closed, created_at=escalated or at(9, 0), last_message_at=escalated or at(9, 0),
    )
    db.session.add(conv)
    db.session.flush()
    return conv


def make_ticket(name: str, priority: str, workflow: str, created: datetime, *, closed=None, status_type=None,
                state=CREATED, updated=None) -> TicketRequest:
    conv = make_conversation(name, workflow=workflow, priority=priority)
    if closed is not None and status_type is None:
        status_type = "Closed"
    request = TicketRequest(
        ref=f"AB-{name}", conversation=conv, workflow=workflow, subject=f"{workflow} - Customer {name}",
        description="", priority=priority, due_at=sla.due_at(priority, created), contact_name=f"Customer {name}",
        contact_email=f"{name.lower()}@customer.example", state=state, created_at=created, updated_at=updated or created,
        desk_ticket_id=f"1892000{name[1:]}" if state == CREATED else None,
        desk_ticket_number=name[1:] if state == CREATED else None,
        desk_status={"Closed": "Closed", "On Hold": "On Hold"}.get(status_type, "Open") if state == CREATED else None,
        desk_status_type=(status_type or "Open") if state == CREATED else None,
        desk_closed_at=closed,
    )
    db.session.add(request)
    db.session.flush()
    return request


def build_week() -> dict:
    """The fixture data set; its expected figures are spelled out in the tests below."""
    objects = {
        # Tickets: created -> due (2 h High, 4 h Medium, 8 h Low) -> closed.
        "T1": make_ticket("T1", "High", "server_reboot", at(10, 9), closed=at(10, 10, 30)),        # met
        "T2": make_ticket("T2", "High", "rdp_connection", at(10, 13), closed=at(10, 16)),          # breached Mon
        "T3": make_ticket("T3", "Medium", "password_reset", at(11, 10), closed=at(11, 13, 59)),    # met
        "T4": make_ticket("T4", "Medium", "password_reset", at(12, 8), closed=at(12, 12)),         # met, closed at due
        "T5": make_ticket("T5", "Medium", "email_issue", at(13, 22), closed=at(14, 9)),            # breached Fri
        "T6": make_ticket("T6", "Low", "disk_upgrade", at(14, 10)),                               # open, breached Fri
        "T7": make_ticket("T7", "Low", "monitor_setup", at(16, 10)),                              # open, 87.5%: at risk
        "T8": make_ticket("T8", "High", "account_locked", at(16, 16)),                            # open, 50%: on track
        "T9": make_ticket("T9", "Medium", "quickbooks_issue", at(16, 13, 30), status_type="On Hold"),  # 87.5%
        "T10": make_ticket("T10", "Medium", "printer_issue", at(11, 9), state=FAILED),            # never measured
        "T11": make_ticket("T11", "High", "server_slowness", at(9, 23), closed=at(10, 3)),        # before the week; breached Mon
        # Desk says Closed without a closedTime: the moment we learnt it (updated_at) stops the clock.
        "T13": make_ticket("T13", "Medium", "windows_update", at(15, 9), status_type="Closed", updated=at(15, 12)),
        # Escalations: first response 15 min High, 30 min Medium (and no priority), 60 min Low.
        "E1": make_conversation("E1", workflow="rdp_connection", priority="High", escalated=at(10, 9, 5), replied=at(10, 9, 15)),
        "E2": make_conversation("E2", escalated=at(11, 14), replied=at(11, 14, 45)),                         # breached Tue
        "E3": make_conversation("E3", workflow="password_reset", priority="Medium", escalated=at(12, 10), closed=at(12, 10, 10)),  # left early
        "E4": make_conversation("E4", workflow="disk_upgrade", priority="Low", escalated=at(13, 10), closed=at(13, 11, 30)),  # breached Thu
        "E5": make_conversation("E5", workflow="server_reboot", priority="High", escalated=at(16, 16, 50)),  # 67%: on track
        "E6": make_conversation("E6", workflow="password_reset", priority="Medium", escalated=at(16, 16, 35)),  # 83%: at risk
        "E7": make_conversation("E7", workflow="monitor_setup", priority="Low", escalated=at(16, 15, 30)),   # breached Sun
    }
    db.session.commit()
    return objects


# label, total, on_track, at_risk, breached, met, percent_met
EXPECTED = {
    "tickets by priority": [
        ("High", 3, 1, 0, 1, 1, 50.0),
        ("Medium", 5, 0, 1, 1, 3, 75.0),
        ("Low", 2, 0, 1, 1, 0, 0.0),
        ("All", 10, 1, 2, 3, 4, 57.1),
    ],
    "tickets by workflow": [
        ("account_locked", 1, 1, 0, 0, 0, None),
        ("disk_upgrade", 1, 0, 0, 1, 0, 0.0),
        ("email_issue", 1, 0, 0, 1, 0, 0.0),
        ("monitor_setup", 1, 0, 1, 0, 0, None),
        ("password_reset", 2, 0, 0, 0, 2, 100.0),
        ("quickbooks_issue", 1, 0, 1, 0, 0, None),
        ("rdp_connection", 1, 0, 0, 1, 0, 0.0),
        ("server_reboot", 1, 0, 0, 0, 1, 100.0),
        ("windows_update", 1, 0, 0, 0, 1, 100.0),
    ],
    "escalations by priority": [
        ("High", 2, 1, 0, 0, 1, 100.0),
        ("Medium", 2, 0, 1, 1, 0, 0.0),
        ("Low", 2, 0, 0, 2, 0, 0.0),
        ("All", 6, 1, 1, 3, 1, 25.0),
    ],
    "escalations by workflow": [
        ("disk_upgrade", 1, 0, 0, 1, 0, 0.0),
        ("monitor_setup", 1, 0, 0, 1, 0, 0.0),
        ("none", 1, 0, 0, 1, 0, 0.0),
        ("password_reset", 1, 0, 1, 0, 0, None),
        ("rdp_connection", 1, 0, 0, 0, 1, 100.0),
        ("server_reboot", 1, 1, 0, 0, 0, None),
    ],
}
# day, ticket breaches, escalation breaches
EXPECTED_BREACHES = [
    ("2025-03-10", 2, 0), ("2025-03-11", 0, 1), ("2025-03-12", 0, 0), ("2025-03-13", 0, 1),
    ("2025-03-14", 2, 0), ("2025-03-15", 0, 0), ("2025-03-16", 0, 1),
]
# The live list at NOW, most urgent first: ref, status.
EXPECTED_LIVE = [("AB-T6", "breached"), ("E7", "breached"), ("E6", "at_risk"), ("AB-T9", "at_risk"), ("AB-T7", "at_risk")]


def _rows(figures):
    return [(f.label, f.total, f.on_track, f.at_risk, f.breached, f.met, f.percent_met) for f in figures]


@pytest.fixture
def week(app_ctx, monkeypatch):
    monkeypatch.setattr(clock, "now", lambda: NOW)
    return build_week()


def test_the_week_figures_are_exactly_the_hand_counted_ones(week):
    report = reports.build_report(WEEK)
    assert {section: _rows(figures) for section, figures in report.sections()} == EXPECTED


def test_breaches_are_counted_on_the_day_the_target_passed(week):
    report = reports.build_report(WEEK)
    got = [(d.day.isoformat(), d.tickets, d.escalations) for d in report.breaches_per_day]
    # T11 was opened the Sunday before the week but breached on Monday: it counts in the chart only.
    assert got == EXPECTED_BREACHES
    assert report.most_breaches_in_a_day == 2


def test_the_live_list_holds_running_clocks_at_risk_or_breached_most_urgent_first(week):
    items = reports.at_risk()
    got = [(i.ref if i.request else i.conversation.salesiq_id.removeprefix("siq-"), i.clock.status(NOW)) for i in items]
    assert got == EXPECTED_LIVE
    on_hold = next(i for i in items if i.request and i.request.ref == "AB-T9")
    assert on_hold.on_hold  # listed: On Hold does not pause the clock
    t6 = items[0]
    assert t6.clock.left(NOW) == -(NOW - at(14, 18))
    assert reports.duration_text(t6.clock.left(NOW)) == "1 d 23 h"


def test_report_csv_carries_the_same_figures(week):
    rows = list(csv.reader(io.StringIO(reports.report_csv(reports.build_report(WEEK)))))
    assert rows[0] == ["section", "group", "total", "on_track", "at_risk", "breached", "met", "percent_met"]
    figures = [r for r in rows[1:] if "per day" not in r[0]]
    expected = [
        [section, label, *map(str, counts), "" if pct is None else f"{pct:.1f}"]
        for section, groups in EXPECTED.items() for label, *counts, pct in groups
    ]
    assert figures == expected
    per_day = [r for r in rows[1:] if "per day" in r[0]]
    assert per_day == (
        [["ticket breaches per day", day, "", "", "", str(t), "", ""] for day, t, _ in EXPECTED_BREACHES]
        + [["escalation breaches per day", day, "", "", "", str(e), "", ""] for day, _, e in EXPECTED_BREACHES]
    )


def test_items_csv_lists_every_clock_of_the_period(week):
    items = reports.period_items(WEEK)
    rows = list(csv.DictReader(io.StringIO(reports.items_csv(items, NOW, "https://ace.example"))))
    assert len(rows) == 16  # 10 tickets + 6 measured escalations (E3 left before its target)
    by_ref = {r["ref"]: r for r in rows}
    t2 = by_ref["AB-T2"]
    assert (t2["kind"], t2["priority"], t2["workflow"], t2["status"]) == ("ticket", "High", "rdp_connection", "breached")
    assert (t2["started_utc"], t2["due_utc"], t2["stopped_utc"]) == ("2025-03-10T13:00:00Z", "2025-03-10T15:00:00Z", "2025-03-10T16:00:00Z")
    assert (t2["percent_used"], t2["minutes_left"]) == ("150", "-60")
    assert t2["conversation_url"] == f"https://ace.example/dashboard/conversations/{week['T2'].conversation.id}"
    t7 = by_ref["AB-T7"]
    assert (t7["status"], t7["percent_used"], t7["minutes_left"], t7["stopped_utc"]) == ("at_risk", "88", "60", "")
    assert by_ref["AB-T13"]["stopped_utc"] == "2025-03-15T12:00:00Z"
    assert "AB-T10" not in by_ref and "AB-T11" not in by_ref


def test_csv_cells_that_look_like_formulas_are_defused(app_ctx, monkeypatch):
    monkeypatch.setattr(clock, "now", lambda: NOW)
    request = make_ticket("T1", "High", "server_reboot", at(16, 12))
    request.contact_name = "=HYPERLINK(\"http://evil\")"
    db.session.commit()
    rows = list(csv.DictReader(io.StringIO(reports.items_csv(reports.period_items(WEEK), NOW, "http://x"))))
    assert rows[0]["customer"] == "'=HYPERLINK(\"http://evil\")"


def test_breaches_per_day_use_the_calendar_time_zone(app, monkeypatch):
    app.config["SLA_POLICY"] = sla.policy_from_env({"SLA_TIMEZONE": "America/Los_Angeles"})
    with app.app_context():
        monkeypatch.setattr(clock, "now", lambda: datetime(2025, 3, 14, 12, 0))
        # Created 21:30 PDT on Wednesday 12 (04:30 UTC on the 13th): due 23:30 PDT, still Wednesday there.
        make_ticket("T1", "High", "server_reboot", datetime(2025, 3, 13, 4, 30))
        db.session.commit()
        report = reports.build_report(reports.Period(date(2025, 3, 12), date(2025, 3, 13)))
        assert [(d.day.isoformat(), d.tickets) for d in report.breaches_per_day] == [("2025-03-12", 1), ("2025-03-13", 0)]
        assert report.tickets_by_priority[0].total == 1  # opened on the 12th, local time


def test_period_parsing(app_ctx, monkeypatch):
    monkeypatch.setattr(clock, "now", lambda: NOW)
    assert reports.parse_period(None, None) == (reports.Period(date(2025, 3, 10), date(2025, 3, 16)), None)
    assert reports.parse_period("2025-03-01", "2025-03-02") == (reports.Period(date(2025, 3, 1), date(2025, 3, 2)), None)
    assert reports.parse_period("2025-03-05", None)[0] == reports.Period(date(2025, 3, 5), date(2025, 3, 5))
    for bad in (("2025-13-01", "2025-03-02"), ("2025-03-05", "2025-03-01"), ("2023-01-01", "2025-03-01"),
                ("9999-12-31", None), ("0001-01-01", "0001-01-02")):  # found by the fuzzer: bounds overflowed
        period, error = reports.parse_period(*bad)
        assert period == WEEK and error


def test_period_bounds_are_local_midnights(app):
    app.config["SLA_POLICY"] = sla.policy_from_env({"SLA_TIMEZONE": "Asia/Kolkata"})
    with app.app_context():
        assert reports.Period(date(2025, 3, 10), date(2025, 3, 10)).bounds() == (
            datetime(2025, 3, 9, 18, 30), datetime(2025, 3, 10, 18, 30))


def test_duration_text():
    assert reports.duration_text(timedelta(minutes=12, seconds=59)) == "12 min"
    assert reports.duration_text(timedelta(hours=1, minutes=5)) == "1 h 05 min"
    assert reports.duration_text(-timedelta(days=2, hours=3, minutes=4)) == "2 d 3 h"
