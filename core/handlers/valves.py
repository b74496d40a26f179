"""Record what meters report about their valves, and keep ``core_meter.valve_state`` current.

Each report is stored once (``core_valve_event``). The meter's state becomes the state of its latest
report: a report older than one already stored does not overwrite it, whatever order they arrive in.
The reading rules read that state (use while the valve is closed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

from sqlalchemy import bindparam, exists, update
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from core.catalogue.messages import ValveStateReported
from core.db.bulk import insert_many
from core.db.tables import valve_event
from core.db.tables_billing import meter
from core.db.types import UTCDateTime
from core.messages import Incoming

_later = valve_event.alias("later")
_SET_STATE = (
    update(meter)
    .where(
        meter.c.id == bindparam("m"),
        ~exists().where(_later.c.meter_id == bindparam("m"),
                        _later.c.observed_at > bindparam("at", type_=UTCDateTime())),
    )
    .values(valve_state=bindparam("state"))
)


async def record_valve_state(
    conn: AsyncConnection, items: Sequence[Incoming]
) -> Sequence[Mapping[str, Any] | None]:
    rows = []
    latest: dict[str, ValveStateReported] = {}
    for item in items:
        v = item.data
        assert isinstance(v, ValveStateReported)
        rows.append(
            {
                "id": str(ULID()),
                "meter_id": v.meter_id,
                "state": v.state.value,
                "command_id": v.command_id,
                "observed_at": v.observed_at.astimezone(UTC),
                "message_id": item.message_id,
            }
        )
        if v.meter_id not in latest or v.observed_at > latest[v.meter_id].observed_at:
            latest[v.meter_id] = v
    await insert_many(conn, valve_event, rows, ignore_conflicts=True)
    if latest:
        await conn.execute(_SET_STATE, [
            {"m": v.meter_id, "at": v.observed_at, "state": v.state.value} for v in latest.values()
        ])
    return [None] * len(items)
