"""What ``record_reading`` reads before it validates a batch, in a few set-based queries.

Per batch, whatever its size:

1. the meters of the batch with their account (model, valve state, account status, category and
   billing: prepaid meters are charged after the insert, ``core.prepaid``);
2. per meter, from ``core_reading``: every stored reading from the previous accepted one through
   the batch's last time (the baseline, estimates made since, what is already stored at the batch's
   times) and the *anchor*: the latest accepted reading before the previous one and at least
   ``history_window`` before the meter's first reading in the batch, or else (a young meter) its
   first accepted reading. From anchor to previous reading runs the average daily use, and as far
   back the zero-use run is traced.

Only when the batch needs them: the time each closed valve was last reported (meters whose valve is
closed), the accepted readings of the last day (readings that may complete a day of continuous
flow), open leak alarms and the holders' phone numbers (readings that raise or notify).

*Accepted* means an actual reading (not an estimate) whose quality is not ``suspect``: a reading
that broke a rule is no baseline until an operator accepts it. Each query gets the batch as one
parameter per column (``unnest`` of arrays on PostgreSQL, ``json_each`` on SQLite), so its text and
its prepared statement are the same for every batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Executable, Integer, Numeric, String, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue.messages import AlarmKind, ReadingSource
from core.db.bulk import among
from core.db.tables import alarm, valve_event
from core.db.tables_accounts import account, customer
from core.db.tables_billing import meter
from core.db.types import UTCDateTime
from core.readings import CustomerCategory, QualityFlag

SUSPECT_PATTERN = f"%{QualityFlag.SUSPECT.value}%"

_PG_BATCH = (
    "SELECT * FROM unnest(CAST(:b_meter AS VARCHAR[]), CAST(:b_lo AS TIMESTAMP WITH TIME ZONE[]), "
    "CAST(:b_hi AS TIMESTAMP WITH TIME ZONE[]), CAST(:b_cut AS TIMESTAMP WITH TIME ZONE[])) AS t(meter_id, lo, hi, cut)"
)
_SQLITE_BATCH = (
    "SELECT json_extract(value, '$[0]') AS meter_id, json_extract(value, '$[1]') AS lo, "
    "json_extract(value, '$[2]') AS hi, json_extract(value, '$[3]') AS cut FROM json_each(:b_json)"
)

_READINGS_SQL = """
WITH b AS ({batch}),
p AS MATERIALIZED (
  SELECT b.meter_id, b.lo, b.hi, b.cut,
    (SELECT max(r.read_at) FROM core_reading r
      WHERE r.meter_id = b.meter_id AND r.read_at < b.lo
        AND r.source <> 'estimate' AND r.quality NOT LIKE :suspect) AS prev_at
  FROM b
),
q AS (
  SELECT p.meter_id, p.lo, p.hi, p.prev_at,
    COALESCE(
      (SELECT max(r.read_at) FROM core_reading r
        WHERE r.meter_id = p.meter_id AND r.read_at <= p.cut AND r.read_at < p.prev_at
          AND r.source <> 'estimate' AND r.quality NOT LIKE :suspect),
      (SELECT min(r.read_at) FROM core_reading r
        WHERE r.meter_id = p.meter_id AND r.read_at < p.prev_at
          AND r.source <> 'estimate' AND r.quality NOT LIKE :suspect)) AS anchor_at
  FROM p
)
SELECT 1 AS anchor, r.meter_id, r.read_at, r.volume_m3, r.source, r.quality
  FROM q JOIN core_reading r ON r.meter_id = q.meter_id AND r.read_at = q.anchor_at
UNION ALL
SELECT 0, r.meter_id, r.read_at, r.volume_m3, r.source, r.quality
  FROM q JOIN core_reading r ON r.meter_id = q.meter_id
   AND r.read_at >= COALESCE(q.prev_at, q.lo) AND r.read_at <= q.hi
"""

_METERS_SQL = """
WITH b AS ({batch})
SELECT m.id, m.model, m.valve_state, m.account_id, a.status, a.category, a.subcategory, a.billing
  FROM core_meter m LEFT JOIN core_account a ON a.id = m.account_id
 WHERE m.id IN (SELECT meter_id FROM b)
