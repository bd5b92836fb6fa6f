"""The webhook turn's plain UPDATE (conversations.write_changes): the conversation's changed columns in
one statement when that is all the session holds, otherwise nothing written and the ORM's flush does it
all; either way the same rows, the same live notice, nothing written twice."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import delete, event, func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from acebuddy import clock, conversations
from acebuddy.extensions import db
from acebuddy.models import ESCALATED, Conversation, Customer, Message, TicketRequest
from tests.test_batch_rows import _lines, _stored_conversation
from tests.test_live import Listener, commit_and_hear


class Updates:
    """The UPDATE statements an engine runs, with their parameters."""

    def __init__(self):
        self.seen: list[tuple[str, object]] = []
        event.listen(db.engine, "before_cursor_execute", self._record)

    def _record(self, _conn, _cursor, statement, params, _context, _many):
        if statement.lstrip().upper().startswith("UPDATE"):
            self.seen.append((statement, params))

    def close(self):
        event.remove(db.engine, "before_cursor_execute", self._record)


@pytest.fixture
def updates(app_ctx):
    recorder = Updates()
    yield recorder
    recorder.close()


def _set_columns(statement: str) -> set[str]:
    assignments = re.search(r"\bSET\s+(.*?)\s+WHERE\b", statement, re.S).group(1)
    return {part.split("=")[0].strip().strip('"') for part in assignments.split(",")}


def _row(conv_id: int) -> dict:
    table = Conversation.__table__
    return dict(db.session.execute(select(table).where(table.c.id == conv_id)).mappings().one())


def test_the_changed_columns_go_in_one_update_and_the_commit_writes_nothing_more(app_ctx, updates):
    conv = _stored_conversation("write-1")
    before = _row(conv.id)
    conversations.batch_rows()
    conversations.add_message(conv, "customer", "my printer is offline")
    conv.step, conv.state, conv.workflow = "ask_printer", {"pending": {"kind": "clarify"}}, "printer"

    assert conversations.write_changes(conv) is True
    assert len(updates.seen) == 1
    assert _set_columns(updates.seen[0][0]) == {"step", "state", "workflow", "message_count", "last_message_at",
                                                "updated_at"}  # unchanged columns are not rewritten
    db.session.commit()
    assert len(updates.seen) == 1  # the ORM saw the conversation as written

    db.session.expire_all()
    after = _row(conv.id)
    assert (after["step"], after["workflow"], after["state"]) == ("ask_printer", "printer",
                                                                   {"pending": {"kind": "clarify"}})
    assert after["message_count"] == before["message_count"] + 1
    assert after["updated_at"] >= before["updated_at"]
    assert _lines(conv.id) == [("customer", "my printer is offline", False)]


def test_anything_else_pending_leaves_it_all_to_the_flush(app_ctx, updates):
    conv = _stored_conversation("write-2")
    customer = Customer(username="write.two", email="w2@example.com", name="W Two")
    db.session.add(customer)
    conv.step = "verify"
    assert conversations.write_changes(conv) is False  # a new object: the flush orders the writes
    assert updates.seen == []
    db.session.commit()

    conv.customer = customer  # a relationship: the flush derives the foreign key
    assert conversations.write_changes(conv) is False
    db.session.commit()
    assert _row(conv.id)["customer_id"] == customer.id

    other = _stored_conversation("write-3")
    conv.step, other.step = "a", "b"  # two conversations changed
    assert conversations.write_changes(conv) is False
    db.session.commit()
    assert (_row(conv.id)["step"], _row(other.id)["step"]) == ("a", "b")


def test_a_conversation_with_no_change_writes_nothing_but_its_rows(app_ctx, updates):
    conv = _stored_conversation("write-4")
    conversations.batch_rows()
    conversations.record_event(conv, "intent", "smalltalk 0.90")
    # record_event changes no column: only the batched row is written.
    assert conversations.write_changes(conv) is True
    db.session.commit()
    assert updates.seen == []


def test_the_live_notice_is_the_one_a_flush_would_give(app_ctx):
    conv = _stored_conversation("write-5")
    listener = Listener(app_ctx)
    try:
        conv.message_count += 1
        assert conversations.write_changes(conv)
        assert commit_and_hear(listener) == [{"c": [conv.id], "e": [], "q": []}]
        conv.status, conv.escalated_at, conv.escalation_reason = ESCALATED, clock.now(), "customer_request"
        assert conversations.write_changes(conv)
        assert commit_and_hear(listener) == [{"c": [conv.id], "e": [conv.id], "q": [conv.id]}]
        conv.priority = "High"  # a waiting chat's place in the queue
        assert conversations.write_changes(conv)
        assert commit_and_hear(listener) == [{"c": [conv.id], "e": [], "q": [conv.id]}]
    finally:
        listener.close()


def test_a_conversation_deleted_meanwhile_fails_the_turn_as_the_flush_would(app_ctx):
    conv = _stored_conversation("write-6")
    conv_id = conv.id
    conv.last_message_at = clock.now() + timedelta(seconds=1)
    with db.session.no_autoflush:
        db.session.execute(delete(Message).where(Message.conversation_id == conv_id))
        db.session.execute(delete(Conversation.__table__).where(Conversation.__table__.c.id == conv_id))
    with pytest.raises(StaleDataError):
        conversations.write_changes(conv)
    db.session.rollback()


def _read_row(conv_id: int):
    table = Conversation.__table__
    return tuple(db.session.connection().execute(select(*conversations.COLUMNS).where(table.c.id == conv_id)).one())


def test_an_adopted_row_is_the_conversation_a_query_loads(app_ctx, updates):
    """conversations.adopt: the webhook's plain look-up row becomes a persistent, unchanged object with
    every column as the ORM loads it and its relationships loaded on use; nothing is written for it."""
    conv = _stored_conversation("adopt-1")
    conv.state, conv.data = {"pending": {"kind": "clarify"}}, {"username": "j.doe"}
    db.session.add(Message(conversation_id=conv.id, role="customer", text="hello"))
    db.session.commit()
    conv_id = conv.id
    loaded = {column.key: getattr(conv, column.key) for column in conversations.COLUMNS}
    db.session.expunge_all()
    updates.seen.clear()

    adopted = conversations.adopt(_read_row(conv_id))
    state = inspect(adopted)
    assert state.persistent and state.identity == (conv_id,)
    assert {column.key: getattr(adopted, column.key) for column in conversations.COLUMNS} == loaded
    assert not db.session.dirty and not state.committed_state
    assert db.session.get(Conversation, conv_id) is adopted
    assert [m.text for m in adopted.messages] == ["hello"]
    db.session.commit()
    assert updates.seen == []

    adopted.step = "ask_username"
    db.session.commit()
    assert len(updates.seen) == 1 and _set_columns(updates.seen[0][0]) == {"step", "updated_at"}


def test_adopting_a_row_the_session_holds_gives_the_held_object(app_ctx):
    conv = _stored_conversation("adopt-2")
    conv.step = "ask_username"  # a change not yet written: the held object keeps it, as a query would
    assert conversations.adopt(_read_row(conv.id)) is conv
    assert conv.step == "ask_username"
    assert conversations.adopt((None,) * len(conversations.COLUMNS)) is None  # the look-up found none


def _new_conversation(key: str) -> Conversation:
    """A new chat's conversation as the webhook turn holds it (open_found's `deferred`): pending, with
    batched rows waiting for its id."""
    conversations.batch_rows()
    conv = Conversation(salesiq_id=key, open_key=key, source="zobot", data={}, state={}, visitor_name="Ann")
    db.session.add(conv)
    conversations.record_event(conv, "opened", "via zobot")
    conversations.add_message(conv, "customer", "hello")
    conv.step, conv.state = "ask_username", {"pending": None}
    return conv


def test_a_new_conversation_goes_in_as_one_insert_with_the_defaults_a_flush_gives(app_ctx):
    statements = []

    def record(_conn, _cursor, statement, _params, _context, _many):
        statements.append(statement.split("(")[0].strip())

    flushed = _new_conversation("new-flushed")
    db.session.flush()  # the ORM's own INSERT, to compare with
    db.session.commit()
    listener = Listener(app_ctx)
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        conv = _new_conversation("new-written")
        assert conversations.write_changes(conv) is True
        state = inspect(conv)
        assert state.persistent and conv.id is not None and not state.committed_state
        conv_id = conv.id
        assert commit_and_hear(listener) == [{"c": [conv_id], "e": [], "q": []}]  # a new chat with the bot
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
        listener.close()
    assert statements == ["INSERT INTO conversation", "INSERT INTO message", "INSERT INTO conversation_event"]
    assert db.session.get(Conversation, conv_id) is conv  # the session holds it as loaded
    assert _lines(conv_id) == [("customer", "hello", False)]
    written, ordinary = _row(conv_id), _row(flushed.id)
    differ = {key for key in written if written[key] != ordinary[key]}
    assert differ == {"id", "salesiq_id", "open_key", "created_at", "updated_at", "last_message_at"}
    db.session.expire_all()
    assert {key: getattr(conv, key) for key in written} == written


def test_a_rolled_back_new_conversation_leaves_the_session_as_a_flushed_one_would(app_ctx):
    """The turn's commit failing after the INSERT (a repeat's delivery record won its key, say): the
    object is taken out of the session with its row, as the ORM does for what its flush inserted."""
    states = {}
    for how in ("flush", "write_changes"):
        conv = _new_conversation(f"rolled-back-{how}")
        assert conversations.write_changes(conv) is True if how == "write_changes" else db.session.flush() is None
        conv_id = conv.id
        db.session.rollback()
        states[how] = (inspect(conv).transient, conv in db.session, inspect(conv).key)
        assert db.session.get(Conversation, conv_id) is None
    assert states["write_changes"] == states["flush"] == (True, False, None)


def test_a_new_conversation_with_other_new_rows_is_left_to_the_flush(app_ctx):
    conv = _new_conversation("new-with-customer")
    db.session.add(Customer(username="new.customer", email="nc@example.com", name="N C"))
    assert conversations.write_changes(conv) is False
    assert inspect(conv).pending  # nothing written: the caller's flush writes it all
    db.session.flush()
    db.session.commit()
    assert _lines(conv.id) == [("customer", "hello", False)]


def test_a_new_conversation_that_lost_its_chat_key_fails_as_the_flush_would(app_ctx):
    """Two lines of a new chat at once: the loser's INSERT fails on the open key, the turn is rolled
    back and the webhook runs it again on the winner's conversation."""
    _stored_conversation("new-raced")
    conv = _new_conversation("new-raced")
    with pytest.raises(IntegrityError):
        conversations.write_changes(conv)
    db.session.rollback()
    assert db.session.scalar(select(func.count(Conversation.id)).where(Conversation.salesiq_id == "new-raced")) == 1


