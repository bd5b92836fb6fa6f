"""The seed's password-reset journey through the webhook, and the identity-verification ladder."""
from datetime import timedelta

import pytest
from sqlalchemy import select

from acebuddy import clock
from acebuddy.extensions import db
from acebuddy.models import Conversation, Message, TicketRequest
from tests.helpers import Chat, load_directory


@pytest.fixture
def chat(app, client):
    with app.app_context():
        load_directory()
    return Chat(client, "7001")


def conversation(app, salesiq_id="7001"):
    return db.session.scalar(select(Conversation).where(Conversation.salesiq_id == salesiq_id))


def reach_verification(chat):
    chat.say("I forgot my password")
    assert "username" in chat.text.lower()


def test_password_reset_happy_path_files_a_medium_ticket(app, chat):
    reach_verification(chat)
    chat.say("john.doe")
    assert "last four digits" in chat.text
    chat.say("1234")
    assert "verified" in chat.text
    assert chat.last["input"]["type"] == "select"
    chat.say("Remote desktop / Windows sign-in")
    assert "Shall I create" in chat.text and chat.last["suggestions"][0].startswith("Yes")
    chat.say("Yes, create the ticket")
    assert "logging your request" in chat.text
    with app.app_context():
        conv = conversation(app)
        request = db.session.scalar(select(TicketRequest))
        assert request.subject == "Password Reset - John Doe"
        assert request.priority == "Medium" and request.ticket_status == "Open"
        assert request.workflow == "password_reset" and request.state == "pending"
        assert abs(request.due_at - (request.created_at + timedelta(hours=4))) < timedelta(seconds=5)
        assert request.contact_email == "john@company.com"
        assert conv.verification == "verified" and conv.customer.username == "john.doe"
        assert conv.step is None


def test_verification_answers_are_stored_masked(app, chat):
    reach_verification(chat)
    chat.say("john.doe")
    chat.say("1234")
    with app.app_context():
        texts = [m.text for m in db.session.scalars(select(Message))]
        assert not any("1234" in t for t in texts)
        assert any("verification answer hidden" in t for t in texts)


def test_wrong_digits_then_the_security_question(app, chat):
    reach_verification(chat)
    chat.say("john.doe")
    chat.say("9999")
    assert "What city were you born in?" in chat.text
    chat.say("springfield")  # case and spacing do not matter
    assert "verified" in chat.text
    with app.app_context():
        texts = [m.text for m in db.session.scalars(select(Message).where(Message.role == "customer"))]
        assert "springfield" not in " ".join(texts).lower()


def test_both_wrong_escalates_with_forward_and_an_escalated_ticket(app, chat):
    reach_verification(chat)
    chat.say("john.doe")
    chat.say("9999")
    chat.say("Shelbyville")
    assert chat.last["action"] == "forward"
    assert chat.last["department"] == app.config["SALESIQ_DEPARTMENT_ID"]
    assert "verify" in chat.text
    with app.app_context():
        conv = conversation(app)
        request = db.session.scalar(select(TicketRequest))
        assert conv.status == "escalated" and conv.verification == "failed"
        assert request.ticket_status == "Escalated" and request.subject == "Password Reset - John Doe"
        assert "Shelbyville" not in request.description


def test_no_security_question_on_file_escalates_after_wrong_digits(app, client):
    with app.app_context():
        load_directory()
    chat = Chat(client, "7002")
    chat.say("Reset my password")
    chat.say("jane.roe")
    chat.say("1111")
    assert chat.last["action"] == "forward"


def test_unknown_username_is_asked_again_then_escalated(app, chat):
    reach_verification(chat)
    chat.say("nobody.here")
    assert "couldn't find" in chat.text
    chat.say("still.nobody")
    chat.say("who.knows")
    assert chat.last["action"] == "forward"


def test_email_works_as_username(app, chat):
    reach_verification(chat)
    chat.say("john@company.com")
    assert "last four digits" in chat.text


def test_badly_formed_digits_are_reprompted_not_counted(app, chat):
    reach_verification(chat)
    chat.say("john.doe")
    chat.say("12")
    assert "exactly four digits" in chat.text
    chat.say("1234")
    assert "verified" in chat.text


def test_after_escalation_the_bot_holds_and_stores_messages(app, chat):
    chat.say("I want to talk to a person")
    assert chat.last["action"] == "forward"
    chat.say("hello? anyone?")
    assert chat.last["action"] == "reply" and "support team" in chat.text
    with app.app_context():
        assert len([m for m in conversation(app).messages if m.role == "customer"]) == 2


def test_verified_customer_skips_verification_in_a_second_workflow(app, chat):
    reach_verification(chat)
    chat.say("john.doe")
    chat.say("1234")
    chat.say("E-mail")
    chat.say("Yes")
    chat.say("my account is locked out")
    assert "username" not in chat.text.lower()
    assert chat.last["input"]["type"] == "select"


def test_cancel_mid_workflow(app, chat):
    reach_verification(chat)
    chat.say("cancel")
    assert "cancelled" in chat.text
    with app.app_context():
        assert conversation(app).step is None
        assert db.session.scalar(select(TicketRequest)) is None


def test_person_asked_for_mid_workflow_files_an_escalated_ticket(app, chat):
    reach_verification(chat)
    chat.say("john.doe")
    chat.say("1234")
    chat.say("talk to a human")
    assert chat.last["action"] == "forward"
    with app.app_context():
        request = db.session.scalar(select(TicketRequest))
        assert request.ticket_status == "Escalated"
        assert "customer asked for a person" in request.description


def test_due_date_follows_the_clock(app, chat, monkeypatch):
    fixed = clock.now().replace(microsecond=0)
    monkeypatch.setattr(clock, "now", lambda: fixed)
    reach_verification(chat)
    chat.say("john.doe")
    chat.say("1234")
    chat.say("QuickBooks")
    chat.say("yes")
    with app.app_context():
        assert db.session.scalar(select(TicketRequest)).due_at == fixed + timedelta(hours=4)