"""

_HISTORY_SQL = """
WITH b AS ({batch})
SELECT r.meter_id, r.read_at, r.volume_m3
  FROM b JOIN core_reading r ON r.meter_id = b.meter_id AND r.read_at >= b.lo AND r.read_at <= b.hi
 WHERE r.source <> 'estimate' AND r.quality NOT LIKE :suspect
 ORDER BY r.meter_id, r.read_at
"""


@dataclass(frozen=True, slots=True)
class MeterFacts:
    """A meter of the batch as ``core_meter`` and ``core_account`` know it."""

    model: str
    valve_state: str
    account_id: str | None
    account_status: str | None
    category: CustomerCategory
    billing: str | None = None
    """``prepaid`` or ``postpaid``; ``None`` for a meter on no account."""

    @property
    def account_active(self) -> bool:
        """A meter on no account (in stock, or its account closed) should register nothing."""
        return self.account_status == "active"


@dataclass(frozen=True, slots=True)
class Stored:
    """A reading already in ``core_reading``."""

    read_at: datetime
    volume_m3: Decimal
    source: ReadingSource
    suspect: bool

    @property
    def accepted(self) -> bool:
        return not self.suspect and self.source is not ReadingSource.ESTIMATE


@dataclass(frozen=True, slots=True)
class Loaded:
    """What the batch's meters have in the database."""

    meters: Mapping[str, MeterFacts]
    anchors: Mapping[str, Stored]
    recent: Mapping[str, list[Stored]]
    """Per meter, in time order: from the previous accepted reading through the batch's last time."""


@dataclass(frozen=True, slots=True)
class Span:
    """One meter's part of a query: ``lo`` to ``hi``, and ``cut`` for the anchor."""

    meter_id: str
    lo: datetime
    hi: datetime
    cut: datetime


_CATEGORIES = {c.value: c for c in CustomerCategory}


def category_of(category: str | None, subcategory: str | None) -> CustomerCategory:
    """The rules' customer category of an account (a non-residential one without a known
    subcategory counts as commercial)."""
    if category != "non_residential":
        return CustomerCategory.RESIDENTIAL
    return _CATEGORIES.get(subcategory or "", CustomerCategory.COMMERCIAL)


_PARAMS = ("b_meter", "b_lo", "b_hi", "b_cut", "suspect")


@lru_cache(maxsize=8)
def _pg_query(template: str) -> tuple[str, int]:
    """A query above for asyncpg: the batch source in place, ``$n`` parameters; and how many."""
    sql = template.replace("{batch}", _PG_BATCH)
    count = 0
    for n, name in enumerate(_PARAMS, 1):
        if f":{name}" in sql:
            sql, count = sql.replace(f":{name}", f"${n}"), n
    return sql, count


_SQLITE_TYPES: dict[str, Any] = {
    "anchor": Integer(), "meter_id": String(), "read_at": UTCDateTime(), "volume_m3": Numeric(14, 3),
    "source": String(), "quality": String(),
}


@lru_cache(maxsize=8)
def _sqlite_query(template: str, typed: tuple[str, ...]) -> Executable:
    """A query above for SQLite: the batch source in place, ``typed`` result columns read through
    their SQLAlchemy types (SQLite returns times and decimals as text and floats)."""
    statement = text(template.replace("{batch}", _SQLITE_BATCH))
    return statement.columns(**{n: _SQLITE_TYPES[n] for n in typed}) if typed else statement


async def _fetch(conn: AsyncConnection, template: str, spans: Sequence[Span],
                 typed: tuple[str, ...] = ()) -> Sequence[Sequence[Any]]:
    """The rows of a query above for ``spans``, by position.

    On PostgreSQL the query goes straight to asyncpg in the connection's transaction: these reads run
    for every batch, and SQLAlchemy's result layer cost twice asyncpg's own client CPU for them. The
    batch travels as one array per column.
    """
    if conn.dialect.name == "postgresql":
        sql, count = _pg_query(template)
        args = ([s.meter_id for s in spans], [s.lo for s in spans], [s.hi for s in spans], [s.cut for s in spans],
                SUSPECT_PATTERN)
        raw = await conn.get_raw_connection()
        rows: Sequence[Sequence[Any]] = await raw.driver_connection.fetch(sql, *args[:count])  # type: ignore[union-attr]
        return rows
    if conn.dialect.name == "sqlite":
        # SQLite compares times as the text SQLAlchemy stores them: format them the same way.
        fmt = UTCDateTime().dialect_impl(conn.dialect).bind_processor(conn.dialect)
        assert fmt is not None
        batch = orjson.dumps([[s.meter_id, fmt(s.lo), fmt(s.hi), fmt(s.cut)] for s in spans]).decode()
        return (await conn.execute(_sqlite_query(template, typed), {"b_json": batch, "suspect": SUSPECT_PATTERN})).all()
    raise NotImplementedError(f"record_reading runs on PostgreSQL and SQLite, not {conn.dialect.name}")


