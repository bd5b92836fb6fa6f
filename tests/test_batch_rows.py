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


def test_a_conversation_not_yet_stored_is_not_batched(app_ctx):
    conversations.batch_rows()
    conv = Conversation(salesiq_id="new", open_key="new", data={}, state={})
    db.session.add(conv)
    message = conversations.add_message(conv, "customer", "first line")
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
