"""Several reads in one round trip on PostgreSQL, the same reads one by one elsewhere.

A page such as the account overview needs a dozen small reads (the account, its holders, premises,
statuses, meters, readings, alarms, bills, payments…). Issued one by one, each costs a round trip
and about 150 µs of SQLAlchemy and asyncpg in the server; that, not PostgreSQL, was what capped the
overview (2.3 ms of server CPU a request against 0.35 ms in PostgreSQL). ``Reads`` keeps them as
ordinary SQLAlchemy selects, each parameterised by the same bound parameters, and:

* on PostgreSQL sends **one** statement, ``SELECT (SELECT json_agg(r ORDER BY …) FROM (<read>) r)::text
  AS <name>, …``: one round trip, one snapshot (a single statement sees one consistent state, so it
  needs no transaction), and the rows come back as JSON text (numbers as text, so that a
  ``numeric(12, 2)`` keeps its "72.00") that is turned back into the Python values SQLAlchemy would
  have given, by column type;
* on any other database (SQLite, the embedded default) runs the selects one after another on the
  caller's connection.

Both give ``{name: [row dict, …]}`` with the same keys and values (a test runs both on PostgreSQL and
compares), so the code that builds the page from the rows is one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Date, DateTime, Float, LargeBinary, Numeric, Select, Text, cast, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression
from sqlalchemy.types import TypeDecorator, TypeEngine

Rows = list[dict[str, Any]]
Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class Read:
    """One named select of a combined read."""

    name: str
    stmt: Select[Any]


def _identity(value: Any) -> Any:
    return value


def _decimal(value: Any) -> Decimal:
    return Decimal(value)  # the text PostgreSQL wrote: exact, scale kept


def _bytes(value: Any) -> bytes:
    # PostgreSQL writes bytea into JSON as its hex text form: "\x0a1b…".
    text = str(value)
    if not text.startswith("\\x"):
        raise ValueError(f"expected bytea hex text, got {text[:20]!r}")
    return bytes.fromhex(text[2:])


def _base_converter(type_: TypeEngine[Any]) -> Convert:
    if isinstance(type_, DateTime):
        return datetime.fromisoformat
    if isinstance(type_, Date):
        return date.fromisoformat
    if isinstance(type_, Float):  # not a Numeric in SQLAlchemy 2.0.4x
        return float
    if isinstance(type_, Numeric):
        return _decimal if type_.asdecimal else float
    if isinstance(type_, LargeBinary):
        return _bytes
    return _identity


def _converter(type_: TypeEngine[Any], dialect: Dialect) -> Convert:
    """JSON value → the Python value SQLAlchemy gives for a column of ``type_`` (``None`` stays ``None``)."""
    if isinstance(type_, TypeDecorator):
        inner = _base_converter(type_.impl_instance)
        outer = type_.process_result_value

        def decorated(value: Any) -> Any:
            return outer(inner(value), dialect)

        return decorated
    return _base_converter(type_)


def _order_in(sub: Any, stmt: Select[Any]) -> list[tuple[ColumnElement[Any], bool]]:
    """The select's ORDER BY as (column of its subquery, descending): json_agg then keeps the order."""
    out: list[tuple[ColumnElement[Any], bool]] = []
    for clause in stmt._order_by_clauses:  # the public API has no reader for a select's ORDER BY
        element, modifier = clause, None
        if isinstance(clause, UnaryExpression) and clause.modifier is not None:
            element, modifier = clause.element, clause.modifier
        column = sub.corresponding_column(element)
        if column is None:
            raise ValueError(f"combined read: order by {element} is not among the selected columns; select it")
        out.append((column, modifier is not None and modifier.__name__ == "desc_op"))
    return out


