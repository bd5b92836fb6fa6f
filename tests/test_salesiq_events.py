"""SalesIQ conversation event webhooks: replies after a hand-off, completion, duplicates, bad input."""
import pytest
from sqlalchemy import select

from acebuddy import clock
from acebuddy.extensions import db
from acebuddy.models import Conversation, Notification, TicketRequest
from tests.helpers import Chat


def envelope(event, conversation_id, text=None, msgid="m1", sender="visitor", attempt=1):
    entity = {"id": conversation_id, "visitor_conversation_id": "12"}
    if text is not None:
        entity["message"] = {"sender": {"id": "s", "name": "Someone", "type": sender}, "text": text, "msgid": msgid}
    return {"entity_type": "conversation", "org_id": "55778119", "event": event, "entity_id": conversation_id,
            "attempt": attempt, "version": "1", "app_id": 40526000000002040, "event_time": "1764000000000",
            "entity": entity}


@pytest.fixture
def handed_over(app, client):
    chat = Chat(client, "ev-1")
    chat.say("talk to a person")
    assert chat.last["action"] == "forward"
    return chat


def messages(app, salesiq_id="ev-1"):
    conv = db.session.scalar(select(Conversation).where(Conversation.salesiq_id == salesiq_id))
    return [(m.role, m.text) for m in conv.messages]


def test_visitor_and_operator_replies_complete_the_transcript(app, client, handed_over):
    client.post("/webhook/salesiq/events", json=envelope("conversation.visitor.replied", "ev-1", "my card is 4111 1111 1111 1111"))
    client.post("/webhook/salesiq/events", json=envelope("conversation.operator.replied", "ev-1", "Hi, I'm Sam.",
                                                        msgid="m2", sender="operator"))
    with app.app_context():
        lines = messages(app)
        assert ("agent", "Hi, I'm Sam.") in lines
        customer = [text for role, text in lines if role == "customer"]
        assert any("1111" in t and "4111 1111" not in t for t in customer)
        conv = db.session.scalar(select(Conversation).where(Conversation.salesiq_id == "ev-1"))
        assert conv.first_human_reply_at is not None


def test_redelivery_with_a_new_attempt_counter_is_ignored(app, client, handed_over):
    body = envelope("conversation.visitor.replied", "ev-1", "still there?")
    assert client.post("/webhook/salesiq/events", json=body).get_json() == {"status": "stored"}
    again = client.post("/webhook/salesiq/events", json={**body, "attempt": 2}).get_json()
    assert again == {"status": "duplicate"}
    with app.app_context():
        assert [t for _, t in messages(app)].count("still there?") == 1


def test_completed_closes_and_queues_the_closing_comment(app, client, handed_over):
    with app.app_context():
        conv = db.session.scalar(select(Conversation).where(Conversation.salesiq_id == "ev-1"))
        db.session.add(TicketRequest(ref="AB-EVT0000001", conversation=conv, workflow="printer_issue",
                                     subject="s", description="", priority="Low", due_at=clock.now(),
                                     contact_name="J", state="created", desk_ticket_id="1"))
        db.session.commit()
    assert client.post("/webhook/salesiq/events", json=envelope("conversation.completed", "ev-1")).get_json() == {"status": "closed"}
    with app.app_context():
        conv = db.session.scalar(select(Conversation).where(Conversation.salesiq_id == "ev-1"))
        assert conv.status == "closed" and conv.open_key is None and conv.close_reason == "salesiq_completed"
        assert db.session.scalar(select(Notification).where(Notification.kind == "closing_comment")) is not None


def test_after_completion_the_next_message_starts_a_fresh_conversation(app, client, handed_over):
    client.post("/webhook/salesiq/events", json=envelope("conversation.completed", "ev-1"))
    Chat(client, "ev-1").say("hello again")
    with app.app_context():
        rows = db.session.scalars(select(Conversation).where(Conversation.salesiq_id == "ev-1")).all()
        assert [c.status for c in rows] == ["closed", "bot"]


def test_unknown_events_and_conversations_are_acknowledged(client):
    assert client.post("/webhook/salesiq/events", json=envelope("conversation.rated", "nope")).status_code == 200


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"event": ""}', b'{"event": "x", "entity": 5}',
                                  b'{"event": "conversation.completed"}'])
def test_bad_event_bodies_get_400(client, body):
    response = client.post("/webhook/salesiq/events", data=body, content_type="application/json")
    assert response.status_code == 400 and "error" in response.get_json()


def test_after_hand_back_the_bot_answers_event_lines_through_rest(app, client, handed_over):
    from acebuddy.models import Message

    with app.app_context():
        conv = db.session.scalar(select(Conversation).where(Conversation.salesiq_id == "ev-1"))
        conv.status = "bot"  # an agent handed it back
        db.session.commit()
    body = envelope("conversation.visitor.replied", "ev-1", "my printer is broken", msgid="m9")
    assert client.post("/webhook/salesiq/events", json=body).get_json() == {"status": "answered"}
    with app.app_context():
        rows = db.session.scalars(select(Notification).where(Notification.kind == "bot_message")).all()
        assert rows and all(r.channel == "chat" and r.recipient == "ev-1" for r in rows)
        texts = [db.session.get(Message, r.message_id).text for r in rows]
        assert any("printer" in t.lower() for t in texts)


def test_event_lines_of_a_chat_the_bot_still_runs_are_only_stored(app, client):
    Chat(client, "ev-2").say("hello")  # the bot webhook handles this chat; no forward happened
    body = envelope("conversation.visitor.replied", "ev-2", "hello again", msgid="m10")
    assert client.post("/webhook/salesiq/events", json=body).get_json() == {"status": "stored"}
    with app.app_context():
        assert db.session.scalar(select(Notification).where(Notification.kind == "bot_message")) is None
