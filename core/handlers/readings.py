"""Store meter readings. The full validation rules (VEE) arrive with the domain issue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue.messages import MeterReading
from core.db.bulk import insert_many
from core.db.tables import reading
from core.errors import Conflict
from core.messages import Incoming


async def record_reading(
    conn: AsyncConnection, items: Sequence[Incoming]
) -> Sequence[Mapping[str, Any] | None]:
    """Insert readings. The same meter and time again with the same value is dropped (idempotent);
    with another value it is a ``Conflict`` that an operator resolves from the dead-letter list."""
    rows = []
    for item in items:
        r = item.data
        assert isinstance(r, MeterReading)
        rows.append({"id": item.message_id, "meter_id": r.meter_id, "read_at": r.read_at.astimezone(UTC),
                     "volume_m3": r.volume_m3, "source": r.source.value, "quality": "",
                     "message_id": item.message_id})
    inserted = await insert_many(
        conn, reading, rows, ignore_conflicts=True, returning=("meter_id", "read_at")
    )
    if len(inserted) < len(rows):
        await _check_duplicates(conn, rows, {(m, t.astimezone(UTC)) for m, t in inserted})
    return [None] * len(items)


async def _check_duplicates(
    conn: AsyncConnection, rows: list[dict[str, Any]], inserted: set[tuple[Any, Any]]
) -> None:
    skipped = [row for row in rows if (row["meter_id"], row["read_at"]) not in inserted]
    keys = [(row["meter_id"], row["read_at"]) for row in skipped]
    result = await conn.execute(
        select(reading.c.meter_id, reading.c.read_at, reading.c.volume_m3).where(
            tuple_(reading.c.meter_id, reading.c.read_at).in_(keys)
        )
    )
    stored = {(m, t.astimezone(UTC)): v for m, t, v in result}
    seen: dict[tuple[Any, Any], Any] = {}
    for row in skipped:
        key = (row["meter_id"], row["read_at"])
        value = stored.get(key, seen.get(key))
        if value is not None and value != row["volume_m3"]:
            raise Conflict(
                f"meter {row['meter_id']} already has {value} m³ at {row['read_at'].isoformat()}; "
                f"this message says {row['volume_m3']} m³"
            )
        seen[key] = row["volume_m3"]