class Reads:
    """A fixed set of named reads over the same bound parameters (see the module's docstring)."""

    def __init__(self, *reads: Read) -> None:
        names = [r.name for r in reads]
        if len(set(names)) != len(names):
            raise ValueError(f"combined read: duplicate names in {names}")
        self._reads = {r.name: r for r in reads}
        self._combined: dict[tuple[str, ...], tuple[Select[Any], dict[str, list[tuple[str, Convert]]]]] = {}
        self._driver: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, list[tuple[str, bool, Any]]]] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._reads)

    def _statement(self, names: tuple[str, ...],
                   dialect: Dialect) -> tuple[Select[Any], dict[str, list[tuple[str, Convert]]]]:
        built = self._combined.get(names)
        if built is None:
            columns = []
            converters: dict[str, list[tuple[str, Convert]]] = {}
            for name in names:
                stmt = self._reads[name].stmt
                sub = stmt.subquery(f"r_{name}")
                # Numbers travel as text, so that a numeric(12, 2) keeps its scale ("72.00") and the JSON
                # can be read by orjson (whose numbers are floats) without losing a digit.
                texts = select(*(cast(c, Text).label(c.key) if isinstance(c.type, Numeric | Float) else c
                                 for c in sub.c)).subquery(f"t_{name}")
                row = texts.table_valued()
                order = [texts.c[str(c.key)].desc() if desc else texts.c[str(c.key)]
                         for c, desc in _order_in(sub, stmt)]
                agg = func.json_agg(aggregate_order_by(row, *order)) if order else func.json_agg(row)
                columns.append(select(cast(agg, Text)).select_from(texts).scalar_subquery().label(name))
                converters[name] = [(c.key, _converter(c.type, dialect)) for c in sub.c]
            built = (select(*columns), converters)
            self._combined[names] = built
        return built

    async def fetch(self, conn: AsyncConnection, params: Mapping[str, Any],
                    only: Iterable[str] | None = None) -> dict[str, Rows]:
        """``{name: rows}`` for the reads named in ``only`` (all by default), in one round trip on
        PostgreSQL."""
        names = self.names if only is None else tuple(n for n in self.names if n in set(only))
        if conn.dialect.name == "postgresql":
            return await self._fetch_combined(conn, params, names)
        return await self.fetch_one_by_one(conn, params, names)

    async def fetch_one_by_one(self, conn: AsyncConnection, params: Mapping[str, Any],
                               names: Sequence[str] | None = None) -> dict[str, Rows]:
        """Each read as its own statement (any database; the reference the combined form must equal)."""
        out: dict[str, Rows] = {}
        for name in self.names if names is None else names:
            result = await conn.execute(self._reads[name].stmt, dict(params))
            out[name] = [dict(r) for r in result.mappings()]
        return out

    def _driver_sql(self, names: tuple[str, ...], dialect: Dialect,
                    params: Mapping[str, Any]) -> tuple[str, list[tuple[str, bool, Any]]]:
        """The combined statement as asyncpg takes it: SQL text with ``$n`` and, for each ``$n``, the
        caller's parameter name or the statement's own constant (limits, ``IN`` lists expanded)."""
        key = (names, tuple(sorted(params)))
        built = self._driver.get(key)
        if built is None:
            stmt, _ = self._statement(names, dialect)
            state = stmt.compile(dialect=dialect).construct_expanded_state(dict(params))
            order = state.positiontup or []
            expanded = [name for name in params if name not in order]
            if expanded:  # a caller's list parameter would change the SQL with its length
                raise ValueError(f"combined read: parameters {expanded} expand; pass single values")
            built = (state.statement, [(name, name in params, state.parameters[name]) for name in order])
            self._driver[key] = built
        sql, slots = built
        return sql, slots

    async def _fetch_combined(self, conn: AsyncConnection, params: Mapping[str, Any],
                              names: tuple[str, ...]) -> dict[str, Rows]:
        _, converters = self._statement(names, conn.dialect)
        raw = (await conn.get_raw_connection()).driver_connection
        if raw is None or not hasattr(raw, "fetchrow"):  # not asyncpg: through SQLAlchemy
            stmt, _ = self._statement(names, conn.dialect)
            row = tuple((await conn.execute(stmt, dict(params))).one())
        else:
            # Straight to asyncpg, which prepares the statement once per connection: SQLAlchemy's
            # execute around the same statement cost twice what the database spends on it. The
            # statement is a single SELECT, its own snapshot, so it needs no transaction.
            sql, slots = self._driver_sql(names, conn.dialect, params)
            row = tuple(await raw.fetchrow(sql, *[params[n] if given else value for n, given, value in slots]))
        out: dict[str, Rows] = {}
        for name, text in zip(names, row, strict=True):
            items = [] if text is None else orjson.loads(text)
            convert = converters[name]
            out[name] = [{key: None if (v := item[key]) is None else fn(v) for key, fn in convert}
                         for item in items]
        return out


async def read_only(conn: AsyncConnection) -> AsyncConnection:
    """``conn`` set up for ``Reads.fetch``: on PostgreSQL in autocommit (the one combined statement is its
    own snapshot, so the ``BEGIN`` and ``ROLLBACK`` round trips are saved); elsewhere unchanged (the
    reads run one by one in the connection's transaction)."""
    if conn.dialect.name == "postgresql":
        return await conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn


__all__ = ["Read", "Reads", "Rows", "read_only"]
