"""Prebuilt statements (acebuddy/prebuilt.py): the hot path's INSERTs and UPDATEs sent through the driver
must store exactly what Core's own execution stores, on SQLite and (second pass of .ci/run) PostgreSQL,
and be seen by the engine's events like any statement."""
from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import bindparam, event, insert, select, text, update

from acebuddy.extensions import db
from acebuddy.models import Conversation, Message, WebhookDelivery
from acebuddy.prebuilt import Prebuilt

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


def test_many_rows_go_in_one_executemany_seen_by_the_engine_events(app_ctx):
    conv_id = _conversation()
    seen = []

    def record(_conn, _cursor, statement, params, _context, many):
        seen.append((statement, many, len(params) if many else 1))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        rows = [{"conversation_id": conv_id, "role": role, "text": f"line {n}", "masked": n == 1, "created_at": MOMENT}
                for n, role in enumerate(["customer", "bot", "bot"])]
        Prebuilt(insert(Message.__table__)).run(db.session.connection(), rows)
        db.session.commit()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    inserts = [s for s in seen if s[0].startswith("INSERT INTO message")]
    assert [(many, count) for _, many, count in inserts] == [(True, 3)]
    assert "RETURNING" not in inserts[0][0]
    stored = db.session.execute(select(Message.role, Message.text, Message.masked, Message.created_at)
                                .where(Message.conversation_id == conv_id).order_by(Message.id)).all()
    assert [tuple(r) for r in stored] == [(r["role"], r["text"], r["masked"], MOMENT) for r in rows]


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
