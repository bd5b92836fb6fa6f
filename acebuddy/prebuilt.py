"""Statements of the webhook's hot path, compiled once and sent through the driver.

SQLAlchemy Core spends more of the interpreter on each execution of a statement (its cache key, the
execution context, the parameters' processing, the result's set-up) than the database and its driver
spend running it: about 0.25 M instructions a statement on the webhook's turn, of which the driver's
own call is a fifth (docs/performance/webhook.md). A `Prebuilt` statement is compiled once per dialect
and set of parameter names; each call converts the values with the columns' own bind processors (the
conversion Core applies: dates as SQLite stores them, JSON serialised), sends the compiled SQL on the
connection's own DBAPI cursor, and converts what a SELECT or RETURNING gives back with the columns'
result processors, as Core's cached result metadata would.

The statement runs in the connection's transaction (the driver begins it as it does for Core). A driver
error goes through the connection's own handling: the same `sqlalchemy.exc` exception Core raises
(IntegrityError for a lost race), a lost connection invalidated. When anyone listens to the engine's
statement events or logs its SQL (`echo`, a tracer, the tests that count statements), the statement is
sent with `Connection.exec_driver_sql` instead, so they see it as any other.

For INSERT and UPDATE statements whose parameters name every column they write: a column left to its
Python-side default (`default=`, `onupdate=`) is refused when the statement is first compiled, since
only Core's own execution computes those.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, NamedTuple

from sqlalchemy import bindparam, event
from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import Insert, UpdateBase

_Processor = Callable[[Any], Any]


# The session's connection, kept in its info from the first `connection(session)` of a transaction to the
# transaction's end (any end: commit, rollback, a savepoint's release).
_CONNECTION = "acebuddy_connection"


def connection(session: Session) -> Connection:
    """`session.connection()` (its transaction begun if need be), remembered until the transaction ends.
    A webhook turn asks for it five times; `Session.connection` walks the session's transaction and
    Flask-SQLAlchemy's choice of engine each time, 50,000 instructions a call (docs/performance/webhook.md,
    change -20). Only for the one engine the application's tables are on."""
    held = session.info.get(_CONNECTION)
    if held is None:
        held = session.info[_CONNECTION] = session.connection()
    return held


@event.listens_for(Session, "after_transaction_end")
def _forget_connection(session: Session, _transaction) -> None:
    session.info.pop(_CONNECTION, None)


class _Form(NamedTuple):
    sql: str
    slots: tuple[tuple[int, str], ...]  # each parameter (in the SQL's order): its row and its name there
    processors: tuple[_Processor | None, ...]
    names: tuple[str, ...] | None  # the driver's parameter names; None when its style is positional
    results: tuple[_Processor | None, ...]  # for the columns a SELECT or RETURNING gives back


class Sent(NamedTuple):
    rowcount: int
    row: tuple | None  # a RETURNING's row, converted


# Rows of one multi-row INSERT: a longer list goes in several (one compiled form per row count).
MAX_ROWS = 16


