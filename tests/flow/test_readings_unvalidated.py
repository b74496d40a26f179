"""``[core.readings] run_rules = false``: readings stored as they come, duplicates and conflicts still
found, nothing emitted — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.catalogue.messages import MeterReading, ReadingSource
from core.db.tables import outbox, reading
from core.errors import Conflict
from core.handlers import CoreConfig, build_handlers
from core.messages import Incoming
from core.readings import ReadingsSettings

T0 = datetime(2026, 11, 1, tzinfo=UTC)
OFF = build_handlers(CoreConfig(readings=ReadingsSettings(run_rules=False)))["record_reading"]


def item(mid: str, meter: str, hours: int, volume: str) -> Incoming:
    data = MeterReading(meter_id=meter, read_at=T0 + timedelta(hours=hours), volume_m3=Decimal(volume),
                        source=ReadingSource.VENDOR)
    return Incoming(mid, "meter.reading", meter, mid, data)


async def run(eng: AsyncEngine, items: list[Incoming]) -> None:
    async with eng.begin() as conn:
        await OFF.fn(conn, items)


async def test_readings_are_stored_unvalidated_and_emit_nothing(engine: AsyncEngine) -> None:
    assert OFF.emits == ()
    # A register going backwards would be flagged by the rules; here it is stored as it comes.
    await run(engine, [item("r1", "M1", 0, "100.000"), item("r2", "M1", 1, "90.000"), item("r3", "M2", 0, "5.000")])
    await run(engine, [item("r1", "M1", 0, "100.000"), item("r4", "M1", 1, "90.000")])  # redelivery, copy
    async with engine.connect() as conn:
        rows = (await conn.execute(select(reading.c.id, reading.c.quality).order_by(reading.c.id))).all()
        events = await conn.scalar(select(func.count()).select_from(outbox))
    assert [tuple(r) for r in rows] == [("r1", "unvalidated"), ("r2", "unvalidated"), ("r3", "unvalidated")]
    assert events == 0


async def test_another_value_for_a_stored_time_is_a_conflict(engine: AsyncEngine) -> None:
    await run(engine, [item("r1", "M1", 0, "100.000")])
    with pytest.raises(Conflict, match=r"already has 100\.000"):
        await run(engine, [item("r9", "M1", 0, "101.000")])
    with pytest.raises(Conflict, match=r"this message says 7\.000"):  # the same time twice in one batch
        await run(engine, [item("r5", "M3", 0, "6.000"), item("r6", "M3", 0, "7.000")])
