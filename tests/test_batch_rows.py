"""The webhook turn's batch of rows (conversations.batch_rows): lines and timeline entries written as
plain multi-row INSERTs at the next flush or commit, never lost, never kept after a rollback."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from acebuddy import conversations
from acebuddy.extensions import db
from acebuddy.models import Conversation, ConversationEvent, Message
from tests.test_live import Listener, commit_and_hear


def _stored_conversation(salesiq_id: str = "batch-1") -> Conversation:
    conv = Conversation(salesiq_id=salesiq_id, open_key=salesiq_id, data={}, state={})
    db.session.add(conv)
    db.session.commit()
    return conv


def _lines(conv_id: int) -> list[tuple[str, str, bool]]:
    rows = db.session.execute(select(Message.role, Message.text, Message.masked)
                              .where(Message.conversation_id == conv_id).order_by(Message.id))
    return [tuple(row) for row in rows]


def _events(conv_id: int) -> list[tuple[str, str]]:
    rows = db.session.execute(select(ConversationEvent.kind, ConversationEvent.detail)
                              .where(ConversationEvent.conversation_id == conv_id).order_by(ConversationEvent.id))
    return [tuple(row) for row in rows]


def test_a_batch_is_written_at_commit_in_the_order_it_was_made(app_ctx):
    conv = _stored_conversation()
    conversations.batch_rows()
    assert conversations.add_message(conv, "customer", "I forgot my password") is None
    conversations.record_event(conv, "intent", "password_reset 0.97")
    conversations.add_message(conv, "bot", "What is your username?")
    conversations.add_message(conv, "customer", "••••", masked=True)
    db.session.commit()
    db.session.expire_all()

    assert _lines(conv.id) == [("customer", "I forgot my password", False), ("bot", "What is your username?", False),
                               ("customer", "••••", True)]
    assert _events(conv.id) == [("intent", "password_reset 0.97")]
    assert conv.message_count == 3
    assert [m.text for m in conv.messages][-1] == "••••"


def test_rows_alone_are_written_even_when_the_orm_has_nothing_to_flush(app_ctx):
    conv = _stored_conversation()
    conversations.batch_rows()
    conversations.record_event(conv, "kb_feedback", "vpn helpful")
    assert not db.session.dirty and not db.session.new
    db.session.commit()
    assert _events(conv.id) == [("kb_feedback", "vpn helpful")]


def test_a_flush_makes_the_rows_visible_to_queries_in_the_same_transaction(app_ctx):
    conv = _stored_conversation()
    conversations.batch_rows()
    conversations.add_message(conv, "customer", "hello")
    assert db.session.scalar(select(func.count(Message.id)).where(Message.conversation_id == conv.id)) == 1
    db.session.rollback()


def test_a_rollback_keeps_nothing_and_ends_the_batch(app_ctx):
    conv = _stored_conversation()
    conversations.batch_rows()
    conversations.add_message(conv, "customer", "flushed, then rolled back")
    db.session.flush()
    conversations.add_message(conv, "customer", "never flushed")
    db.session.rollback()
    assert _lines(conv.id) == []

    after = conversations.add_message(conv, "customer", "after the rollback")
    assert isinstance(after, Message)  # the batch ended with its transaction
    db.session.commit()
    assert _lines(conv.id) == [("customer", "after the rollback", False)]


def test_the_batch_ends_with_its_commit(app_ctx):
    conv = _stored_conversation()
    conversations.batch_rows()
    conversations.add_message(conv, "customer", "in the batch")
    db.session.commit()
    assert isinstance(conversations.add_message(conv, "bot", "after it"), Message)
    db.session.commit()
    assert [text for _, text, _ in _lines(conv.id)] == ["in the batch", "after it"]


def test_a_failed_savepoint_does_not_lose_the_rows_made_before_it(app_ctx):
    """notifications.queue() inserts inside a savepoint and may roll it back on a duplicate key."""
    conv = _stored_conversation()
    conversations.batch_rows()
    conversations.add_message(conv, "customer", "before the savepoint")
    db.session.flush()  # the ORM is now clean: begin_nested() has nothing of its own to flush
    conversations.record_event(conv, "intent", "before the savepoint")
    with pytest.raises(IntegrityError):
        with db.session.begin_nested():
            db.session.add(Conversation(salesiq_id="dup", open_key=conv.open_key, data={}, state={}))
            db.session.flush()
    db.session.commit()
    assert _lines(conv.id) == [("customer", "before the savepoint", False)]
    assert _events(conv.id) == [("intent", "before the savepoint")]


def test_a_new_conversations_rows_go_in_after_it_in_the_same_flush(app_ctx):
    """A new chat's conversation stays pending through the webhook turn (open_found's `deferred`): its
    rows wait for the flush that inserts it, then go in with its id, before the commit."""
    conversations.batch_rows()
    conv = Conversation(salesiq_id="new", open_key="new", data={}, state={})
    db.session.add(conv)
    assert conversations.add_message(conv, "customer", "first line") is None
    conversations.record_event(conv, "opened", "via zobot")
    db.session.flush()
    assert conv.id is not None
    assert _lines(conv.id) == [("customer", "first line", False)]  # written by the flush itself
    conversations.add_message(conv, "bot", "an answer")
    db.session.commit()
    assert _lines(conv.id) == [("customer", "first line", False), ("bot", "an answer", False)]
    assert _events(conv.id) == [("opened", "via zobot")]


def test_saved_id_inserts_a_pending_conversation_and_its_rows(app_ctx):
    conversations.batch_rows()
    conv = Conversation(salesiq_id="new-2", open_key="new-2", data={}, state={})
    db.session.add(conv)
    conversations.record_event(conv, "opened", "via zobot")
    conv_id = conversations.saved_id(conv)
    assert conv_id == conv.id and conv_id is not None
    assert _events(conv_id) == [("opened", "via zobot")]
    db.session.rollback()
    assert db.session.get(Conversation, conv_id) is None  # nothing committed: all of it rolled back
    assert _events(conv_id) == []


def test_rows_of_a_pending_conversation_are_dropped_with_a_rollback(app_ctx):
    conversations.batch_rows()
    conv = Conversation(salesiq_id="new-3", open_key="new-3", data={}, state={})
    db.session.add(conv)
    conversations.add_message(conv, "customer", "lost with the turn")
    db.session.rollback()
    assert db.session.scalar(select(func.count(Message.id))) == 0
    assert db.session.info.get("acebuddy_rows") is None


def test_a_conversation_outside_the_session_is_not_batched(app_ctx):
    conversations.batch_rows()
    conv = Conversation(salesiq_id="new-4", open_key="new-4", data={}, state={})
    message = conversations.add_message(conv, "customer", "first line")  # adds conv through the relationship
    assert isinstance(message, Message)
    db.session.commit()
    assert _lines(conv.id) == [("customer", "first line", False)]


def test_rows_alone_still_tell_the_dashboards(app_ctx):
    conv = _stored_conversation()
    listener = Listener(app_ctx)
    try:
        listener.notices(timeout=0.2)
        conversations.batch_rows()
        conversations.record_event(conv, "kb_feedback", "vpn helpful")
        assert commit_and_hear(listener) == [{"c": [conv.id], "e": [], "q": []}]
    finally:
        listener.close()
