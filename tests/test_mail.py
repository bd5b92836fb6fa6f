"""E-mail notifications: templates (hostile input escaped), headers, deterministic Message-IDs, delivery
through a real SMTP server, refused addresses, and exactly-once rows."""
import smtplib
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from acebuddy import clock, mail, notifications
from acebuddy.extensions import db
from acebuddy.models import Account, Conversation, Customer, Message, Notification, TicketRequest
from tests.conftest import build_app

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def mail_app(tmp_path, redis_url, _external_schema, smtp_server):
    return build_app(tmp_path, redis_url, environ={"MAIL_PORT": str(smtp_server.port)})


def make_ticket(priority="Medium", name=HOSTILE, workflow="printer_issue", status="Open") -> TicketRequest:
    account = Account(name=f"Acme {HOSTILE}", poc_email="poc@acme.example")
    customer = Customer(username="pat", email="pat@example.com", name=name, phone="555 0100", account=account)
    conv = Conversation(salesiq_id="mail-1", open_key="mail-1", customer=customer, workflow=workflow,
                        data={"model": HOSTILE, "connection": "Network / Wi-Fi"}, state={})
    db.session.add_all([account, customer, conv])
    db.session.flush()
    db.session.add(Message(conversation=conv, role="customer", text=f"printer broken {HOSTILE}"))
    request = TicketRequest(ref="AB-MAIL000001", conversation=conv, workflow=workflow, subject=f"Printer Issue - {name}",
                            description="", priority=priority, ticket_status=status, due_at=clock.now() + timedelta(hours=4),
                            contact_name=name, contact_email="pat@example.com", contact_phone="555 0100",
                            state="created", desk_ticket_id="1892000000400001", desk_ticket_number="101",
                            desk_web_url="https://desk.example/t/101", created_in_desk_at=clock.now())
    db.session.add(request)
    db.session.commit()
    return request


def queued(kind: str, **ticket) -> Notification:
    """A ticket's notifications queued and committed; the row of `kind`."""
    notifications.queue_ticket_notifications(make_ticket(**ticket))
    db.session.commit()
    return db.session.scalar(select(Notification).where(Notification.kind == kind))


@pytest.mark.parametrize("kind", ["ticket_customer", "ticket_support", "ticket_poc", "escalation_support",
                                  "ticket_failed_support"])
def test_every_template_escapes_customer_text_in_html(mail_app, kind):
    with mail_app.app_context():
        request = make_ticket()
        row = Notification(key=f"k-{kind}", kind=kind, channel="email", recipient="x@example.com",
                           conversation=request.conversation, ticket_request=request)
        message = mail.build(row)
        assert "<script>" not in message.html and "onerror=alert" not in message.html.replace("onerror=alert(1)&gt;", "")
        assert "&lt;script&gt;" in message.html
        assert message.body and "<html" not in message.body
        assert "101" in message.subject or kind in ("escalation_support", "ticket_failed_support", "ticket_support")


def test_subjects_follow_the_seed(mail_app):
    with mail_app.app_context():
        request = make_ticket(name="John Doe")
        subjects = {kind: mail.build(Notification(key=kind, kind=kind, channel="email", recipient="x@example.com",
                                                  conversation=request.conversation, ticket_request=request)).subject
                    for kind in ("ticket_customer", "ticket_support")}
        assert subjects == {"ticket_customer": "Your Support Ticket #101", "ticket_support": "New Ticket - Printer Issue"}


def test_customer_mail_carries_ticket_status_priority_eta_and_next_steps(mail_app):
    with mail_app.app_context():
        request = make_ticket(name="John Doe")
        row = Notification(key="c", kind="ticket_customer", channel="email", recipient="pat@example.com",
                           conversation=request.conversation, ticket_request=request)
        body = mail.build(row).body
        for text in ("Ticket ID: 1892000000400001", "Ticket #: 101", "Status: Open", "Priority: Medium",
                     "ETA: 2-4 hours", "What happens next"):
            assert text in body


def test_support_mail_has_the_details_and_both_links(mail_app):
    with mail_app.app_context():
        request = make_ticket(name="John Doe")
        row = Notification(key="s", kind="ticket_support", channel="email", recipient="team@example.com",
                           conversation=request.conversation, ticket_request=request)
        body = mail.build(row).body
        for text in ("Customer: John Doe", "E-mail: pat@example.com", "Phone: 555 0100", "Priority: Medium",
                     "https://desk.example/t/101", "/dashboard/conversations/", "Chat history", "printer broken"):
            assert text in body


def test_high_priority_and_escalations_are_marked_urgent_for_the_team_only(mail_app):
    with mail_app.app_context():
        request = make_ticket(priority="High", workflow="rdp_connection", name="John Doe")

        def headers(kind):
            return mail.build(Notification(key=kind, kind=kind, channel="email", recipient="x@example.com",
                                           conversation=request.conversation, ticket_request=request)).extra_headers

        assert headers("ticket_support")["Importance"] == "high"
        assert headers("escalation_support")["X-Priority"].startswith("1")
        assert "Importance" not in headers("ticket_customer")


def test_message_id_is_deterministic_per_notification(mail_app):
    with mail_app.app_context():
        request = make_ticket()
        row = Notification(key="AB-1:customer", kind="ticket_customer", channel="email", recipient="x@example.com",
                           conversation=request.conversation, ticket_request=request)
        first, second = mail.build(row).msgId, mail.build(row).msgId
        other = mail.build(Notification(key="AB-1:support", kind="ticket_support", channel="email",
                                        recipient="y@example.com", conversation=request.conversation,
                                        ticket_request=request)).msgId
        assert first == second != other and first.endswith("@acebuddy.example>")