def _filed_request(conv: Conversation, ref: str) -> TicketRequest:
    """What a finished workflow's turn adds (tickets.request_ticket): a new ticket request whose parent
    is the conversation, its `ticket_requests` not loaded."""
    request = TicketRequest(ref=ref, conversation=conv, workflow="password_reset", subject="Password reset - Ann",
                            description="<p>d</p>", priority="High", due_at=clock.now() + timedelta(hours=2),
                            contact_name="Ann")
    db.session.add(request)
    conv.priority, conv.step = "High", None
    conversations.record_event(conv, "ticket_requested", f"{ref} password_reset Open")
    return request


def test_a_filed_ticket_request_goes_in_as_one_insert_with_what_a_flush_writes(app_ctx):
    statements = []

    def record(_conn, _cursor, statement, _params, _context, _many):
        statements.append(statement.split("(")[0].strip().split(" SET ")[0])

    flushed_conv = _stored_conversation("ticket-flushed")
    conversations.batch_rows()
    flushed = _filed_request(flushed_conv, "AB-FLUSHED")
    db.session.flush()  # the ORM's own INSERT, to compare with
    db.session.commit()
    conv = _stored_conversation("ticket-written")
    db.session.refresh(conv)  # loaded, as the webhook's look-up leaves it
    listener = Listener(app_ctx)
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        conversations.batch_rows()
        request = _filed_request(conv, "AB-WRITTEN")
        assert "ticket_requests" not in conv.__dict__
        assert conversations.write_changes(conv) is True
        state = inspect(request)
        assert state.persistent and request.id is not None and not state.committed_state
        conv_id = conv.id
        assert commit_and_hear(listener) == [{"c": [conv_id], "e": [], "q": []}]
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
        listener.close()
    assert statements == ["INSERT INTO conversation_event", "INSERT INTO ticket_request", "UPDATE conversation"]
    table = TicketRequest.__table__
    written, ordinary = (dict(db.session.execute(select(table).where(table.c.id == r.id)).mappings().one())
                         for r in (request, flushed))
    assert {key for key in written if written[key] != ordinary[key]} == {
        "id", "ref", "conversation_id", "due_at", "created_at", "updated_at"}
    assert written["conversation_id"] == conv.id and written["state"] == "pending" and written["attempts"] == 0
    assert _row(conv.id)["priority"] == "High"
    db.session.expire_all()
    assert [r.ref for r in conv.ticket_requests] == ["AB-WRITTEN"]  # the collection reads it from the database
    assert conv.latest_ticket is request


def test_a_ticket_request_beside_a_loaded_collection_or_other_rows_is_left_to_the_flush(app_ctx):
    conv = _stored_conversation("ticket-loaded")
    assert conv.ticket_requests == []  # loaded: the flush keeps it in step
    request = _filed_request(conv, "AB-LOADED")
    assert conversations.write_changes(conv) is False
    assert inspect(request).pending
    db.session.commit()
    assert [r.ref for r in conv.ticket_requests] == ["AB-LOADED"]

    other = _stored_conversation("ticket-other")
    _filed_request(other, "AB-OTHER")
    db.session.add(Customer(username="ticket.other", email="to@example.com", name="T O"))
    assert conversations.write_changes(other) is False  # a new row of another kind
    db.session.commit()
    assert db.session.scalar(select(func.count(TicketRequest.id)).where(TicketRequest.ref == "AB-OTHER")) == 1
