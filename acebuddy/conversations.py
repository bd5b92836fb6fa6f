"""Conversations: found or created by SalesIQ's conversation id, their messages, timeline and close."""
from __future__ import annotations

from sqlalchemy import bindparam, event, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import MANYTOONE, ONETOMANY, Session
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from . import clock, live
from .extensions import db
from .models import BOT, CLOSED, Conversation, ConversationEvent, Message, TicketRequest
from .prebuilt import Adopter, Prebuilt, connection
from .salesiq.payload import Inbound


def find_open(salesiq_id: str) -> Conversation | None:
    return db.session.scalar(select(Conversation).where(Conversation.open_key == salesiq_id))


def open_conversation(inbound: Inbound) -> Conversation:
    """The open conversation for this chat, created on its first message (race-safe on open_key)."""
    return open_found(inbound, find_open(inbound.conversation_key))


def open_found(inbound: Inbound, conv: Conversation | None, *, deferred: bool = False) -> Conversation:
    """`open_conversation` for a caller that has already looked the chat's open conversation up (the
    webhook reads it in the same query as its repeat check).

    Called first in a turn, before anything else is written. By default a new conversation is inserted
    and committed at once, on its own (when a concurrent delivery opened it first, the session is rolled
    back and that one is used). `deferred` (the webhook turn, which owns its transaction and retries a
    lost race): the new conversation stays pending and goes in with the turn's one flush at its end, its
    lines and timeline entries after it, so a chat's first message costs one commit, not two, and on
    SQLite the database's one write lock is taken at the turn's end, not held through the bot's turn
    (docs/performance/webhook.md). Code that needs the id before then calls `saved_id`."""
    if conv is None:
        conv = Conversation(
            salesiq_id=inbound.conversation_key,
            open_key=inbound.conversation_key,
            source=inbound.format,
            status=BOT,
            data={},
            state={},
        )
        _update_visitor(conv, inbound)
        db.session.add(conv)
        if deferred:
            batch_rows()
            record_event(conv, "opened", f"via {inbound.format}")
            return conv
        try:
            db.session.flush()
        except IntegrityError:  # a concurrent delivery opened it first
            db.session.rollback()
            conv = find_open(inbound.conversation_key)
        else:
            batch_rows()  # the timeline entry as a plain row (the batch ends with this commit)
            record_event(conv, "opened", f"via {inbound.format}")
            commit_keeping_loaded()
    _update_visitor(conv, inbound)
    return conv


# The conversation's columns, for a query that reads its row with plain SQL (see `adopt`).
_ADOPTER = Adopter(Conversation)
COLUMNS = _ADOPTER.columns
_KEYS = tuple(column.key for column in COLUMNS)


def adopt(values) -> Conversation | None:
    """The conversation whose column values (COLUMNS, in order) `values` holds, as a persistent object
    of the session, exactly what a query returns (prebuilt.Adopter); None for values without an id (an
    outer join that found no conversation). The webhook reads it with its repeat check in one plain
    query on every call."""
    return _ADOPTER(db.session(), values)


def saved_id(conv: Conversation) -> int:
    """The conversation's id, flushing it first if it is still pending (see open_found's `deferred`)."""
    if inspect(conv).key is None:
        db.session.flush()
    return conv.id


def commit_keeping_loaded() -> None:
    """Commit without expiring what the session holds: what it holds is exactly what was just written,
    and reading it back would cost a query (expiring it all costs a webhook turn 0.1 M instructions)."""
    session = db.session()
    expire, session.expire_on_commit = session.expire_on_commit, False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expire


def _update_visitor(conv: Conversation, inbound: Inbound) -> None:
    """Keep what SalesIQ knows of the visitor; later calls may add what the first lacked."""
    visitor = inbound.visitor
    for attr, value in (
        ("visitor_id", visitor.id),
        ("visitor_name", visitor.name),
        ("visitor_email", visitor.email),
        ("visitor_phone", visitor.phone),
        ("channel", visitor.channel),
    ):
        if value and getattr(conv, attr) != value:
            setattr(conv, attr, value)


# Rows of a batch (see batch_rows), by table, in the session's info until the next flush or commit.
_BATCH = "acebuddy_rows"


