"""Prebuilt statements (acebuddy/prebuilt.py): the hot path's statements sent through the driver must store
and read exactly what Core's own execution stores and reads, on SQLite and (second pass of .ci/run)
PostgreSQL, raise Core's exceptions, and be seen by the engine's events when anyone listens."""
from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import bindparam, delete, event, func, insert, literal_column, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from acebuddy.extensions import db
from acebuddy.models import Conversation, ConversationEvent, Message, WebhookDelivery
from acebuddy.prebuilt import MAX_ROWS, Prebuilt, together

MOMENT = datetime(2026, 12, 2, 9, 30, 15, 123456)


def _conversation() -> int:
    conv = Conversation(salesiq_id="prebuilt", open_key="prebuilt", data={}, state={})
    db.session.add(conv)
    db.session.commit()
    return conv.id


def _stored(table, column, row_id: int):
    """A column as the database holds it (SQLite keeps dates and JSON as text: compare that text)."""
    return db.session.execute(select(text(f"CAST({column} AS TEXT)")).select_from(table)
                              .where(table.c.id == row_id)).scalar_one()


def test_an_insert_stores_what_core_stores(app_ctx):
    conv_id = _conversation()
    table = WebhookDelivery.__table__
    answer = {"action": "reply", "replies": ["Héllo \"there\"", "📄 line"], "n": 2, "none": None}
    row = {"conversation_id": conv_id, "response": answer, "created_at": MOMENT}
    db.session.connection().execute(insert(table), {**row, "key": "core"})
    Prebuilt(insert(table)).run(db.session.connection(), {**row, "key": "prebuilt"})
    db.session.commit()
    ids = dict(db.session.execute(select(table.c.key, table.c.id)).all())
    for column in ("conversation_id", "response", "created_at"):
        assert _stored(table, column, ids["prebuilt"]) == _stored(table, column, ids["core"])
    read = db.session.execute(select(table.c.response, table.c.created_at).where(table.c.key == "prebuilt")).one()
    assert tuple(read) == (answer, MOMENT)


def test_sqlite_dates_are_written_as_sqlalchemy_writes_them():
    """On SQLite a DATETIME is text: the prebuilt path formats a datetime itself (cheaper than the
    type's `%` formatting) and must give the very text SQLAlchemy's processor gives, or a comparison
    between a row written here and one written by Core would go wrong."""
    from datetime import date, timedelta, timezone

    from sqlalchemy.dialects import sqlite

    from acebuddy.prebuilt import _bind_processor

    dialect = sqlite.dialect()
    impl = sqlite.DATETIME()
    ours, theirs = _bind_processor(impl, dialect), impl.bind_processor(dialect)
    assert ours is not theirs  # the fast path is in use
    values = [MOMENT, MOMENT.replace(microsecond=0), datetime(5, 1, 2, 3, 4, 5, 6), datetime(9999, 12, 31, 23, 59, 59),
              MOMENT.replace(tzinfo=timezone.utc), MOMENT.replace(tzinfo=timezone(timedelta(hours=-5))),
              date(2026, 12, 7), None]
    assert [ours(v) for v in values] == [theirs(v) for v in values]
    with pytest.raises(TypeError):
        ours("2026-12-07")
    custom = sqlite.DATETIME(storage_format="%(year)04d/%(month)02d/%(day)02d %(hour)02d:%(minute)02d:%(second)02d")
    assert _bind_processor(custom, dialect)(MOMENT) == "2026/12/02 09:30:15"  # another format: SQLAlchemy's own


def test_many_rows_go_in_one_multi_row_insert_seen_by_the_engine_events(app_ctx):
    conv_id = _conversation()
    seen = []

    def record(_conn, _cursor, statement, params, _context, many):
        seen.append((statement, many))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        rows = [{"conversation_id": conv_id, "role": role, "text": f"line {n}", "masked": n == 1, "created_at": MOMENT}
                for n, role in enumerate(["customer", "bot", "bot"])]
        assert Prebuilt(insert(Message.__table__)).run(db.session.connection(), rows).rowcount == 3
        db.session.commit()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    inserts = [s for s in seen if s[0].startswith("INSERT INTO message")]
    assert len(inserts) == 1 and inserts[0][1] is False
    assert inserts[0][0].count("), (") == 2 and "RETURNING" not in inserts[0][0]
    stored = db.session.execute(select(Message.role, Message.text, Message.masked, Message.created_at)
                                .where(Message.conversation_id == conv_id).order_by(Message.id)).all()
    assert [tuple(r) for r in stored] == [(r["role"], r["text"], r["masked"], MOMENT) for r in rows]


