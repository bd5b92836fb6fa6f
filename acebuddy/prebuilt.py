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

Inside `together(connection)`, the statements nothing reads back (INSERT and UPDATE without RETURNING)
wait and go at the block's end: on PostgreSQL as one statement, each of them a data-modifying WITH
clause, so a webhook turn's four writes are one statement for the server and one round trip; elsewhere
one after the other, their parameters converted already (on SQLite the write lock, taken by the first
of them, is then held for the statements alone). docs/performance/webhook.md, change -25.

On PostgreSQL a prebuilt SELECT sent while its transaction has sent nothing yet goes without the BEGIN
the driver would put before it, and `together(connection, last=True)` sends what waits without BEGIN when
it is one statement and nothing was sent before it: that statement is its own transaction, and the
caller's commit has nothing left to send. A webhook turn that reads its conversation and writes its
turn then sends its two statements alone: no BEGIN before them, no COMMIT after (change -28).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Callable, NamedTuple

from sqlalchemy import bindparam, event, func, literal_column, select
from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.sql import Select, visitors
from sqlalchemy.sql.selectable import CTE
from sqlalchemy.sql.dml import Insert, Update, UpdateBase
from sqlalchemy.sql.elements import BindParameter

_Processor = Callable[[Any], Any]
_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE: nothing sent in the connection's transaction


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
_NOT_KNOWN = Sent(-1, None)  # a held statement's rowcount: the DBAPI's "not known"


class Prebuilt:
    def __init__(self, statement: UpdateBase | Select):
        # No implicit RETURNING (Core adds one for a new row's key, which nothing here reads); one the
        # statement asks for with `returning()` stays.
        self.statement = statement.inline() if isinstance(statement, Insert) else statement
        # By driver, set of parameter names (not their order, which follows the caller's code path) and
        # number of rows; filled on first use: two threads compiling the same form at once both get a
        # correct one.
        self._forms: dict[tuple[str, frozenset[str], int], _Form] = {}
        # Inside `together`: an INSERT or UPDATE that reads nothing back waits; a SELECT, a RETURNING (its
        # caller reads what comes back) or any other statement goes at once.
        self.waits = isinstance(self.statement, (Insert, Update)) and not self.statement.exported_columns
        # A SELECT that locks nothing and writes nothing (no FOR UPDATE, no data-modifying WITH clause)
        # needs no transaction of its own.
        self.reads = (isinstance(self.statement, Select) and self.statement._for_update_arg is None
                      and not any(isinstance(cte.element, UpdateBase)
                                  for cte in visitors.iterate(self.statement) if isinstance(cte, CTE)))

    def run(self, connection: Connection, parameters: dict | list[dict], *, expect: int | None = None) -> Sent:
        """Execute an INSERT or UPDATE with one set of parameters (a dict), or an INSERT of several rows (a
        list of dicts with the same keys) as one multi-row INSERT: one statement, where the driver's
        executemany is one per row (psycopg sends those in pipeline mode: several more round trips).

        `expect`: the rows the statement must change (an UPDATE of one row, say), or StaleDataError, as
        the ORM's flush checks. Inside `together(connection)` a statement that reads nothing back waits
        for the block's end: it returns a rowcount of -1 (the DBAPI's "not known") and `expect` is
        checked when it is sent."""
        if isinstance(parameters, list):
            if not isinstance(self.statement, Insert):
                raise TypeError("several rows: an INSERT only")
            if expect is not None:
                raise TypeError("expect: one set of parameters only")
            chunks = [parameters[start:start + MAX_ROWS] for start in range(0, len(parameters), MAX_ROWS)]
        else:
            chunks = [[parameters]]
        held = _HELD.get()
        if held is not None and held.connection is connection:
            if self.waits:
                # Converted now where they will go one by one (on SQLite, before the write lock is
                # taken); where they combine, the combined statement converts them.
                convert = connection.dialect.name not in _COMBINING
                for rows in chunks:
                    form = self._form(connection.dialect, rows[0], len(rows))  # refuses a bad statement now
                    held.parts.append(_Part(self, rows, expect, form, _convert(form, rows) if convert else None))
                return _NOT_KNOWN
            _send_held(held)  # what waits was run first: the statements keep their order
        rowcount, row = 0, None
        for rows in chunks:
            sent = _send(connection, self._form(connection.dialect, rows[0], len(rows)), rows)
            rowcount, row = rowcount + sent.rowcount, sent.row
        if expect is not None:
            _check(self, expect, rowcount)
        return Sent(rowcount, row)

    def first(self, connection: Connection, parameters: dict) -> tuple | None:
        """A SELECT's first row, its values converted as Core converts them; None when there is none. Sent
        before anything else of its transaction, it goes without a BEGIN (`_unbegun`)."""
        held = _HELD.get()
        if held is not None and held.connection is connection:
            _send_held(held)
        form = self._form(connection.dialect, parameters, 1)
        with _unbegun(connection) if self.reads else _AS_IS:
            return _send(connection, form, [parameters]).row

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
            slot_of = {_row_name(key, n): (n, key) for n in range(rows) for key in keys}
            compiled = _with_rows(statement, keys, rows).compile(dialect=dialect)
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