_SOURCES = {s.value: s for s in ReadingSource}


def _stored(row: Sequence[Any]) -> Stored:
    """From ``(anchor, meter_id, read_at, volume_m3, source, quality)``."""
    return Stored(row[2], row[3], _SOURCES[row[4]], QualityFlag.SUSPECT.value in row[5])


async def load(conn: AsyncConnection, spans: Sequence[Span]) -> Loaded:
    """Meters, anchors and recent readings for ``spans`` (one per meter): two queries."""
    meters = {
        m[0]: MeterFacts(m[1], m[2], m[3], m[4], category_of(m[5], m[6]), m[7])
        for m in await _fetch(conn, _METERS_SQL, spans)
    }
    anchors: dict[str, Stored] = {}
    recent: dict[str, list[Stored]] = {}
    for row in await _fetch(conn, _READINGS_SQL, spans, tuple(_SQLITE_TYPES)):
        if row[0]:
            anchors[row[1]] = _stored(row)
        else:
            recent.setdefault(row[1], []).append(_stored(row))
    for rows in recent.values():
        rows.sort(key=lambda s: s.read_at)
    return Loaded(meters, anchors, recent)


async def accepted_history(conn: AsyncConnection, spans: Sequence[Span]) -> dict[str, list[tuple[datetime, Decimal]]]:
    """Accepted readings of each span's meter from ``lo`` through ``hi``, in time order."""
    out: dict[str, list[tuple[datetime, Decimal]]] = {}
    for meter_id, read_at, volume in await _fetch(conn, _HISTORY_SQL, spans, ("meter_id", "read_at", "volume_m3")):
        out.setdefault(meter_id, []).append((read_at, volume))
    return out


async def valve_reported_at(conn: AsyncConnection, meter_ids: Iterable[str]) -> dict[str, datetime]:
    """When each meter last reported its valve (meters that never did are left out). ``core_meter``
    holds the state of that latest report, so the valve has not moved since then."""
    stmt = (
        select(valve_event.c.meter_id, func.max(valve_event.c.observed_at))
        .where(among(conn, valve_event.c.meter_id, sorted(set(meter_ids))))
        .group_by(valve_event.c.meter_id)
    )
    return {m: at for m, at in await conn.execute(stmt)}


async def open_leak_alarms(conn: AsyncConnection, meter_ids: Iterable[str]) -> set[str]:
    """Meters with a leak alarm that no operator has cleared yet."""
    stmt = select(alarm.c.meter_id).where(
        among(conn, alarm.c.meter_id, sorted(set(meter_ids))), alarm.c.kind == AlarmKind.LEAK.value,
        alarm.c.status == "open")
    return set((await conn.execute(stmt)).scalars())


@dataclass(frozen=True, slots=True)
class Holder:
    """Who to tell about a meter: its account and the holder's encrypted phone."""

    account_id: str
    customer_id: str
    phone_enc: str


async def holders(conn: AsyncConnection, meter_ids: Iterable[str]) -> dict[str, Holder]:
    """The current holder of each meter's account (meters on no account are left out)."""
    stmt = (
        select(meter.c.id, account.c.id.label("account_id"), customer.c.id.label("customer_id"), customer.c.phone_enc)
        .join(account, account.c.id == meter.c.account_id)
        .join(customer, customer.c.id == account.c.customer_id)
        .where(among(conn, meter.c.id, sorted(set(meter_ids))))
    )
    return {r.id: Holder(r.account_id, r.customer_id, r.phone_enc) for r in await conn.execute(stmt)}