def test_a_long_list_of_rows_goes_in_several_inserts_in_order(app_ctx, monkeypatch):
    """More rows than one statement takes (MAX_ROWS): several multi-row INSERTs, every row stored
    once and in order, with the same values Core stores."""
    conv_id = _conversation()
    _not_through_core(monkeypatch)
    rows = [{"conversation_id": conv_id, "role": "bot", "text": f"line {n} é", "masked": n % 2 == 0,
             "created_at": MOMENT} for n in range(2 * MAX_ROWS + 3)]
    assert Prebuilt(insert(Message.__table__)).run(db.session.connection(), rows).rowcount == len(rows)
    db.session.connection().execute(insert(Message.__table__), [{**rows[0], "text": "core"}])
    db.session.commit()
    stored = db.session.execute(select(Message.id, Message.text, Message.masked, Message.created_at)
                                .where(Message.conversation_id == conv_id).order_by(Message.id)).all()
    assert [(r.text, r.masked, r.created_at) for r in stored[:-1]] == [(r["text"], r["masked"], MOMENT) for r in rows]
    table = Message.__table__
    assert _stored(table, "created_at", stored[0].id) == _stored(table, "created_at", stored[-1].id)
    assert _stored(table, "masked", stored[0].id) == _stored(table, "masked", stored[-1].id)


def test_an_update_sets_the_given_columns_and_counts_its_rows(app_ctx):
    conv_id = _conversation()
    table = Conversation.__table__
    statement = Prebuilt(update(table).where(table.c.id == bindparam("pk")))
    result = statement.run(db.session.connection(), {"step": "ask_username", "state": {"pending": None},
                                                     "updated_at": MOMENT, "pk": conv_id})
    assert result.rowcount == 1
    assert statement.run(db.session.connection(), {"step": "x", "updated_at": MOMENT, "pk": conv_id + 99}).rowcount == 0
    # The same columns in another order (it follows the caller's code path) reuse the compiled form.
    assert statement.run(db.session.connection(), {"pk": conv_id + 99, "updated_at": MOMENT, "step": "y"}).rowcount == 0
    assert len(statement._forms) == 2
    db.session.commit()
    row = db.session.execute(select(table.c.step, table.c.state, table.c.updated_at).where(table.c.id == conv_id)).one()
    assert tuple(row) == ("ask_username", {"pending": None}, MOMENT)


def test_a_column_left_to_its_python_default_is_refused(app_ctx):
    """Only Core's own execution computes `default=` and `onupdate=` values: a row without them would
    silently store NULL or fail, so the statement says which to give."""
    conv_id = _conversation()
    with pytest.raises(ValueError, match="created_at"):
        Prebuilt(insert(WebhookDelivery.__table__)).run(db.session.connection(), {"key": "k", "conversation_id": conv_id,
                                                                                  "response": {}})
    table = Conversation.__table__
    with pytest.raises(ValueError, match="updated_at"):
        Prebuilt(update(table).where(table.c.id == bindparam("pk"))).run(db.session.connection(),
                                                                         {"step": "x", "pk": conv_id})
    with pytest.raises(ValueError, match="no value given for pk"):
        Prebuilt(update(table).where(table.c.id == bindparam("pk"))).run(db.session.connection(),
                                                                         {"step": "x", "updated_at": MOMENT})


