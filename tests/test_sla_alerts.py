"""SLA alerts: a warning at 75% and an alert at the breach, once each per clock and manager, under
controlled time (business hours, weekends, holidays), concurrent evaluations, and real SMTP delivery."""
from __future__ import annotations

import threading
from datetime import datetime

import pytest
from sqlalchemy import func, select

from acebuddy import clock, jobs, notifications, sla, sla_alerts
from acebuddy.extensions import db
from acebuddy.models import N_SENT, Notification
from tests.helpers import make_user
from tests.test_reports import NOW, build_week, make_conversation, make_ticket

NEW_YORK = {"SLA_TIMEZONE": "America/New_York", "SLA_BUSINESS_HOURS": "mon-fri 09:00-17:00", "SLA_HOLIDAYS": "2025-03-17"}


class Frozen:
    """`clock.now` under the test's control."""

    def __init__(self, monkeypatch, moment: datetime):
        self.moment = moment
        monkeypatch.setattr(clock, "now", lambda: self.moment)


def alerts() -> list[tuple[str, str]]:
    rows = db.session.scalars(select(Notification).where(Notification.kind.like("sla_%")).order_by(Notification.id))
    return [(row.key, row.kind) for row in rows]


@pytest.fixture
def managers(app_ctx):
    make_user("boss@acebuddy.example", role="manager", name="Bea Boss")
    make_user("second@acebuddy.example", role="manager", name="Sam Second")
    make_user("agent@acebuddy.example", role="agent")
    gone = make_user("gone@acebuddy.example", role="manager", name="Former Manager")
    gone.active = False
    db.session.commit()
    return ["boss@acebuddy.example", "second@acebuddy.example"]


def test_warning_at_75_percent_and_breach_at_100_across_a_weekend_and_a_holiday(app, managers, monkeypatch):
    app.config["SLA_POLICY"] = sla.policy_from_env(NEW_YORK)
    frozen = Frozen(monkeypatch, datetime(2025, 3, 14, 20, 0))
    request = make_ticket("T1", "High", "server_reboot", frozen.moment)  # Friday 16:00 EDT; due Tuesday 10:00 EDT
    db.session.commit()
    timeline = [
        (datetime(2025, 3, 14, 20, 59), []),                     # Friday, 16:59 EDT: 49%
        (datetime(2025, 3, 15, 18, 0), []),                      # the weekend does not count
        (datetime(2025, 3, 17, 18, 0), []),                      # nor does the holiday on Monday
        (datetime(2025, 3, 18, 13, 29, 59), []),                 # Tuesday 09:29:59: just under 75%
        (datetime(2025, 3, 18, 13, 30), ["warning"]),             # 09:30: 75%
        (datetime(2025, 3, 18, 14, 0), ["warning"]),              # 10:00: due, not yet breached
        (datetime(2025, 3, 18, 14, 0, 1), ["warning", "breach"]),
        (datetime(2025, 3, 19, 14, 0), ["warning", "breach"]),    # a day later: nothing new
    ]
    for moment, stages in timeline:
        frozen.moment = moment
        sla_alerts.evaluate()
        sla_alerts.evaluate()  # the next minute's run, or another worker's: nothing more
        assert alerts() == [(f"AB-T1:sla-{stage}:{email}", f"sla_{stage}") for stage in stages for email in managers], moment
    rows = db.session.scalars(select(Notification).where(Notification.kind == "sla_breach")).all()
    assert {(r.recipient, r.ticket_request_id, r.conversation_id) for r in rows} == {
        (email, request.id, request.conversation_id) for email in managers}


def test_escalation_alerts_in_another_time_zone(app, managers, monkeypatch):
    # Mumbai hours; the chat is escalated on Saturday evening, after closing: the clock starts Monday 10:00 IST.
    app.config["SLA_POLICY"] = sla.policy_from_env({"SLA_TIMEZONE": "Asia/Kolkata", "SLA_BUSINESS_HOURS": "mon-sat 10:00-18:00"})
    frozen = Frozen(monkeypatch, datetime(2025, 3, 15, 14, 0))  # 19:30 IST
    conv = make_conversation("E1", workflow="rdp_connection", priority="High", escalated=frozen.moment)
    db.session.commit()
    ref = f"conv{conv.id}:esc20250315T140000"
    for moment, expected in [
        (datetime(2025, 3, 17, 4, 30), []),                                       # Monday 10:00 IST
        (datetime(2025, 3, 17, 4, 41, 15), ["sla_response_warning"]),             # 11:15 of 15 minutes
        (datetime(2025, 3, 17, 4, 45, 1), ["sla_response_warning", "sla_response_breach"]),
    ]:
        frozen.moment = moment
        sla_alerts.evaluate()
        assert [kind for _, kind in alerts()] == [k for k in expected for _ in managers], moment
    assert alerts()[0][0] == f"{ref}:sla-warning:boss@acebuddy.example"


