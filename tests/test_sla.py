"""The SLA policy: CONTRACT.md defaults, the business-hours calendar (time zones, weekends, holidays,
daylight saving), configuration, and the clocks of tickets and escalations."""
from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from acebuddy import clock, notifications, sla, tickets
from acebuddy.bot import workflows
from acebuddy.config import Config, ConfigError
from acebuddy.extensions import db
from acebuddy.models import Conversation, TicketRequest

NEW_YORK = {"SLA_TIMEZONE": "America/New_York", "SLA_BUSINESS_HOURS": "mon-fri 09:00-17:00", "SLA_HOLIDAYS": "2025-03-17"}


def calendar(**env) -> sla.Calendar:
    return sla.policy_from_env(env).calendar


def test_defaults_are_contract_md_exactly():
    start = datetime(2025, 3, 15, 23, 30)  # a Saturday night: 24x7 by default
    assert [(sla.tier(p).eta_text, sla.due_at(p, start) - start) for p in sla.PRIORITIES] == [
        ("1-2 hours", timedelta(hours=2)), ("2-4 hours", timedelta(hours=4)), ("4-8 hours", timedelta(hours=8)),
    ]
    assert [sla.tier(p).first_response for p in sla.PRIORITIES] == [timedelta(minutes=m) for m in (15, 30, 60)]
    assert sla.eta_text("High") == "1-2 hours"
    assert sla.alerts_at_once("High") and not sla.alerts_at_once("Medium") and not sla.alerts_at_once("Low")
    assert sla.tier(None).priority == "Medium"
    assert Config({}).SLA_POLICY == sla.DEFAULT_POLICY


def test_due_at_defaults_to_now(monkeypatch):
    monkeypatch.setattr(clock, "now", lambda: datetime(2025, 3, 10, 8, 0))
    assert sla.due_at("Medium") == datetime(2025, 3, 10, 12, 0)


def test_business_hours_carry_over_the_weekend_and_a_holiday_in_new_york():
    cal = calendar(**NEW_YORK)
    friday_4pm = datetime(2025, 3, 14, 20, 0)  # 16:00 EDT
    # One hour on Friday; Saturday, Sunday and Monday 17 (holiday) are closed; one more on Tuesday.
    assert cal.add(friday_4pm, timedelta(hours=2)) == datetime(2025, 3, 18, 14, 0)  # Tue 10:00 EDT
    assert cal.elapsed(friday_4pm, datetime(2025, 3, 18, 13, 0)) == timedelta(hours=1)  # Tue 09:00: nothing yet
    assert cal.elapsed(friday_4pm, datetime(2025, 3, 18, 14, 0)) == timedelta(hours=2)
    # A ticket opened at night starts counting at the next opening.
    assert cal.add(datetime(2025, 3, 12, 2, 0), timedelta(minutes=30)) == datetime(2025, 3, 12, 13, 30)
    # A target that ends exactly at closing time is due at closing, not the next morning.
    assert cal.add(datetime(2025, 3, 12, 19, 0), timedelta(hours=2)) == datetime(2025, 3, 12, 21, 0)


def test_daylight_saving_changes_move_the_hours_in_utc():
    cal = calendar(SLA_TIMEZONE="Europe/London", SLA_BUSINESS_HOURS="mon-fri 09:00-17:00")
    friday_1pm_gmt = datetime(2025, 3, 28, 13, 0)
    # Four hours on Friday (GMT); British Summer Time starts on Sunday 30: Monday opens at 08:00 UTC.
    assert cal.add(friday_1pm_gmt, timedelta(hours=8)) == datetime(2025, 3, 31, 12, 0)
    assert cal.add(friday_1pm_gmt, timedelta(hours=6)) == datetime(2025, 3, 31, 10, 0)
    # 24x7 in a zone: the night the clocks go forward is an hour shorter, and nothing is lost.
    always = calendar(SLA_TIMEZONE="Europe/London")
    assert always.add(datetime(2025, 3, 29, 23, 0), timedelta(hours=3)) == datetime(2025, 3, 30, 2, 0)


def test_half_hour_offsets_and_saturday_hours():
    cal = calendar(SLA_TIMEZONE="Asia/Kolkata", SLA_BUSINESS_HOURS="mon-fri 10:00-18:00; sat 10:00-14:00")
    saturday_1pm_ist = datetime(2025, 3, 15, 7, 30)
    # One hour on Saturday, Sunday closed, three on Monday: 13:00 IST.
    assert cal.add(saturday_1pm_ist, timedelta(hours=4)) == datetime(2025, 3, 17, 7, 30)
    assert cal.describe() == "Mon-Fri 10:00-18:00, Sat 10:00-14:00 Asia/Kolkata"