def test_ticket_notifications_are_delivered_once_over_smtp(mail_app, smtp_server):
    with mail_app.app_context():
        request = make_ticket(name="John Doe")
        notifications.queue_ticket_notifications(request)
        notifications.queue_ticket_notifications(request)  # asking twice queues once
        db.session.commit()
        rows = db.session.scalars(select(Notification).where(Notification.channel == "email")).all()
        assert sorted(r.kind for r in rows) == ["ticket_customer", "ticket_poc", "ticket_support"]
        for row in rows:
            assert notifications.deliver(row.id) == "sent"
            assert notifications.deliver(row.id) == "done"
        smtp_server.wait_for(3)
        assert sorted(m["to"][0] for m in smtp_server.messages) == ["pat@example.com", "poc@acme.example",
                                                                     "support-team@acebuddy.example"]
        assert all(db.session.get(Notification, r.id).sent_at for r in rows)


def test_refused_address_is_recorded_not_retried(mail_app, smtp_server):
    smtp_server.refuse["pat@example.com"] = "550 5.1.1 No such user"
    with mail_app.app_context():
        row = queued("ticket_customer")
        assert notifications.deliver(row.id) == "failed"
        row = db.session.get(Notification, row.id)
        assert row.state == "failed" and "550" in row.last_error and row.attempts == 1


def test_smtp_down_is_retried_later(mail_app, smtp_server):
    smtp_server.stop()
    with mail_app.app_context():
        row = queued("ticket_support")
        assert notifications.deliver(row.id) == "retry"
        row = db.session.get(Notification, row.id)
        assert row.state == "pending" and row.attempts == 1 and "SMTP" in row.last_error
        assert db.session.scalar(select(func.count(Notification.id)).where(Notification.state == "sent")) == 0


def test_a_server_gone_after_accepting_the_message_does_not_get_it_again(mail_app, smtp_server):
    """The SMTP server answered DATA, then went away before answering QUIT (the CI soak's duplicate, an
    outage beginning between the two): the message is delivered, not retried."""
    smtp_server.drop_on_quit = True
    with mail_app.app_context():
        row = queued("ticket_customer", name="John Doe")
        assert notifications.deliver(row.id) == "sent"
        row = db.session.get(Notification, row.id)
        assert row.state == "sent" and row.attempts == 1 and row.sent_via == "smtp"
        assert len(smtp_server.wait_for(1)) == 1


def test_a_recipient_deferred_with_4xx_is_retried_and_quit_does_not_hide_it(mail_app, smtp_server):
    """A 4xx to RCPT (greylisting, a full mailbox) is retried, like any 4xx; the failing QUIT after it
    must not replace that error."""
    smtp_server.refuse["support-team@acebuddy.example"] = "451 4.3.0 Try again later"
    smtp_server.drop_on_quit = True
    with mail_app.app_context():
        row = queued("ticket_support")
        assert notifications.deliver(row.id) == "retry"
        assert "451" in db.session.get(Notification, row.id).last_error
        assert smtp_server.messages == []


@pytest.mark.parametrize("dies_in", ["the SMTP QUIT", "the commit that marks the row sent"])
def test_a_message_accepted_before_its_worker_died_is_not_sent_again(mail_app, smtp_server, monkeypatch, dies_in):
    """The SMTP server accepted the message, then the worker died before the row was marked sent (the
    soak's duplicate): after the lease, the next claim finds the hand-over mark and does not resend."""
    with mail_app.app_context():
        row_id = queued("ticket_customer", name="John Doe").id

        def die(*args, **kwargs):
            raise SystemExit("worker killed")

        def die_in_quit(smtp):
            smtp.close()  # the killed process's socket goes with it
            die()

        if dies_in == "the SMTP QUIT":
            monkeypatch.setattr(smtplib.SMTP, "quit", die_in_quit)
        else:
            monkeypatch.setattr(notifications, "_finish", die)
        with pytest.raises(SystemExit):
            notifications.deliver(row_id)
        monkeypatch.undo()
        db.session.rollback()
        assert len(smtp_server.wait_for(1)) == 1
        row = db.session.get(Notification, row_id)
        assert row.state == "sending" and row.attempts == 1
        row.updated_at = clock.now() - timedelta(seconds=notifications.sending_lease() + 1)  # the lease ran out
        db.session.commit()

        assert notifications.deliver(row_id) == "sent"
        row = db.session.get(Notification, row_id)
        assert row.state == "sent" and row.attempts == 2 and row.sent_via == "earlier attempt"
        time.sleep(0.3)
        assert len(smtp_server.messages) == 1


def test_without_the_mark_a_lost_send_is_retried(mail_app, smtp_server):
    """A worker that died before the SMTP server accepted anything: the next claim sends."""
    with mail_app.app_context():
        row = queued("ticket_customer", name="John Doe")
        row.state, row.attempts = "sending", 1
        row.updated_at = clock.now() - timedelta(seconds=notifications.sending_lease() + 1)
        db.session.commit()
        assert notifications.deliver(row.id) == "sent"
        assert len(smtp_server.wait_for(1)) == 1
        assert db.session.get(Notification, row.id).sent_via == "smtp"