class Adopter:
    """Rows of one mapped class read by a prebuilt SELECT (`columns`, in their order) made the persistent
    objects of the session that the ORM's loading would give: its columns loaded and unchanged, its
    relationships loaded on first use; the object the session already holds if it holds that row; None
    for a row without a key (an outer join that found nothing).

    Building the object from the row costs a fraction of the ORM's query and loading (docs/performance/
    webhook.md, changes -6 and -26). As the ORM's loader does (private steps of the pinned SQLAlchemy;
    tests/test_write_changes.py compares the result with a loaded object): a new instance without its
    constructor (which would record each value as a change), the values straight into its dictionary,
    the row's identity, and the object put in the session's identity map. Not `make_transient_to_detached`
    and `Session.add`: they walk the mapper's properties for changes to commit and related objects to
    cascade to, of which a fresh object has none."""

    def __init__(self, model):
        self._manager = manager_of_class(model)
        self._mapper = self._manager.mapper
        table = model.__table__
        self.columns = tuple(table.columns)
        self._keys = tuple(column.key for column in self.columns)
        (key,) = table.primary_key.columns
        self._id = self._keys.index(key.key)

    def held(self, session: Session, primary_key):
        """The object of that key the session holds already, or None."""
        return session.identity_map.get(self._mapper.identity_key_from_primary_key((primary_key,)))

    def __call__(self, session: Session, values):
        if values[self._id] is None:
            return None
        key = self._mapper.identity_key_from_primary_key((values[self._id],))
        held = session.identity_map.get(key)
        if held is not None:
            return held
        obj = self._manager.new_instance()
        obj.__dict__.update(zip(self._keys, values))
        state = instance_state(obj)
        state.key = key
        session._update_impl(state)
        return obj


def _row_name(key: str, row: int) -> str:
    """The parameter of column `key` in row `row` of a multi-row INSERT."""
    return f"{key}__{row}"


def _with_rows(statement: Insert, keys: list[str], rows: int) -> Insert:
    """The INSERT with `rows` rows of named parameters (`_row_name`) for the columns `keys`."""
    columns = statement.table.c
    return statement.values([{key: bindparam(_row_name(key, n), type_=columns[key].type) for key in keys}
                             for n in range(rows)])


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
    return _send_values(connection, form, _convert(form, rows))


def _send_values(connection: Connection, form: _Form, values: tuple | dict) -> Sent:
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


def _check(statement: Prebuilt, expect: int, rowcount: int) -> None:
    if rowcount != expect:
        raise StaleDataError(f"{statement.statement.table.name}: {rowcount} rows changed where {expect} were expected")


class _Part(NamedTuple):
    """A statement waiting in a `together` block, its form made when it was run (and its values converted,
    unless the dialect combines the statements)."""
    prebuilt: Prebuilt
    rows: list[dict]
    expect: int | None
    form: _Form
    values: tuple | dict | None


class _Held(NamedTuple):
    connection: Connection
    parts: list[_Part]


_HELD: ContextVar[_Held | None] = ContextVar("acebuddy_prebuilt_held", default=None)


@contextmanager
def together(connection: Connection, *, last: bool = False) -> Iterator[None]:
    """Hold the statements run on `connection` in this block that read nothing back, and send them at its
    end in their order: on PostgreSQL as one statement, elsewhere one after the other. A statement that
    reads (a SELECT, a RETURNING) sends what waits first. An exception in the block drops what waits:
    the caller rolls its transaction back. What goes another way inside the block (the ORM's flush,
    Core) is sent at once, ahead of what waits: hold only writes that may come after it (the webhook's
    lines, timeline entries and delivery record after the flush that inserts their conversation).

    `last`: the caller commits right after the block and writes nothing more. When what waits is one
    statement and the transaction has sent nothing before it, it goes without BEGIN (`_unbegun`): one
    statement is atomic on its own, and the commit then has nothing to send."""
    outer = _HELD.get()
    if outer is not None and outer.connection is connection:  # inside one already: the outer one sends
        yield
        return
    held = _Held(connection, [])
    token = _HELD.set(held)
    try:
        yield
        _send_held(held, last=last)
    finally:
        _HELD.reset(token)


_AS_IS = nullcontext()  # reusable: the block runs as it would


def _unbegun(connection: Connection):
    """On PostgreSQL (psycopg), while the connection's transaction has sent nothing: a context whose
    statements go in autocommit, without the BEGIN the driver sends before a transaction's first
    statement, each its own transaction. For a read (at READ COMMITTED, the only level used, a
    transaction gives each statement its own snapshot anyway) and for one statement that is all a
    transaction writes. The driver's transaction stays unbegun afterwards: the next statement begins it
    as usual, and a commit or rollback with nothing begun sends nothing. Elsewhere, or once something
    was sent, `_AS_IS` (no generator made on SQLite's hot path)."""
    if connection.dialect.driver != "psycopg":
        return _AS_IS
    driver = connection.connection.driver_connection
    if driver.autocommit or driver.info.transaction_status != _IDLE:
        return _AS_IS
    return _autocommitted(connection, driver)