def batch_rows() -> None:
    """Until the current transaction ends, write the lines and timeline entries of stored conversations
    as plain rows, one multi-row INSERT per table when the session flushes or commits.

    The webhook turn's cost is the database layer, not the bot (docs/performance/webhook.md): the ORM's
    unit of work costs several times a plain INSERT for objects nothing reads back during the turn. In a
    batch, `add_message` returns None (no Message object exists) and a query sees the rows only after
    a flush, as with any object added under `no_autoflush`."""
    db.session.info.setdefault(_BATCH, {Message: [], ConversationEvent: [], _PENDING_CONV: []})


# In a batch, the rows of a conversation not yet inserted, as (model, row, conversation): they get its id
# and go in after the flush that inserts it.
_PENDING_CONV = "pending"


# Built once (a statement costs more to construct than to run).
_INSERT = {Message: Prebuilt(insert(Message.__table__)),
           ConversationEvent: Prebuilt(insert(ConversationEvent.__table__))}


def _batch(conv: Conversation) -> dict | None:
    """The batch of the session holding `conv` (None when no session holds it). Asked for every line
    and timeline entry of a turn: the object's own session, not `db.session`, whose look-up of the
    app context's session costs more than the rest of this."""
    session = instance_state(conv).session
    return None if session is None else session.info.get(_BATCH)


def _add_row(batch: dict, model, conv: Conversation, row: dict) -> None:
    if conv.id is None:
        batch[_PENDING_CONV].append((model, row, conv))
    else:
        batch[model].append({"conversation_id": conv.id, **row})


@event.listens_for(Session, "before_flush")
@event.listens_for(Session, "after_flush_postexec")  # after the flush has given new rows their keys
def _insert_batch(session: Session, _context=None, _instances=None) -> None:
    """Write the batched rows whose conversation is in the database: before a flush (rows of stored
    conversations), after it (rows of a conversation that flush inserted), and before a commit."""
    batch = session.info.get(_BATCH)
    if not batch or session.in_nested_transaction():
        # Not inside a savepoint: its rollback would take rows made before it (a duplicate
        # notification's savepoint, say); they go in with the outer transaction's next flush.
        return
    still = []
    for model, row, conv in batch[_PENDING_CONV]:  # rows of a new conversation: ready once it has a key
        key = inspect(conv).key
        if key is None:
            still.append((model, row, conv))
        else:
            batch[model].append({"conversation_id": key[1][0], **row})
    batch[_PENDING_CONV] = still
    touched = set()
    for model in (Message, ConversationEvent):
        rows = batch[model]
        if rows:
            _INSERT[model].run(connection(session), rows)
            touched.update(row["conversation_id"] for row in rows)
            rows.clear()
    if touched:
        live.touched(session, touched)