class Prebuilt:
    def __init__(self, statement: UpdateBase | Select):
        # No implicit RETURNING (Core adds one for a new row's key, which nothing here reads); one the
        # statement asks for with `returning()` stays.
        self.statement = statement.inline() if isinstance(statement, Insert) else statement
        # By driver, set of parameter names (not their order, which follows the caller's code path) and
        # number of rows; filled on first use: two threads compiling the same form at once both get a
        # correct one.
        self._forms: dict[tuple[str, frozenset[str], int], _Form] = {}

    def run(self, connection: Connection, parameters: dict | list[dict]) -> Sent:
        """Execute an INSERT or UPDATE with one set of parameters (a dict), or an INSERT of several rows (a
        list of dicts with the same keys) as one multi-row INSERT: one statement, where the driver's
        executemany is one per row (psycopg sends those in pipeline mode: several more round trips)."""
        if not isinstance(parameters, list):
            return _send(connection, self._form(connection.dialect, parameters, 1), [parameters])
        if not isinstance(self.statement, Insert):
            raise TypeError("several rows: an INSERT only")
        rowcount = 0
        for start in range(0, len(parameters), MAX_ROWS):
            rows = parameters[start:start + MAX_ROWS]
            rowcount += _send(connection, self._form(connection.dialect, rows[0], len(rows)), rows).rowcount
        return Sent(rowcount, None)

    def first(self, connection: Connection, parameters: dict) -> tuple | None:
        """A SELECT's first row, its values converted as Core converts them; None when there is none."""
        return _send(connection, self._form(connection.dialect, parameters, 1), [parameters]).row

    def _form(self, dialect: Dialect, first: dict, rows: int) -> _Form:
        key = (dialect.dialect_description, frozenset(first), rows)
        form = self._forms.get(key)
        if form is None:
            if rows > 1:
                self._form(dialect, first, 1)  # checked as a single row first (the defaults)
            form = self._forms[key] = self._compile(dialect, sorted(key[1]), rows)
        return form

    def _compile(self, dialect: Dialect, keys: list[str], rows: int) -> _Form:
        statement = self.statement
        if rows == 1:
            compiled = statement.compile(dialect=dialect, column_keys=keys)
            slot_of = {key: (0, key) for key in keys}
        else:
            columns = statement.table.c
            slot_of = {f"{key}__{n}": (n, key) for n in range(rows) for key in keys}
            compiled = statement.values([{key: bindparam(f"{key}__{n}", type_=columns[key].type) for key in keys}
                                         for n in range(rows)]).compile(dialect=dialect)
        defaulted = [c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
        if defaulted:
            raise ValueError(f"{statement}: give {', '.join(defaulted)} (their Python-side defaults "
                             "are computed only by Core's own execution)")
        if compiled.post_compile_params or compiled.literal_execute_params or compiled.escaped_bind_names:
            raise ValueError(f"{statement}: its parameters need Core's own execution")
        names = tuple(compiled.positiontup) if compiled.positional else tuple(compiled.binds)
        if not set(names) <= slot_of.keys():  # a literal's value, say: write it as SQL (literal_column)
            raise ValueError(f"{statement}: no value given for {', '.join(sorted(set(names) - slot_of.keys()))}")
        processors = tuple(_bind_processor(compiled.binds[name].type.dialect_impl(dialect), dialect)
                           for name in names)
        # The driver's type code is not passed (None): none of the result processors of the types used
        # here reads it (a Numeric's would), and tests/test_prebuilt.py compares with Core's rows.
        results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in statement.exported_columns)
        return _Form(compiled.string, tuple(slot_of[name] for name in names), processors,
                     None if compiled.positional else names, results)


def _bind_processor(impl, dialect: Dialect) -> _Processor | None:
    """The type's own bind processor; for SQLite's DATETIME in its default storage format, the same text
    made by `datetime.isoformat` (its `%` formatting with a dict cost 12,000 instructions a value, ten
    values a turn; docs/performance/webhook.md, change -19)."""
    process = impl.bind_processor(dialect)
    if type(impl) is not SQLITE_DATETIME or impl._storage_format != SQLITE_DATETIME._storage_format:
        return process

    def sqlite_datetime(value):
        # A plain datetime (naive or not: the storage format ignores the zone) as
        # "YYYY-MM-DD HH:MM:SS.ffffff"; anything else (a date, a subclass, a wrong type) as SQLAlchemy does it.
        if type(value) is datetime:
            return value.isoformat(" ", "microseconds")[:26]
        return process(value)

    return sqlite_datetime


def _convert(form: _Form, rows: list[dict]) -> tuple | dict:
    values = [rows[n][name] if process is None else process(rows[n][name])
              for (n, name), process in zip(form.slots, form.processors)]
    return tuple(values) if form.names is None else dict(zip(form.names, values))


def _send(connection: Connection, form: _Form, rows: list[dict]) -> Sent:
    values = _convert(form, rows)
    # Private attributes of the pinned SQLAlchemy, read as Core reads them before each statement: any
    # listener to the connection's or engine's events, or SQL logging, gets the statement through Core.
    if connection._has_events or connection.engine._has_events or connection._echo:
        result = connection.exec_driver_sql(form.sql, values)
        row = result.first() if form.results else None  # first() closes the cursor, as the path below does
        return Sent(result.rowcount, None if row is None else _processed(form, row))
    cursor = connection.connection.cursor()
    try:
        cursor.execute(form.sql, values)
        row = cursor.fetchone() if form.results else None
    except Exception as error:
        # Core's own handling (private, pinned version): the sqlalchemy.exc wrapper, a lost connection
        # invalidated, the cursor closed.
        connection._handle_dbapi_exception(error, form.sql, values, cursor, None)
    rowcount = cursor.rowcount
    cursor.close()
    return Sent(rowcount, None if row is None else _processed(form, row))


def _processed(form: _Form, row) -> tuple:
    return tuple(value if process is None or value is None else process(value)
                 for value, process in zip(row, form.results))