@contextmanager
def _autocommitted(connection: Connection, driver) -> Iterator[None]:
    driver.autocommit = True
    try:
        yield
    finally:
        try:
            driver.autocommit = False
        except Exception:
            # A connection that broke during the block: never back to the pool in autocommit.
            connection.invalidate()


# Dialects that run INSERT and UPDATE inside WITH (SQLite and MySQL do not). Combined statements are
# kept by shape (which statements, their parameters' names, their rows): a turn has a handful of shapes;
# past the limit a new shape goes one statement at a time rather than growing the cache without end.
_COMBINING = frozenset({"postgresql"})
_COMBINED_LIMIT = 256
_combined: dict[tuple, Prebuilt] = {}


def _send_held(held: _Held, *, last: bool = False) -> None:
    parts = held.parts[:]
    if not parts:
        return
    held.parts.clear()
    connection = held.connection
    combined = _combined_statement(connection.dialect, parts) if len(parts) > 1 else None
    if combined is not None:
        # Its own transaction when it is the last (`together`): it checks its row counts itself.
        with _unbegun(connection) if last else _AS_IS:
            try:
                counts = combined.first(connection, _flattened(parts))
            except DataError as error:
                if getattr(error.orig, "sqlstate", None) != _DIVISION_BY_ZERO:
                    raise
                raise StaleDataError(", ".join(
                    f"{part.prebuilt.statement.table.name}: the rows changed were not the {part.expect} expected"
                    for part in parts if part.expect is not None)) from None
    else:
        # One statement alone is atomic too, but its row count is checked here, after it went.
        alone = last and len(parts) == 1 and parts[0].expect is None
        with _unbegun(connection) if alone else _AS_IS:
            counts = [_send_values(connection, part.form, _convert(part.form, part.rows) if part.values is None
                                   else part.values).rowcount for part in parts]
    for part, count in zip(parts, counts):
        if part.expect is not None:
            _check(part.prebuilt, part.expect, count)


def _shape(part: _Part) -> tuple:
    return part.prebuilt, frozenset(part.rows[0]), len(part.rows), part.expect


def _combined_statement(dialect: Dialect, parts: list[_Part]) -> Prebuilt | None:
    """One SELECT of the parts' row counts, each part a data-modifying WITH clause: PostgreSQL runs them
    all in one statement and one snapshot, none seeing another's rows (the webhook's parts write
    different rows, and a row's foreign key is checked at the statement's end)."""
    if dialect.name not in _COMBINING:
        return None
    key = tuple(_shape(part) for part in parts)
    found = _combined.get(key)
    if found is None and len(_combined) < _COMBINED_LIMIT:
        clauses = [_prefixed(_explicit(part), f"p{n}_").returning(literal_column("1")).cte(f"w{n}")
                   for n, part in enumerate(parts)]
        counts = [select(_counted(part.expect)).select_from(clause).scalar_subquery()
                  for clause, part in zip(clauses, parts)]
        found = _combined[key] = Prebuilt(select(*counts))
    return found


# SQLSTATE 22012. PostgreSQL's SQL has no RAISE outside PL/pgSQL: a part that must change `expect` rows
# divides its count by (count = expect), so a wrong count fails the whole statement, every clause with
# it, before anything is committed, even when the statement is its own transaction (`together`, `last`).
# (Not a constant: a constant 1/0 would fail when the statement is planned, whatever the counts.)
_DIVISION_BY_ZERO = "22012"


def _counted(expect: int | None):
    if expect is None:
        return func.count()
    return literal_column(f"count(*) / (count(*) = {int(expect)})::int")


def _explicit(part: _Part) -> UpdateBase:
    """The part's statement with its values as named parameters: an INSERT's rows as `key__n`, an UPDATE's
    SET clause from the parameters that name its table's columns (as `run` compiles it)."""
    statement, keys = part.prebuilt.statement, sorted(part.rows[0])
    if isinstance(statement, Insert):
        return _with_rows(statement, keys, len(part.rows))
    assert isinstance(statement, Update)
    columns = statement.table.c
    return statement.values({key: bindparam(key, type_=columns[key].type) for key in keys if key in columns})


def _prefixed(statement: UpdateBase, prefix: str) -> UpdateBase:
    """The statement with every parameter renamed `prefix + name`: the parts' names must not meet."""
    def rename(element):
        if isinstance(element, BindParameter):
            return bindparam(prefix + element.key, type_=element.type)
        return None

    return visitors.replacement_traverse(statement, {}, rename)


def _flattened(parts: list[_Part]) -> dict:
    values: dict = {}
    for n, part in enumerate(parts):
        if isinstance(part.prebuilt.statement, Insert):
            for m, row in enumerate(part.rows):
                values.update((f"p{n}_{_row_name(key, m)}", value) for key, value in row.items())
        else:
            values.update((f"p{n}_{key}", value) for key, value in part.rows[0].items())
    return values