# A commit flushes only when the ORM has changes: the batch is written before the commit either way.
event.listen(Session, "before_commit", _insert_batch)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _end_batch(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint: the outer transaction goes on
        return
    session.info.pop(_BATCH, None)


# Built once; run with the changed columns as its parameters, which Core makes the SET clause (one
# compiled form per set of columns, cached by the engine).
_UPDATE = Prebuilt(update(Conversation.__table__).where(Conversation.__table__.c.id == bindparam("conversation_pk")))
_COLUMN_KEYS = frozenset(_KEYS)


class _NewRow:
    """A pending object of one mapped class written as one prebuilt `INSERT ... RETURNING` its key, with
    its columns' Python-side defaults and the foreign keys of its many-to-one relationships, as the
    flush would, then made persistent with the key the database gave it."""

    def __init__(self, model):
        mapper = inspect(model)
        table = model.__table__
        (self.key,) = table.primary_key.columns
        self.columns = tuple(c for c in table.columns if not c.primary_key)
        self.insert = Prebuilt(insert(table).returning(self.key))
        # relationship -> (our column, the parent's attribute) pairs; any other relationship set: the flush
        self.parents = {r.key: tuple((local.key, r.mapper.get_property_by_column(remote).key)
                                     for local, remote in r.local_remote_pairs)
                        for r in mapper.relationships if r.direction is MANYTOONE}
        self.others = frozenset(r.key for r in mapper.relationships if r.direction is not MANYTOONE)

    def ready(self, state) -> bool:
        if not state.pending or state.dict.get(self.key.key) is not None or not self.others.isdisjoint(state.dict):
            return False
        for name, pairs in self.parents.items():
            parent = state.dict.get(name)
            if parent is not None and (inspect(parent).key is None
                                       or not all(remote in inspect(parent).dict for _, remote in pairs)):
                return False  # a parent not yet written (or its key expired): the flush orders them
        return True

    def write(self, session: Session, obj, state) -> None:
        values = {c.key: state.dict[c.key] if c.key in state.dict else _default(c) for c in self.columns}
        for name, pairs in self.parents.items():
            parent = state.dict.get(name)
            if parent is not None:
                loaded = inspect(parent).dict
                values.update((local, loaded[remote]) for local, remote in pairs)
        new_key = self.insert.run(connection(session), values).row[0]
        obj.__dict__.update(values, **{self.key.key: new_key})  # what the flush leaves: defaults and key loaded
        live.collect(session, obj, is_new=True)
        # The flush's own last step (a private method of the pinned SQLAlchemy): the identity from the key
        # just set, the values become the loaded state, and the transaction notes the object as new, so a
        # rollback expunges it as it would a flushed one. Not `expunge`, `make_transient_to_detached` and
        # `add`: their cascades over the mapper's relationships cost a new chat's turn 0.5 M instructions.
        session._register_persistent({state})


# The objects a webhook turn creates: a new chat's conversation, and the ticket request of a finished workflow.
_NEW = {Conversation: _NewRow(Conversation), TicketRequest: _NewRow(TicketRequest)}


def write_changes(conv: Conversation) -> bool:
    """Write what a turn changed on its conversation as one plain UPDATE (or, for a new chat, its one
    INSERT), and the ticket request it filed as one INSERT, when those and the batched rows are all the
    session holds; False, having written nothing, when anything else is pending, and the caller's
    flush writes it all.

    The webhook's hot path (docs/performance/webhook.md): the ORM's unit of work costs several times
    the statements it sends. The objects are then marked written, as a flush would leave them, and the
    live notice noted while their attribute history still says what changed."""
    session = db.session()
    if session.deleted or session.in_nested_transaction():
        return False
    state = inspect(conv)  # its key, not `conv.id`: reading an expired attribute would autoflush
    if state.key is None:
        return _write_new(session, conv, state)
    if any(obj is not conv for obj in session.dirty):
        return False
    new = [(obj, inspect(obj)) for obj in session.new]
    if new and (not connection(session).dialect.insert_returning
                or not all(type(obj) in _NEW and _NEW[type(obj)].ready(obj_state) for obj, obj_state in new)):
        return False
    changes = {key: state.dict[key] for key in state.committed_state if key in _COLUMN_KEYS}
    if not _only_new_children(state, {id(obj) for obj, _ in new}):
        return False  # a relationship set: the flush derives its foreign key
    _insert_batch(session)  # the turn's lines first, as a flush writes them
    for obj, obj_state in new:
        _NEW[type(obj)].write(session, obj, obj_state)
    conv_id = state.identity[0]
    if changes:
        changes["updated_at"] = state.dict["updated_at"] = clock.now()  # the column's onupdate
        # One row, or StaleDataError: what the ORM's flush checks too.
        _UPDATE.run(connection(session), {**changes, "conversation_pk": conv_id}, expect=1)
        with session.no_autoflush:  # an expired id is read back, not flushed through the ORM
            live.collect(session, conv)
    # SQLAlchemy's own post-flush step (a private method of the pinned version: tests/test_write_changes.py
    # shows the commit that follows writes nothing more). It also drops a not-loaded collection's record
    # of the new children appended to it, which the next load reads from the database.
    state._commit_all(state.dict, session.identity_map)
    return True


def _only_new_children(state, new_ids: set[int]) -> bool:
    """Whether the conversation's changes other than its columns are only a not-loaded collection that
    new children (written here, their parent set to it) were appended to."""
    for key in state.committed_state:
        if key in _COLUMN_KEYS:
            continue
        if key not in _CHILD_COLLECTIONS or key in state.dict:
            return False
        # Appending to a collection that is not loaded records the children until the next flush.
        pending = state._pending_mutations.get(key)  # private, pinned version (tests/test_write_changes.py)
        if pending is None or pending.deleted_items or not all(id(obj) in new_ids for obj in pending.added_items):
            return False
    return True


_CHILD_COLLECTIONS = frozenset(r.key for r in inspect(Conversation).relationships if r.direction is ONETOMANY)


def _write_new(session: Session, conv: Conversation, state) -> bool:
    """A new chat's conversation (open_found's `deferred`) inserted as its only new object."""
    if (len(session.new) != 1 or session.dirty or not _NEW[Conversation].ready(state)
            or not connection(session).dialect.insert_returning):
        return False  # a relationship set, another new row, or no INSERT ... RETURNING: the flush
    _NEW[Conversation].write(session, conv, state)
    _insert_batch(session)  # its lines and timeline entries, now that it has an id
    return True


def _default(column):
    default = column.default
    if default is None:
        return None
    if default.is_callable:
        return default.arg(None)  # Core wraps a callable default to take an execution context
    if default.is_scalar:
        return default.arg
    raise ValueError(f"{column}: a SQL default needs the ORM's flush")


def add_message(conv: Conversation, role: str, text: str, *, masked: bool = False) -> Message | None:
    moment = clock.now()
    batch = _batch(conv)
    if batch is not None and "messages" not in conv.__dict__:
        _add_row(batch, Message, conv, {"role": role, "text": text, "masked": masked, "created_at": moment})
        message = None
    elif conv.id is not None and "messages" not in conv.__dict__:
        # A conversation whose message list is not loaded: the key and a plain reference skip the
        # collection bookkeeping. A later load of `conv.messages` reads the rows.
        message = Message(conversation_id=conv.id, role=role, text=text, masked=masked, created_at=moment)
        set_committed_value(message, "conversation", conv)
    else:
        message = Message(conversation=conv, role=role, text=text, masked=masked, created_at=moment)
    if message is not None:
        db.session.add(message)
    conv.message_count = (conv.message_count or 0) + 1
    conv.last_message_at = moment
    return message


def record_event(conv: Conversation, kind: str, detail: str = "") -> None:
    """A timeline entry. `detail` must carry no personal data: it is shown to every agent and logged."""
    batch = _batch(conv)
    if batch is not None:
        _add_row(batch, ConversationEvent, conv, {"kind": kind, "detail": detail[:500], "created_at": clock.now()})
        return
    if conv.id is None:
        db.session.flush()
    db.session.add(ConversationEvent(conversation_id=conv.id, kind=kind, detail=detail[:500]))


def close(conv: Conversation, reason: str) -> bool:
    """Close and archive: frees the chat id for a fresh conversation. False if it was already closed."""
    if conv.status == CLOSED:
        return False
    conv.status = CLOSED
    conv.open_key = None
    conv.closed_at = clock.now()
    conv.close_reason = reason
    record_event(conv, "closed", reason)
    return True


def close_with_followups(conv: Conversation, reason: str) -> bool:
    """Close the conversation (agent, customer, SalesIQ or inactivity) and queue the closing comment on
    its Desk ticket; the final message count stays on the row, which is kept as the archive."""
    from . import notifications

    if not close(conv, reason):
        return False
    request = conv.latest_ticket
    if request is not None and request.state != "failed":
        notifications.queue("closing_comment", key=f"{request.ref}:closed:{conv.id}", channel=notifications.DESK,
                            recipient=request.ref, conversation=conv, ticket_request=request)
    return True


def transcript(conv: Conversation, since=None, until=None) -> str:
    """The chat as plain text, one line a message; secrets were masked before they were stored."""
    names = {"customer": "Customer", "bot": "AceBuddy", "agent": "Agent", "system": "System"}
    lines = []
    for message in conv.messages:
        if (since is not None and message.created_at < since) or (until is not None and message.created_at > until):
            continue
        stamp = message.created_at.strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"[{stamp} UTC] {names.get(message.role, message.role)}: {message.text}")
    return "\n".join(lines)
