"""Reading and writing prepaid meters' state (``core_meter.prepaid_*``) for a batch, in one statement
each. On PostgreSQL the statements go straight to asyncpg with the batch as one array per column, as
``record_reading``'s context reads do (they run for every batch with prepaid meters, and SQLAlchemy's
per-row work would cost more than the rest of the charging); elsewhere through SQLAlchemy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.billing.money import ZERO_MONEY, ZERO_VOLUME
from core.db.tables_billing import meter
from core.db.types import UTCDateTime
from core.prepaid.pricing import CycleUse

RESIDUE = Decimal("0.000000001")


@dataclass(frozen=True, slots=True)
class MeterState:
    """A prepaid meter's balance and pricing state (see ``core.db.tables_billing.meter``)."""

    balance: Decimal
    read_at: datetime | None
    read_m3: Decimal | None
    cycle: CycleUse
    residue: Decimal
    low_notified: bool


_COLUMNS = ("id", "prepaid_balance", "prepaid_read_at", "prepaid_read_m3", "prepaid_cycle_start", "prepaid_cycle_m3",
            "prepaid_residue", "prepaid_low_notified")
_PG_LOCK = f"SELECT {', '.join(_COLUMNS)} FROM core_meter WHERE id = ANY($1::varchar[]) ORDER BY id FOR UPDATE"  # noqa: S608
_PG_SAVE = """
UPDATE core_meter AS m SET prepaid_balance = u.balance, prepaid_read_at = u.read_at, prepaid_read_m3 = u.read_m3,
       prepaid_cycle_start = u.cycle_start, prepaid_cycle_m3 = u.cycle_m3, prepaid_residue = u.residue,
       prepaid_low_notified = u.low_notified
  FROM unnest($1::varchar[], $2::numeric[], $3::timestamptz[], $4::numeric[], $5::date[], $6::numeric[],
              $7::numeric[], $8::boolean[]) AS u(id, balance, read_at, read_m3, cycle_start, cycle_m3, residue,
                                                 low_notified)
 WHERE m.id = u.id
"""
_SAVE = (
    update(meter)
    .where(meter.c.id == bindparam("m"))
    .values(prepaid_balance=bindparam("balance"), prepaid_read_at=bindparam("read_at", type_=UTCDateTime()),
            prepaid_read_m3=bindparam("read_m3"), prepaid_cycle_start=bindparam("cycle_start"),
            prepaid_cycle_m3=bindparam("cycle_m3"), prepaid_residue=bindparam("residue"),
            prepaid_low_notified=bindparam("low_notified"))
)


def _state(row: Sequence[Any]) -> MeterState:
    _, balance, read_at, read_m3, cycle_start, cycle_m3, residue, low = row
    return MeterState(Decimal(balance).quantize(ZERO_MONEY), read_at,
                      None if read_m3 is None else Decimal(read_m3).quantize(ZERO_VOLUME),
                      CycleUse(cycle_start, Decimal(cycle_m3).quantize(ZERO_VOLUME)),
                      Decimal(residue).quantize(RESIDUE), bool(low))


async def lock_states(conn: AsyncConnection, meter_ids: Sequence[str]) -> dict[str, MeterState]:
    """The meters' state, their rows locked until the transaction ends (in id order, as
    ``record_payment`` locks them, so the two never wait on each other in a circle)."""
    ids = sorted(set(meter_ids))
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        rows: Sequence[Sequence[Any]] = await raw.driver_connection.fetch(_PG_LOCK, ids)  # type: ignore[union-attr]
    else:
        stmt = select(*(meter.c[n] for n in _COLUMNS)).where(meter.c.id.in_(ids)).order_by(meter.c.id)
        rows = (await conn.execute(stmt.with_for_update())).all()
    return {row[0]: _state(row) for row in rows}


async def save_states(conn: AsyncConnection, states: dict[str, MeterState]) -> None:
    """Write the meters' new state (rows locked by :func:`lock_states`)."""
    if not states:
        return
    if conn.dialect.name == "postgresql":
        items = sorted(states.items())
        raw = await conn.get_raw_connection()
        await raw.driver_connection.execute(  # type: ignore[union-attr]
            _PG_SAVE, [m for m, _ in items], [s.balance for _, s in items], [s.read_at for _, s in items],
            [s.read_m3 for _, s in items], [s.cycle.start for _, s in items], [s.cycle.used_m3 for _, s in items],
            [s.residue for _, s in items], [s.low_notified for _, s in items])
        return
    await conn.execute(_SAVE, [
        {"m": m, "balance": s.balance, "read_at": s.read_at, "read_m3": s.read_m3, "cycle_start": s.cycle.start,
         "cycle_m3": s.cycle.used_m3, "residue": s.residue, "low_notified": s.low_notified}
        for m, s in states.items()
    ])


__all__ = ["RESIDUE", "MeterState", "lock_states", "save_states"]