def test_holidays_on_a_24x7_calendar_skip_the_whole_local_day():
    cal = calendar(SLA_TIMEZONE="America/New_York", SLA_HOLIDAYS="2025-12-25")
    christmas_eve_11pm = datetime(2025, 12, 25, 4, 0)  # 23:00 EST on the 24th
    assert cal.add(christmas_eve_11pm, timedelta(hours=2)) == datetime(2025, 12, 26, 6, 0)  # 01:00 EST on the 26th


def test_due_at_eta_and_the_desk_due_date_follow_the_configured_calendar(app, monkeypatch):
    app.config["SLA_POLICY"] = sla.policy_from_env(NEW_YORK)
    monkeypatch.setattr(clock, "now", lambda: datetime(2025, 3, 14, 20, 0))
    with app.app_context():
        assert sla.due_at("High") == datetime(2025, 3, 18, 14, 0)
        assert sla.eta_text("High") == "1-2 hours (business hours: Mon-Fri 09:00-17:00 America/New_York)"
        conv = Conversation(salesiq_id="c1", open_key="c1", visitor_name="John Doe", data={"server": "srv1"})
        db.session.add(conv)
        db.session.flush()
        request = tickets.request_ticket(conv, workflows.get("server_reboot"))
        assert request.due_at == datetime(2025, 3, 18, 14, 0)  # what Desk gets as dueDate
        assert "business hours: Mon-Fri 09:00-17:00 America/New_York" in request.description
        request.desk_ticket_id, request.desk_ticket_number = "1", "101"
        assert "ETA: 1-2 hours (business hours" in notifications.chat_text("ticket_chat", request)
        db.session.rollback()


def test_sla_policy_json_sets_targets_calendar_and_warning_share():
    found = Config({"SLA_POLICY": """{"tiers": {"High": {"resolution_minutes": 60, "first_response_minutes": 5},
        "Low": {"eta": "next business day", "resolution_minutes": 600}}, "timezone": "Europe/Paris",
        "business_hours": "mon-sat 08:00-20:00", "holidays": ["2025-05-01"], "warn_at": 0.5}"""}).SLA_POLICY
    assert found.tiers["High"] == sla.Tier("High", "within 1 hour", timedelta(hours=1), timedelta(minutes=5), "immediate")
    assert found.tiers["Medium"] == sla.DEFAULT_TIERS["Medium"]
    assert found.tiers["Low"].eta_text == "next business day"
    assert found.calendar == sla.Calendar("Europe/Paris", ((480, 1200),) * 6 + (None,), frozenset({date(2025, 5, 1)}))
    assert found.warn_at == 0.5
    # The single settings win over the JSON.
    assert Config({"SLA_POLICY": '{"timezone": "Europe/Paris"}', "SLA_TIMEZONE": "UTC"}).SLA_POLICY.calendar.timezone == "UTC"


@pytest.mark.parametrize("env, message", [
    ({"SLA_TIMEZONE": "Mars/Olympus"}, "unknown SLA time zone"),
    ({"SLA_BUSINESS_HOURS": "weekdays 9-5"}, "business hours"),
    ({"SLA_BUSINESS_HOURS": "mon-fri 17:00-09:00"}, "opening must come before closing"),
    ({"SLA_HOLIDAYS": "25/12/2025"}, "YYYY-MM-DD"),
    ({"SLA_WARN_AT": "75"}, "between 0 and 1"),
    ({"SLA_POLICY": "{not json"}, "not valid JSON"),
    ({"SLA_POLICY": '{"tiers": {"Urgent": {}}}'}, "unknown priority"),
    ({"SLA_POLICY": '{"tiers": {"High": {"resolution_minutes": 0}}}'}, "positive number"),
    ({"SLA_POLICY": '{"timezone": "UTC", "hours": "24x7"}'}, "unknown keys"),
])
def test_a_malformed_policy_stops_start_up(env, message):
    with pytest.raises(ConfigError, match=message):
        Config(env)


def _ticket(app, created: datetime, priority="High", **desk) -> TicketRequest:
    conv = Conversation(salesiq_id="c1", open_key="c1")
    db.session.add(conv)
    db.session.flush()
    request = TicketRequest(ref="AB-1", conversation=conv, workflow="server_reboot", subject="s", description="",
                            priority=priority, due_at=sla.due_at(priority, created), contact_name="John Doe",
                            created_at=created, updated_at=created, **desk)
    db.session.add(request)
    db.session.commit()
    return request