def _not_through_core(monkeypatch):
    """Fail if a statement goes through Core's exec_driver_sql (the path taken only for listeners)."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("sent through Core, not the driver's cursor")

    monkeypatch.setattr(Connection, "exec_driver_sql", refuse)


def test_with_nobody_listening_the_statements_go_straight_to_the_driver(app_ctx, monkeypatch):
    conv_id = _conversation()
    _not_through_core(monkeypatch)
    table = Conversation.__table__
    statement = Prebuilt(update(table).where(table.c.id == bindparam("pk")))
    assert statement.run(db.session.connection(), {"step": "a", "updated_at": MOMENT, "pk": conv_id}).rowcount == 1
    new = Prebuilt(insert(table).returning(table.c.id, table.c.created_at))
    sent = new.run(db.session.connection(), {
        "salesiq_id": "r", "open_key": "r", "source": "zobot", "status": "bot", "verification": "none",
        "verify_failures": 0, "message_count": 0, "data": {}, "state": {}, "last_message_at": MOMENT,
        "created_at": MOMENT, "updated_at": MOMENT})
    assert sent.rowcount == 1 and sent.row[0] > conv_id and sent.row[1] == MOMENT  # the date converted back
    db.session.commit()
    assert db.session.get(Conversation, sent.row[0]).open_key == "r"


def _look_up_statement():
    table = Conversation.__table__
    return (select(select(WebhookDelivery.response).where(WebhookDelivery.key == bindparam("key"))
                   .scalar_subquery().label("answer"), *table.columns)
            .select_from(select(literal_column("1").label("one")).subquery())
            .outerjoin(table, table.c.open_key == bindparam("chat")))


@pytest.mark.parametrize("listening", [False, True])
def test_a_select_reads_what_core_reads(app_ctx, monkeypatch, listening):
    """Dates, JSON, booleans and NULLs converted by the columns' result processors, as Core's result
    does, whichever way the statement is sent; no row: None."""
    conv_id = _conversation()
    conv = db.session.get(Conversation, conv_id)
    conv.state, conv.data, conv.last_message_at = {"pending": {"kind": "clarify"}, "n": [1, 2]}, {"u": "é"}, MOMENT
    db.session.add(WebhookDelivery(key="d1", conversation_id=conv_id, response={"replies": ["hi"]},
                                   created_at=MOMENT))
    db.session.commit()
    statement = _look_up_statement()
    expected = tuple(db.session.connection().execute(statement, {"key": "d1", "chat": "prebuilt"}).one())
    listener = lambda *_args: None  # noqa: E731
    if listening:
        event.listen(db.engine, "before_cursor_execute", listener)
    else:
        _not_through_core(monkeypatch)
    try:
        read = Prebuilt(statement).first(db.session.connection(), {"key": "d1", "chat": "prebuilt"})
        missing = Prebuilt(select(Conversation.__table__.c.id).where(Conversation.__table__.c.id == bindparam("pk"))
                           ).first(db.session.connection(), {"pk": conv_id + 99})
    finally:
        if listening:
            event.remove(db.engine, "before_cursor_execute", listener)
    assert read == expected
    assert read[0] == {"replies": ["hi"]} and MOMENT in read and {"u": "é"} in read
    assert missing is None


def test_a_driver_error_is_sqlalchemys_and_the_session_goes_on(app_ctx, monkeypatch):
    """A lost race on a unique key raises sqlalchemy.exc.IntegrityError, as Core would (the webhook
    catches that one), and after the rollback the connection serves the next turn."""
    conv_id = _conversation()
    _not_through_core(monkeypatch)
    record = Prebuilt(insert(WebhookDelivery.__table__))
    row = {"key": "twice", "conversation_id": conv_id, "response": {}, "created_at": MOMENT}
    record.run(db.session.connection(), row)
    db.session.commit()
    with pytest.raises(IntegrityError) as caught:
        record.run(db.session.connection(), row)
    assert "INSERT INTO webhook_delivery" in str(caught.value)
    db.session.rollback()
    record.run(db.session.connection(), {**row, "key": "after"})
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(WebhookDelivery.__table__)) == 2


def test_the_remembered_connection_is_the_sessions_until_its_transaction_ends(app_ctx):
    """prebuilt.connection gives what session.connection() gives, and forgets it when the transaction
    ends (commit, rollback, a savepoint's end): a statement must never go to a connection the session
    has given back to the pool."""
    from acebuddy.prebuilt import connection

    session = db.session()
    first = connection(session)
    assert first is session.connection() and connection(session) is first
    with session.begin_nested():
        assert connection(session) is session.connection()
    assert connection(session) is session.connection()
    session.commit()
    assert "acebuddy_connection" not in session.info
    second = connection(session)
    assert second is session.connection() and first.closed  # the first went back to the pool
    session.rollback()
    assert "acebuddy_connection" not in session.info
    assert connection(session) is session.connection()
    assert connection(session).execute(select(literal_column("1"))).scalar() == 1
    session.close()
    assert "acebuddy_connection" not in session.info


# prebuilt.together: a turn's writes held to the block's end, one statement on PostgreSQL.

def _turn_writes(conv_id: int, key: str) -> list[tuple[Prebuilt, dict | list[dict], int | None]]:
    """What a webhook turn writes: its lines, a timeline entry, the conversation's change, its record."""
    table = Conversation.__table__
    return [
        (Prebuilt(insert(Message.__table__)), [
            {"conversation_id": conv_id, "role": role, "text": f"{role} é", "masked": False, "created_at": MOMENT}
            for role in ("customer", "bot")], None),
        (Prebuilt(insert(ConversationEvent.__table__)),
         {"conversation_id": conv_id, "kind": "kb_answer", "detail": "backups 0.90", "created_at": MOMENT}, None),
        (Prebuilt(update(table).where(table.c.id == bindparam("pk"))),
         {"step": "together", "state": {"n": 1}, "updated_at": MOMENT, "pk": conv_id}, 1),
        (Prebuilt(insert(WebhookDelivery.__table__)),
         {"key": key, "conversation_id": conv_id, "response": {"replies": ["é"]}, "created_at": MOMENT}, None),
    ]


def _counts(conv_id: int) -> tuple:
    count = lambda model: db.session.scalar(select(func.count()).select_from(model).where(  # noqa: E731
        model.conversation_id == conv_id))
    return count(Message), count(ConversationEvent), count(WebhookDelivery)


@pytest.mark.parametrize("listening, cache_full", [(False, False), (True, False), (True, True)])
def test_together_holds_the_writes_to_the_blocks_end_in_their_order(app_ctx, monkeypatch, listening, cache_full):
    """Inside the block nothing is sent (each write says -1, "not known"); at its end everything is, in
    order: one statement on PostgreSQL (one each when its cache of shapes is full), one each elsewhere;
    the rows are those the statements store alone."""
    from acebuddy import prebuilt

    if cache_full:
        monkeypatch.setattr(prebuilt, "_combined", {})
        monkeypatch.setattr(prebuilt, "_COMBINED_LIMIT", 0)
    conv_id = _conversation()
    seen = []

    def record(_conn, _cursor, statement, _params, _context, _many):
        seen.append(statement.split(None, 1)[0])

    if listening:
        event.listen(db.engine, "before_cursor_execute", record)
    else:
        _not_through_core(monkeypatch)
    connection = db.session.connection()
    try:
        with together(connection):
            for statement, parameters, expect in _turn_writes(conv_id, "together-1"):
                assert statement.run(connection, parameters, expect=expect).rowcount == -1
            assert seen == []
    finally:
        if listening:
            event.remove(db.engine, "before_cursor_execute", record)
    if listening:
        combined = connection.dialect.name == "postgresql" and not cache_full
        assert seen == (["WITH"] if combined else ["INSERT", "INSERT", "UPDATE", "INSERT"])
    db.session.commit()
    assert _counts(conv_id) == (2, 1, 1)
    conv = db.session.get(Conversation, conv_id)
    assert (conv.step, conv.state) == ("together", {"n": 1})
    texts = db.session.scalars(select(Message.text).where(Message.conversation_id == conv_id).order_by(Message.id))
    assert list(texts) == ["customer é", "bot é"]
    assert db.session.scalar(select(WebhookDelivery.response).where(WebhookDelivery.key == "together-1")) == {
        "replies": ["é"]}


def test_a_statement_that_reads_sends_what_waits_first(app_ctx):
    conv_id = _conversation()
    connection = db.session.connection()
    lines, rows, _ = _turn_writes(conv_id, "together-2")[0]
    count = Prebuilt(select(func.count()).select_from(Message.__table__)
                     .where(Message.__table__.c.conversation_id == bindparam("pk")))
    table = Message.__table__
    remove = Prebuilt(delete(table).where(table.c.conversation_id == bindparam("pk")))
    with together(connection):
        lines.run(connection, rows)
        assert count.first(connection, {"pk": conv_id}) == (2,)
        lines.run(connection, rows[:1])
        assert remove.run(connection, {"pk": conv_id}).rowcount == 3  # no INSERT or UPDATE: at once, after
        lines.run(connection, rows)
    assert count.first(connection, {"pk": conv_id}) == (2,)
    db.session.rollback()


def test_an_update_that_finds_no_row_fails_at_the_blocks_end(app_ctx):
    """`expect`: the ORM flush's check that the row was there, made when the statement is sent."""
    conv_id = _conversation()
    connection = db.session.connection()
    writes = _turn_writes(conv_id, "together-3")
    statement, parameters, _ = writes[2]
    # PostgreSQL's combined statement checks its counts itself and fails whole (prebuilt._counted).
    with pytest.raises(StaleDataError, match="conversation: .*1 (were )?expected"):
        with together(connection):
            writes[0][0].run(connection, writes[0][1])
            statement.run(connection, {**parameters, "pk": conv_id + 99}, expect=1)
    db.session.rollback()
    with pytest.raises(StaleDataError):  # outside a block: at once
        statement.run(db.session.connection(), {**parameters, "pk": conv_id + 99}, expect=1)
    db.session.rollback()
    assert _counts(conv_id) == (0, 0, 0)


def test_a_lost_race_inside_together_is_sqlalchemys_integrity_error(app_ctx):
    """A delivery answered meanwhile: its record's unique key fails the whole batch, as the webhook
    expects (it rolls back and gives the stored answer); nothing of the batch stays."""
    conv_id = _conversation()
    *_, (record, row, _) = _turn_writes(conv_id, "together-4")
    record.run(db.session.connection(), row)
    db.session.commit()
    connection = db.session.connection()
    with pytest.raises(IntegrityError):
        with together(connection):
            for statement, parameters, expect in _turn_writes(conv_id, "together-4"):
                statement.run(connection, parameters, expect=expect)
    db.session.rollback()
    assert _counts(conv_id) == (0, 0, 1)
    assert db.session.get(Conversation, conv_id).step is None


def test_an_error_inside_the_block_drops_what_waits(app_ctx):
    conv_id = _conversation()
    connection = db.session.connection()
    writes = _turn_writes(conv_id, "together-5")
    with pytest.raises(RuntimeError):
        with together(connection):
            writes[0][0].run(connection, writes[0][1])
            raise RuntimeError("the bot failed")
    statement, parameters, _ = writes[1]
    assert statement.run(connection, parameters).rowcount == 1  # no block any more: sent at once
    db.session.commit()
    assert _counts(conv_id) == (0, 1, 0)


def test_the_combined_statement_for_postgresql(monkeypatch):
    """Compiled for PostgreSQL without one: each part a WITH clause, parameters renamed so that no two
    parts share one, the values given by part; one compiled statement per shape, and past the cache's
    limit a new shape goes one statement at a time."""
    from sqlalchemy.dialects.postgresql import psycopg

    from acebuddy import prebuilt

    dialect = psycopg.dialect()
    parts = []
    for statement, parameters, expect in _turn_writes(7, "together-6"):
        rows = parameters if isinstance(parameters, list) else [parameters]
        form = statement._form(dialect, rows[0], len(rows))
        parts.append(prebuilt._Part(statement, rows, expect, form, prebuilt._convert(form, rows)))
    monkeypatch.setattr(prebuilt, "_combined", {})
    combined = prebuilt._combined_statement(dialect, parts)
    assert prebuilt._combined_statement(dialect, parts) is combined
    values = prebuilt._flattened(parts)
    form = combined._form(dialect, values, 1)
    assert form.sql.startswith("WITH w0 AS") and form.sql.count(" RETURNING 1)") == 4
    for clause in ("INSERT INTO message", "INSERT INTO conversation_event", "UPDATE conversation SET",
                   "INSERT INTO webhook_delivery"):
        assert clause in form.sql
    assert set(form.names) == set(values)
    assert values["p0_text__1"] == "bot é" and values["p2_pk"] == 7 and values["p3_key__0"] == "together-6"
    assert "p2_step" in form.sql and "p2_pk" in form.sql
    monkeypatch.setattr(prebuilt, "_combined", {})
    monkeypatch.setattr(prebuilt, "_COMBINED_LIMIT", 0)
    assert prebuilt._combined_statement(dialect, parts) is None
    from sqlalchemy.dialects import sqlite
    assert prebuilt._combined_statement(sqlite.dialect(), parts) is None


# On PostgreSQL, statements sent before anything else of their transaction go without BEGIN (prebuilt._unbegun).

def _committed_lines(conv_id: int) -> int:
    """The conversation's lines as another connection sees them: only what is committed."""
    with db.engine.connect() as other:
        return other.scalar(select(func.count()).select_from(Message.__table__)
                            .where(Message.__table__.c.conversation_id == conv_id))


def _fresh_transaction() -> int:
    """A conversation's id, and a session whose next transaction has sent nothing yet (reading the id
    after the commit began one)."""
    conv_id = _conversation()
    db.session.commit()
    return conv_id


def _begun(connection: Connection) -> bool | None:
    """Whether the driver has begun the connection's transaction (None: not psycopg)."""
    if connection.dialect.driver != "psycopg":
        return None
    driver = connection.connection.driver_connection
    assert not driver.autocommit  # never left in autocommit after a statement
    return driver.info.transaction_status != 0


def test_a_read_sent_first_begins_no_transaction_and_a_write_does(app_ctx):
    conv_id = _fresh_transaction()
    connection = db.session.connection()
    count = Prebuilt(select(func.count()).select_from(Message.__table__)
                     .where(Message.__table__.c.conversation_id == bindparam("pk")))
    assert count.first(connection, {"pk": conv_id}) == (0,)
    assert _begun(connection) in (None, False)
    lines, rows, _ = _turn_writes(conv_id, "unbegun-1")[0]
    lines.run(connection, rows)
    assert _begun(connection) in (None, True)
    assert count.first(connection, {"pk": conv_id}) == (2,)  # inside the transaction now
    assert _committed_lines(conv_id) == 0
    db.session.rollback()
    assert _counts(conv_id) == (0, 0, 0)
    # A locking read, or one with a data-modifying WITH clause, is no plain read.
    assert not Prebuilt(select(Message.__table__).with_for_update()).reads
    assert not Prebuilt(select(func.count()).select_from(insert(Message.__table__).returning(Message.id).cte())).reads


def test_the_last_statement_of_a_transaction_is_its_own_on_postgresql(app_ctx):
    """`together(last=True)` with nothing sent before: on PostgreSQL the one statement commits itself
    (another connection sees its rows before the session commits, and the commit sends nothing);
    elsewhere the transaction is as before. The rows are the same either way."""
    conv_id = _fresh_transaction()
    connection = db.session.connection()
    with together(connection, last=True):
        for statement, parameters, expect in _turn_writes(conv_id, "unbegun-2"):
            statement.run(connection, parameters, expect=expect)
    postgresql = connection.dialect.driver == "psycopg"
    assert _committed_lines(conv_id) == (2 if postgresql else 0)
    assert _begun(connection) in (None, False)
    db.session.commit()
    assert _counts(conv_id) == (2, 1, 1) and _committed_lines(conv_id) == 2


def test_after_a_write_the_last_statement_stays_in_the_transaction(app_ctx):
    conv_id = _fresh_transaction()
    connection = db.session.connection()
    writes = _turn_writes(conv_id, "unbegun-3")
    writes[0][0].run(connection, writes[0][1])  # sent at once: the transaction has begun
    with together(connection, last=True):
        for statement, parameters, expect in writes[1:]:
            statement.run(connection, parameters, expect=expect)
    assert _committed_lines(conv_id) == 0
    db.session.rollback()
    assert _counts(conv_id) == (0, 0, 0)


def test_a_wrong_count_fails_the_last_statement_whole(app_ctx):
    """The UPDATE finds no row: on PostgreSQL the statement, its own transaction, fails before anything
    of it is committed; nothing of the turn is stored on either database."""
    conv_id = _fresh_transaction()
    connection = db.session.connection()
    writes = _turn_writes(conv_id, "unbegun-4")
    with pytest.raises(StaleDataError, match="conversation: "):
        with together(connection, last=True):
            for statement, parameters, expect in writes:
                if expect is not None:
                    parameters = {**parameters, "pk": conv_id + 99}
                statement.run(connection, parameters, expect=expect)
    db.session.rollback()
    assert _counts(conv_id) == (0, 0, 0) and _committed_lines(conv_id) == 0