def test_answered_escalations_and_closed_tickets_raise_no_alert(app, managers, monkeypatch):
    frozen = Frozen(monkeypatch, datetime(2025, 3, 10, 9, 0))
    request = make_ticket("T1", "High", "server_reboot", frozen.moment)
    conv = make_conversation("E1", priority="High", escalated=frozen.moment)
    db.session.commit()
    frozen.moment = datetime(2025, 3, 10, 9, 10)  # the escalation is at 67%
    conv.first_human_reply_at = frozen.moment
    request.desk_status_type, request.desk_closed_at = "Closed", datetime(2025, 3, 10, 10, 0)
    db.session.commit()
    frozen.moment = datetime(2025, 3, 10, 18, 0)
    assert sla_alerts.evaluate() == {"warning": 0, "breach": 0}
    assert alerts() == []


def test_on_hold_tickets_are_not_alerted_until_they_leave_on_hold(app, managers, monkeypatch):
    frozen = Frozen(monkeypatch, datetime(2025, 3, 10, 9, 0))
    request = make_ticket("T1", "Medium", "quickbooks_issue", frozen.moment, status_type="On Hold")
    db.session.commit()
    frozen.moment = datetime(2025, 3, 10, 14, 0)  # past due while waiting on the customer
    sla_alerts.evaluate()
    assert alerts() == []
    request.desk_status, request.desk_status_type = "Open", "Open"
    db.session.commit()
    sla_alerts.evaluate()
    # Already breached when found: the breach alert only, no late warning.
    assert [kind for _, kind in alerts()] == ["sla_breach", "sla_breach"]


def test_configured_recipients_replace_the_managers(app, managers, monkeypatch):
    app.config["SLA_ALERT_EMAILS"] = ["Duty@Acebuddy.example", "duty@acebuddy.example", "ops@acebuddy.example"]
    frozen = Frozen(monkeypatch, datetime(2025, 3, 10, 9, 0))
    make_ticket("T1", "High", "server_reboot", frozen.moment)
    db.session.commit()
    frozen.moment = datetime(2025, 3, 10, 10, 30)
    assert sla_alerts.recipients() == ["duty@acebuddy.example", "ops@acebuddy.example"]
    sla_alerts.evaluate()
    assert alerts() == [("AB-T1:sla-warning:duty@acebuddy.example", "sla_warning"),
                        ("AB-T1:sla-warning:ops@acebuddy.example", "sla_warning")]


def test_without_recipients_nothing_is_queued(app_ctx, monkeypatch):
    frozen = Frozen(monkeypatch, datetime(2025, 3, 10, 9, 0))
    make_ticket("T1", "High", "server_reboot", frozen.moment)
    db.session.commit()
    frozen.moment = datetime(2025, 3, 11)
    assert sla_alerts.evaluate() == {"warning": 0, "breach": 0}
    assert alerts() == []


def test_a_long_address_keeps_the_key_within_its_column():
    email = "a" * 100 + "@example.com"
    key = sla_alerts.alert_key("AB-0123456789", "warning", email)
    assert len(key) <= 120 and key.startswith("AB-0123456789:sla-warning:")
    assert key == sla_alerts.alert_key("AB-0123456789", "warning", email)


def test_concurrent_evaluations_queue_each_alert_once(app, managers, monkeypatch):
    Frozen(monkeypatch, NOW)
    build_week()
    start = threading.Barrier(4)
    results, errors = [], []

    def run():
        try:
            with app.app_context():
                start.wait()
                results.append(sla_alerts.evaluate())
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    # The week's running clocks: T6 and E7 breached, T7 and E6 at risk, T9 at risk but On Hold.
    assert sum(r["breach"] for r in results) == 2 * len(managers)
    assert sum(r["warning"] for r in results) == 2 * len(managers)
    db.session.expire_all()
    keys = [key for key, _ in alerts()]
    assert len(keys) == len(set(keys)) == 4 * len(managers)
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 8
    assert sla_alerts.evaluate() == {"warning": 0, "breach": 0}


