"""Agent actions (acebuddy.takeover): claim, take over (the bot goes silent), write to the customer through
the outbox and SalesIQ's REST API, hand back to the bot, close; each recorded on the timeline."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from acebuddy import notifications, takeover
from acebuddy.extensions import db
from acebuddy.models import (
    AGENT,
    BOT,
    CLOSED,
    ESCALATED,
    Conversation,
    ConversationEvent,
    Message,
    Notification,
    User,
)
from acebuddy.sandbox.salesiq import get_store
from tests.conftest import wait_until
from tests.helpers import Chat
from tests.test_dashboard import add_conversation, add_ticket, conv_by_chat, login_as, make_agent


def user(app, email="agent@acebuddy.example", role="agent", name="Alex Agent") -> User:
    return db.session.get(User, make_agent(app, email=email, role=role, name=name))


def events(conv) -> list[tuple[str, str]]:
    return [(e.kind, e.detail) for e in db.session.scalars(
        select(ConversationEvent).where(ConversationEvent.conversation_id == conv.id).order_by(ConversationEvent.id))]


@pytest.fixture
def escalated(app, client):
    Chat(client, "to-1", name="Customer One").say("talk to a person")
    with app.app_context():
        return conv_by_chat("to-1").id


def test_take_over_silences_the_bot_and_keeps_the_customers_lines(app, client, escalated):
    with app.app_context():
        alex = user(app)
        conv = db.session.get(Conversation, escalated)
        assert takeover.take_over(conv, alex) is True
        assert conv.status == AGENT and conv.agent_id == alex.id
        assert ("taken_over", "by Alex Agent (was escalated)") in events(conv)
        assert takeover.take_over(conv, alex) is False  # already theirs: nothing changes
    answer = Chat(client, "to-1").say("hello? anyone there?")
    assert answer == {"action": "reply", "replies": []}
    with app.app_context():
        lines = [(m.role, m.text) for m in db.session.scalars(select(Message).where(Message.conversation_id == escalated))]
    assert lines[-1] == ("customer", "hello? anyone there?")
    assert [role for role, _ in lines].count("bot") == 1  # only the hand-over line before the take-over


def test_an_agent_can_take_over_a_chat_the_bot_still_holds(app, client):
    chat = Chat(client, "to-bot")
    chat.say("My server is slow")
    with app.app_context():
        conv = conv_by_chat("to-bot")
        takeover.take_over(conv, user(app))
        assert conv.step == "server"  # the workflow waits; the bot resumes it after a hand-back
    assert chat.say("ACME-RDS01")["replies"] == []
    with app.app_context():
        conv = conv_by_chat("to-bot")
        assert conv.data == {}  # the bot did not take the line as an answer


def test_two_agents_cannot_both_take_the_chat_but_a_manager_can_take_it_over(app, escalated):
    with app.app_context():
        alex, blair = user(app), user(app, email="blair@acebuddy.example", name="Blair")
        manager = user(app, email="boss@acebuddy.example", role="manager", name="Morgan Manager")
        conv = db.session.get(Conversation, escalated)
        takeover.take_over(conv, alex)
        with pytest.raises(takeover.ActionRefused, match="Alex Agent is already handling"):
            takeover.take_over(conv, blair)
        assert takeover.take_over(conv, manager) is True
        assert conv.agent_id == manager.id
        assert ("taken_over", "by Morgan Manager (was agent)") in events(conv)


def test_claim_is_first_come_and_blocks_others_from_taking_over(app, escalated):
    with app.app_context():
        alex, blair = user(app), user(app, email="blair@acebuddy.example", name="Blair")
        conv = db.session.get(Conversation, escalated)
        assert takeover.claim(conv, alex) is True
        assert conv.status == ESCALATED and conv.agent_id == alex.id
        assert takeover.claim(conv, alex) is False
        with pytest.raises(takeover.ActionRefused, match="Alex Agent has already claimed"):
            takeover.claim(conv, blair)
        with pytest.raises(takeover.ActionRefused, match="already handling"):
            takeover.take_over(conv, blair)
        assert takeover.take_over(conv, alex) is True
        assert [kind for kind, _ in events(conv)].count("claimed") == 1


def test_a_stale_copy_cannot_take_a_chat_someone_else_took(app, escalated):
    """Compare-and-set: an agent whose copy still shows the chat as waiting loses the race cleanly."""
    with app.app_context():
        alex, blair = user(app), user(app, email="blair@acebuddy.example", name="Blair")
        stale = db.session.get(Conversation, escalated)
        assert stale.status == ESCALATED
        with db.engine.begin() as other:  # another web process takes it meanwhile
            other.execute(Conversation.__table__.update().where(Conversation.id == escalated)
                          .values(status=AGENT, agent_id=alex.id))
        assert stale.status == ESCALATED  # this session has not seen it yet
        with pytest.raises(takeover.ActionRefused, match="Alex Agent is already handling"):
            takeover.take_over(stale, blair)
        assert db.session.get(Conversation, escalated).agent_id == alex.id


def test_a_message_is_stored_and_queued_for_delivery_through_the_outbox(app, escalated):
    with app.app_context():
        alex = user(app)
        conv = db.session.get(Conversation, escalated)
        takeover.take_over(conv, alex)
        first = takeover.send_message(conv, alex, "  Hi, I'm Alex.  ")
        second = takeover.send_message(conv, alex, "Let me look.")
        assert (first.role, first.text) == ("agent", "Hi, I'm Alex.")
        assert conv.first_human_reply_at == first.created_at  # the SLA clock stops at the first reply only
        rows = db.session.scalars(select(Notification).where(Notification.kind == "agent_message")
                                  .order_by(Notification.id)).all()
        assert [(r.channel, r.recipient, r.message_id) for r in rows] == [
            ("chat", "to-1", first.id), ("chat", "to-1", second.id)]


@pytest.mark.parametrize("text, message", [
    ("", "Type a message first."),
    ("\x00 \x07", "Type a message first."),
    ("x" * (takeover.MAX_MESSAGE + 1), "too long"),
])
def test_a_bad_message_is_refused(app, escalated, text, message):
    with app.app_context():
        alex = user(app)
        conv = db.session.get(Conversation, escalated)
        takeover.take_over(conv, alex)
        with pytest.raises(takeover.ActionRefused, match=message):
            takeover.send_message(conv, alex, text)


def test_only_the_agent_holding_the_chat_writes_to_the_customer(app, escalated):
    with app.app_context():
        alex, blair = user(app), user(app, email="blair@acebuddy.example", name="Blair")
        conv = db.session.get(Conversation, escalated)
        with pytest.raises(takeover.ActionRefused, match="Take over the conversation"):
            takeover.send_message(conv, alex, "hello")
        takeover.take_over(conv, alex)
        with pytest.raises(takeover.ActionRefused, match="Take over the conversation"):
            takeover.send_message(conv, blair, "hello")
        assert db.session.scalar(select(db.func.count(Message.id)).where(Message.role == "agent")) == 0


def test_hand_back_lets_the_bot_answer_the_next_message(app, client):
    chat = Chat(client, "hb-1")
    chat.say("My server is slow")
    with app.app_context():
        alex = user(app)
        conv = conv_by_chat("hb-1")
        conv.state = {**conv.state, "not_understood": 2, "reprompts": {"server": 2}}
        db.session.commit()
        takeover.take_over(conv, alex)
        takeover.hand_back(conv, alex)
        assert conv.status == BOT and conv.agent_id is None
        assert "not_understood" not in conv.state and "reprompts" not in conv.state
        assert ("handed_back", "by Alex Agent (was agent)") in events(conv)
        with pytest.raises(takeover.ActionRefused, match="The bot already has"):
            takeover.hand_back(conv, alex)
    reply = chat.say("ACME-RDS01")
    assert reply["replies"] and "affected" in " ".join(map(str, reply["replies"])).lower()
    with app.app_context():
        assert conv_by_chat("hb-1").data == {"server": "ACME-RDS01"}


def test_only_the_holder_or_a_manager_hands_back_or_closes(app, escalated):
    with app.app_context():
        alex, blair = user(app), user(app, email="blair@acebuddy.example", name="Blair")
        manager = user(app, email="boss@acebuddy.example", role="manager", name="Morgan")
        conv = db.session.get(Conversation, escalated)
        takeover.take_over(conv, alex)
        for action in (takeover.hand_back, takeover.close):
            with pytest.raises(takeover.ActionRefused, match="only they can"):
                action(conv, blair)
        takeover.hand_back(conv, manager)
        assert conv.status == BOT


def test_close_runs_the_closing_steps_and_the_next_message_starts_afresh(app, client):
    chat = Chat(client, "cl-1")
    chat.say("My server is slow")
    with app.app_context():
        alex = user(app)
        conv = conv_by_chat("cl-1")
        ticket = add_ticket(conv, state="created", desk_ticket_id="9001", desk_ticket_number="101")
        takeover.close(conv, alex)
        assert conv.status == CLOSED and conv.open_key is None and conv.close_reason == "closed by an agent"
        stored = db.session.scalar(select(db.func.count(Message.id)).where(Message.conversation_id == conv.id))
        assert conv.message_count == stored == 3  # the final count stays on the archived row
        kinds = [kind for kind, _ in events(conv)]
        assert kinds[-2:] == ["agent_closed", "closed"]
        comment = db.session.scalar(select(Notification).where(Notification.kind == "closing_comment"))
        assert comment.ticket_request_id == ticket.id and comment.channel == notifications.DESK
        with pytest.raises(takeover.ActionRefused, match="closed"):
            takeover.close(conv, alex)
        closed_id = conv.id
    chat.say("Reset my password")
    with app.app_context():
        fresh = conv_by_chat("cl-1")
        assert fresh.id != closed_id and fresh.status == BOT and fresh.workflow == "password_reset"
        assert (fresh.messages[0].role, fresh.messages[0].text) == ("customer", "Reset my password")


def test_salesiq_forwarded_tells_how_salesiq_holds_the_chat(app, client, escalated):
    Chat(client, "fw-bot").say("My server is slow")
    with app.app_context():
        assert takeover.salesiq_forwarded(db.session.get(Conversation, escalated)) is True
        assert takeover.salesiq_forwarded(conv_by_chat("fw-bot")) is False


def test_the_agents_line_reaches_the_customer_through_the_worker(live_server, worker_process):
    """Real protocol: outbox row, a real RQ worker, our SalesIQ client over HTTP, the SalesIQ sandbox."""
    app = live_server.app
    conversation = get_store(app).open_conversation({"name": "John Doe", "email": "john@company.com"})
    with app.app_context():
        alex = user(app)
        conv = add_conversation(conversation.id, status=ESCALATED)
        takeover.take_over(conv, alex)
        takeover.send_message(conv, alex, "Hi John, Alex here from support.")
        conv_id = conv.id
    worker_process.start()
    operator = wait_until(lambda: [m for m in get_store(app).messages(conversation.id) if m.sender_type == "operator"],
                          timeout=30)
    assert [(m.text, m.via) for m in operator] == [("Hi John, Alex here from support.", "rest")]
    with app.app_context():
        row = wait_until(lambda: db.session.scalar(select(Notification).where(
            Notification.kind == "agent_message", Notification.state == "sent")), timeout=10)
        assert row.sent_via == "rest"
        assert ("notification", "agent_message sent via rest") in events(db.session.get(Conversation, conv_id))


def test_a_line_to_a_chat_salesiq_has_closed_is_marked_not_delivered(live_server):
    app = live_server.app
    client = app.test_client()
    with app.app_context():
        alex_id = user(app).id
    login_as(app, client, alex_id)
    store = get_store(app)
    conversation = store.open_conversation({"name": "John Doe"})
    store.close(conversation.id, by="visitor")
    with app.app_context():
        alex = db.session.get(User, alex_id)
        conv = add_conversation(conversation.id, status=ESCALATED)
        takeover.take_over(conv, alex)
        message = takeover.send_message(conv, alex, "Are you still there?")
        row = db.session.scalar(select(Notification).where(Notification.message_id == message.id))
        assert notifications.deliver(row.id) == "failed"
        conv_id = conv.id
    transcript = client.get(f"/dashboard/conversations/{conv_id}/transcript").get_data(as_text=True)
    assert 'data-delivery="failed">not delivered' in transcript
