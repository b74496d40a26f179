"""The cost of ``core:record_reading`` per reading, on PostgreSQL, in batches of 500.

    .venv/bin/python bench/readings_handler.py [--batches 30] [--batch 500]

A fresh database (migrated) gets a small city: ``--meters`` meters on active residential accounts
(model G2.5, valve open) with 90 days of daily readings each. Then the handler is called the way the
route pipeline calls it (one transaction per batch, committed) with new readings a day after the
last; the batches come in two shapes:

* ``one per meter``: each batch holds one reading for each of 500 meters;
* ``five per meter``: each batch holds five hourly readings for each of 100 meters (in-batch order).

About 1 % of the readings are spikes, so the anomaly path runs too. Printed per shape: the median
and the mean over the batches of wall time and of this process's CPU time, in µs per reading (the
database server's time is in the wall figure, not in the CPU one). The first two batches of each
shape warm caches and are not counted. The collector is tuned as in a worker process
(``hub.cli.tune_gc``) unless ``--default-gc`` is given: with the default thresholds a full collection
lands on about one batch in seven and triples its cost.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from ulid import ULID

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pgdb import drop_database, fresh_database
from core.catalogue.messages import MeterReading, ReadingSource
from core.db.tables import reading
from core.db.tables_accounts import account, customer, premises
from core.db.tables_billing import meter
from core.handlers import HANDLERS
from core.messages import Incoming
from hub.cli import tune_gc
from hub.migrations import upgrade_async

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
START = datetime(2026, 6, 1, 16, tzinfo=UTC)
HISTORY_DAYS = 90
DAILY = Decimal("1.200")


def meter_id(n: int) -> str:
    return f"31{n:012d}"


async def seed(engine: AsyncEngine, meters: int) -> dict[str, tuple[datetime, Decimal]]:
    """Accounts, meters and 90 days of daily readings; returns each meter's last reading."""
    opened = START - timedelta(days=HISTORY_DAYS + 1)
    last: dict[str, tuple[datetime, Decimal]] = {}
    async with engine.begin() as conn:
        await conn.execute(insert(customer), [{
            "id": "C1", "name_enc": "x", "phone_enc": "x", "id_number_enc": "x", "phone_bidx": "p",
            "id_number_bidx": "i", "created_at": opened}])
        await conn.execute(insert(premises), [{
            "id": "P1", "address_enc": "x", "district": "yuecheng", "lat": 30.0, "lon": 120.58, "created_at": opened}])
        await conn.execute(insert(account), [
            {"id": f"A{n}", "account_number": f"SX{n:011d}", "category": "residential", "subcategory": None,
             "billing": "postpaid", "status": "active", "premises_id": "P1", "customer_id": "C1", "opened_at": opened}
            for n in range(meters)])
        await conn.execute(insert(meter), [
            {"id": meter_id(n), "account_id": f"A{n}", "model": "G2.5", "installed_at": date(2025, 1, 1),
             "replace_by": None, "valve_state": "open", "prepaid_balance": Decimal("0.00")}
            for n in range(meters)])
        rows = []
        for n in range(meters):
            volume = Decimal(100 + n)
            for day in range(HISTORY_DAYS):
                at = START - timedelta(days=HISTORY_DAYS - day)
                volume += DAILY
                rows.append({"id": str(ULID()), "meter_id": meter_id(n), "read_at": at, "volume_m3": volume,
                             "source": "ctwing", "quality": "valid", "message_id": f"seed-{n}-{day}"})
            last[meter_id(n)] = (rows[-1]["read_at"], volume)
        for i in range(0, len(rows), 5000):
            await conn.execute(insert(reading), rows[i:i + 5000])
    return last


def item(meter: str, at: datetime, volume: Decimal) -> Incoming:
    mid = str(ULID())
    data = MeterReading(meter_id=meter, read_at=at, volume_m3=volume, source=ReadingSource.CTWING)
    return Incoming(mid, "meter.reading", meter, mid, data)


def next_batches(last: dict[str, tuple[datetime, Decimal]], shape: str, size: int, count: int,
                 start: int) -> list[list[Incoming]]:
    """``count`` batches; every 100th reading uses twenty days' gas in a day (a spike)."""
    batches = []
    meters = sorted(last)
    cursor = start
    per_meter = 1 if shape == "one" else 5
    width = size // per_meter
    for _ in range(count):
        batch = []
        for k in range(width):
            m = meters[(cursor + k) % len(meters)]
            at, volume = last[m]
            for j in range(per_meter):
                step = timedelta(days=1) if per_meter == 1 else timedelta(hours=1)
                at = at + step if j or per_meter == 1 else at + timedelta(days=1)
                use = DAILY / (1 if per_meter == 1 else 24)
                if len(batch) % 100 == 99:
                    use = DAILY * 20
                volume += use.quantize(Decimal("0.001"))
                batch.append(item(m, at, volume))
            last[m] = (at, volume)
        cursor += width
        batches.append(batch)
    return batches


async def measure(engine: AsyncEngine, batches: list[list[Incoming]]) -> tuple[list[float], list[float]]:
    fn = HANDLERS["record_reading"].fn
    wall: list[float] = []
    cpu: list[float] = []
    for batch in batches:
        t0, c0 = time.perf_counter(), time.process_time()
        async with engine.begin() as conn:
            await fn(conn, batch)
        wall.append((time.perf_counter() - t0) / len(batch) * 1e6)
        cpu.append((time.process_time() - c0) / len(batch) * 1e6)
    return wall[2:], cpu[2:]


async def main(pg: str, batches: int, size: int, meters: int, default_gc: bool) -> None:
    url = await fresh_database(pg, "gh_bench_rd")
    engine = create_async_engine(url)
    try:
        await upgrade_async(url)
        last = await seed(engine, meters)
        print(f"seeded {meters} meters × {HISTORY_DAYS} daily readings; batches of {size}")
        for shape, label in (("one", "one per meter"), ("five", "five per meter")):
            todo = next_batches(last, shape, size, batches + 2, 0)
            if not default_gc:
                tune_gc()
            wall, cpu = await measure(engine, todo)
            print(f"{label:15s} wall µs/reading: median {statistics.median(wall):6.1f} mean {statistics.mean(wall):6.1f}"
                  f"   CPU µs/reading: median {statistics.median(cpu):6.1f} mean {statistics.mean(cpu):6.1f}")
    finally:
        await engine.dispose()
        await drop_database(pg, url)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--pg", default=DEFAULT_PG)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--meters", type=int, default=1000)
    p.add_argument("--default-gc", action="store_true", help="leave the collector's thresholds at Python's defaults")
    a = p.parse_args()
    asyncio.run(main(a.pg, a.batches, a.batch, a.meters, a.default_gc))