def test_the_scheduled_job_evaluates(app, managers, monkeypatch):
    Frozen(monkeypatch, NOW)
    build_week()
    assert jobs.check_sla() == {"warning": 2 * len(managers), "breach": 2 * len(managers)}
    assert jobs.check_sla() == {"warning": 0, "breach": 0}


def test_worker_cron_runs_the_check_every_minute(app, monkeypatch):
    import worker

    registered = {}

    class RecordingCron:
        def __init__(self, **_):
            pass

        def register(self, func, **options):
            registered[func.__name__] = options

        def start(self):
            pass

    monkeypatch.setattr(worker, "CronScheduler", RecordingCron)
    monkeypatch.setattr(worker, "create_app", lambda: app)
    worker.main(["--cron"])
    assert registered["check_sla"]["interval"] <= 60
    assert registered["check_sla"]["queue_name"] == jobs.QUEUE_NAME


def test_alerts_are_delivered_once_through_real_smtp(live_server, smtp_server, monkeypatch):
    app = live_server.app
    app.config["SLA_POLICY"] = sla.policy_from_env(NEW_YORK)
    with app.app_context():
        make_user("boss@acebuddy.example", role="manager", name="Bea Boss")
        frozen = Frozen(monkeypatch, datetime(2025, 3, 14, 20, 0))
        request = make_ticket("T1", "High", "server_reboot", frozen.moment)
        request.desk_web_url = "https://desk.zoho.com/support/acme/ShowHomePage.do#Cases/dv/1892000001"
        # Escalated Tuesday 09:15 EDT, Low: 60 minutes, so at 10:05 it is at 83%.
        make_conversation("E1", priority="Low", escalated=datetime(2025, 3, 18, 13, 15))
        db.session.commit()
        frozen.moment = datetime(2025, 3, 18, 14, 5)  # Tuesday 10:05 EDT: the ticket is 5 minutes late
        sla_alerts.evaluate()
        rows = db.session.scalars(select(Notification).order_by(Notification.id)).all()
        assert [(r.kind, r.recipient) for r in rows] == [("sla_breach", "boss@acebuddy.example"),
                                                         ("sla_response_warning", "boss@acebuddy.example")]
        for row in rows:
            assert notifications.deliver(row.id) == N_SENT
            assert notifications.deliver(row.id) == "done"
        assert db.session.scalar(select(func.count()).where(Notification.state == N_SENT)) == 2
        conv_url = f"{app.config['PUBLIC_URL']}/dashboard/conversations/{request.conversation_id}"

    messages = smtp_server.wait_for(2)
    assert len(messages) == 2
    breach, warning = (m["message"] for m in messages)
    assert breach["Subject"] == "SLA breached - Server Reboot ticket for Customer T1"
    assert breach["To"] == "boss@acebuddy.example" and breach["X-AceBuddy-Notification"] == "sla_breach"
    assert breach["X-Priority"] == "1 (Highest)"  # High priority: marked urgent
    text = breach.get_body(("plain",)).get_content()
    assert "was due Tue 18 Mar 2025 10:00 EDT and is still open" in text
    assert "Target used: 104%, overdue by 5 min" in text
    assert "Business hours: Mon-Fri 09:00-17:00 America/New_York" in text
    assert f"Conversation: {conv_url}" in text
    assert "Desk ticket: https://desk.zoho.com/support/acme/ShowHomePage.do#Cases/dv/1892000001" in text
    html = breach.get_body(("html",)).get_content()
    assert "Tue 18 Mar 2025 10:00 EDT" in html and "Open the Desk ticket" in html
    assert warning["Subject"] == "SLA warning - chat waiting for a person - Customer E1"
    warning_text = warning.get_body(("plain",)).get_content()
    assert "waiting for a person since Tue 18 Mar 2025 09:15 EDT; the first reply is due Tue 18 Mar 2025 10:15 EDT" in warning_text
    assert "Target used: 83%, 10 min left" in warning_text and "Status now: At risk" in warning_text