def test_a_ticket_clock_crosses_75_and_100_percent_in_business_time(app):
    app.config["SLA_POLICY"] = sla.policy_from_env(NEW_YORK)
    with app.app_context():
        request = _ticket(app, datetime(2025, 3, 14, 20, 0))  # Friday 16:00 EDT, High: 2 business hours
        found = sla.ticket_clock(request)
        assert (found.due, found.warn_at, found.target) == (datetime(2025, 3, 18, 14, 0), datetime(2025, 3, 18, 13, 30), timedelta(hours=2))
        expectations = [
            (datetime(2025, 3, 14, 21, 0), sla.ON_TRACK, 0.5),    # Friday closing
            (datetime(2025, 3, 17, 16, 0), sla.ON_TRACK, 0.5),    # Monday noon, a holiday: nothing counts
            (datetime(2025, 3, 18, 13, 29), sla.ON_TRACK, 89 / 120),
            (datetime(2025, 3, 18, 13, 30), sla.AT_RISK, 0.75),
            (datetime(2025, 3, 18, 14, 0), sla.AT_RISK, 1.0),      # due now: not yet breached
            (datetime(2025, 3, 18, 14, 1), sla.BREACHED, 121 / 120),
        ]
        for now, status, used in expectations:
            assert (found.status(now), found.used(now)) == (status, pytest.approx(used)), now
        assert found.left(datetime(2025, 3, 15, 12, 0)) == timedelta(hours=1)
        assert found.left(datetime(2025, 3, 18, 17, 0)) == -timedelta(hours=3)  # Tuesday 13:00 EDT: 3 business hours late


def test_the_ticket_clock_stops_when_desk_closes_the_ticket(app):
    with app.app_context():
        request = _ticket(app, datetime(2025, 3, 10, 9, 0), desk_status_type="Open")
        assert sla.ticket_clock(request).running
        request.desk_status_type, request.desk_closed_at = "On Hold", None
        assert sla.ticket_clock(request).running  # On Hold does not pause the clock
        request.desk_status_type, request.desk_closed_at = "Closed", datetime(2025, 3, 10, 10, 59)
        found = sla.ticket_clock(request)
        assert (found.stop, found.status(datetime(2025, 3, 20)), found.used(datetime(2025, 3, 20))) == (
            datetime(2025, 3, 10, 10, 59), sla.MET, pytest.approx(119 / 120))
        request.desk_closed_at = datetime(2025, 3, 10, 11, 0, 1)
        assert sla.ticket_clock(request).status(datetime(2025, 3, 20)) == sla.BREACHED
        # Reopened in Desk: the clock runs again from the request (no paused intervals are kept).
        request.desk_status_type, request.desk_closed_at = "Open", None
        assert sla.ticket_clock(request).running


def test_escalation_clock_runs_from_escalation_to_first_human_reply(app):
    app.config["SLA_POLICY"] = sla.policy_from_env(NEW_YORK)
    with app.app_context():
        # Friday 16:50 EDT, Medium: 30 business minutes, 10 on Friday and 20 on Tuesday after the holiday.
        conv = Conversation(salesiq_id="c1", priority="Medium", escalated_at=datetime(2025, 3, 14, 20, 50))
        found = sla.escalation_clock(conv)
        assert (found.kind, found.due, found.warn_at) == (sla.FIRST_RESPONSE, datetime(2025, 3, 18, 13, 20), datetime(2025, 3, 18, 13, 12, 30))
        assert found.status(datetime(2025, 3, 17, 20, 0)) == sla.ON_TRACK
        assert found.status(datetime(2025, 3, 18, 13, 12, 30)) == sla.AT_RISK
        conv.first_human_reply_at = datetime(2025, 3, 18, 13, 15)
        assert sla.escalation_clock(conv).status(datetime(2025, 3, 19)) == sla.MET
        conv.first_human_reply_at = datetime(2025, 3, 18, 13, 21)
        assert sla.escalation_clock(conv).status(datetime(2025, 3, 19)) == sla.BREACHED
        # The chat ended unanswered: before the target nothing is measured, after it the target was missed.
        conv.first_human_reply_at, conv.closed_at = None, datetime(2025, 3, 18, 13, 0)
        assert sla.escalation_clock(conv) is None
        conv.closed_at = datetime(2025, 3, 18, 14, 0)
        assert sla.escalation_clock(conv).status(datetime(2025, 3, 19)) == sla.BREACHED
        assert sla.escalation_clock(Conversation(salesiq_id="c2")) is None
