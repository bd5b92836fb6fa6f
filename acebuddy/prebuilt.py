"""Statements of the webhook's hot path, compiled once and sent through the driver.

SQLAlchemy Core spends more of the interpreter on each execution of a statement (its cache key, the
execution context, the parameters' processing, the result's set-up) than the database and its driver
spend running it: about 0.25 M instructions a statement on the webhook's turn, of which the driver's
own call is a fifth (docs/performance/webhook.md). A `Prebuilt` statement is compiled once per dialect
and set of parameter names; each call converts the values with the columns' own bind processors (the
conversion Core applies: dates as SQLite stores them, JSON serialised) and sends the compiled SQL with
`Connection.exec_driver_sql`, so the connection's transaction, events and logging are those of any
statement.

For INSERT and UPDATE statements whose parameters name every column they write: a column left to its
Python-side default (`default=`, `onupdate=`) is refused when the statement is first compiled, since
only Core's own execution computes those.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

from sqlalchemy.engine import Connection, CursorResult, Dialect
from sqlalchemy.sql.dml import Insert, UpdateBase


class _Form(NamedTuple):
    sql: str
    names: tuple[str, ...]  # the parameters, in the SQL's order when the driver's style is positional
    processors: tuple[Callable[[Any], Any] | None, ...]
    positional: bool


class Prebuilt:
    def __init__(self, statement: UpdateBase):
        # No implicit RETURNING (Core adds one for a new row's key, which nothing here reads); one the
        # statement asks for with `returning()` stays.
        self.statement = statement.inline() if isinstance(statement, Insert) else statement
        # By driver and set of parameter names (not their order, which follows the caller's code path);
        # filled on first use: two threads compiling the same form at once both get a correct one.
        self._forms: dict[tuple[str, frozenset[str]], _Form] = {}

    def run(self, connection: Connection, parameters: dict | list[dict]) -> CursorResult:
        """Execute with one set of parameters (a dict) or many (a list of dicts with the same keys,
        sent as the driver's executemany)."""
        many = isinstance(parameters, list)
        first = parameters[0] if many else parameters
        dialect = connection.dialect
        key = (dialect.dialect_description, frozenset(first))
        form = self._forms.get(key)
        if form is None:
            form = self._forms[key] = self._compile(dialect, sorted(key[1]))
        if many:
            return connection.exec_driver_sql(form.sql, [_convert(form, row) for row in parameters])
        return connection.exec_driver_sql(form.sql, _convert(form, parameters))

    def _compile(self, dialect: Dialect, keys: list[str]) -> _Form:
        compiled = self.statement.compile(dialect=dialect, column_keys=keys)
        defaulted = [c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
        if defaulted:
            raise ValueError(f"{self.statement}: give {', '.join(defaulted)} (their Python-side defaults "
                             "are computed only by Core's own execution)")
        if compiled.post_compile_params or compiled.literal_execute_params or compiled.escaped_bind_names:
            raise ValueError(f"{self.statement}: its parameters need Core's own execution")
        names = tuple(compiled.positiontup) if compiled.positional else tuple(compiled.binds)
        if not set(names) <= set(keys):  # a literal's value, say: write it as SQL (literal_column)
            raise ValueError(f"{self.statement}: no value given for {', '.join(sorted(set(names) - set(keys)))}")
        processors = tuple(compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                           for name in names)
        return _Form(compiled.string, names, processors, compiled.positional)


def _convert(form: _Form, row: dict) -> tuple | dict:
    values = [row[name] if process is None else process(row[name])
              for name, process in zip(form.names, form.processors)]
    return tuple(values) if form.positional else dict(zip(form.names, values))
