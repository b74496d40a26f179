"""Record what meters report about their valves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from core.catalogue.messages import ValveStateReported
from core.db.bulk import insert_many
from core.db.tables import valve_event
from core.messages import Incoming


async def record_valve_state(
    conn: AsyncConnection, items: Sequence[Incoming]
) -> Sequence[Mapping[str, Any] | None]:
    rows = []
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
    await insert_many(conn, valve_event, rows, ignore_conflicts=True)
    return [None] * len(items)
