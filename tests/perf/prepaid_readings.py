"""What charging prepaid meters adds to ``core:record_reading`` per reading, on PostgreSQL.

    .venv/bin/python tests/perf/prepaid_readings.py [--batches 30] [--batch 500] [--meters 1000]

The city and the batches of ``bench/readings_handler.py`` (its ``seed`` and ``next_batches``: 1000
meters on active residential accounts with 90 days of daily readings; batches of 500 readings, one per
meter or five hourly per meter, 1 % spikes), measured the same way (one committed transaction per
batch, the collector tuned as in a worker). Two cities, each in a fresh database:

* ``postpaid``: every account postpaid, as in the benchmark;
* ``prepaid``: every account prepaid (balances large enough that no valve closes), so every accepted
  reading is priced, deducted and written to the ledger when charging is on.

In each city the batches alternate between the handler table built without ``[core.prepaid]`` (what
main runs: ``off``) and with it (``on``), so both see the same database and the same moment of a
shared machine; the first two batches of each are not counted. Printed: the median over the batches
of wall time and of this process's CPU time, in µs per reading, and the difference ``on − off``.
A script, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.pgdb import drop_database, fresh_database
from bench.readings_handler import DEFAULT_PG, next_batches, seed
from core.config import CoreConfig
from core.db.tables_accounts import account
from core.db.tables_billing import meter
from core.handlers import build_handlers
from core.messages import Incoming
from core.prepaid import PrepaidSettings
from core.tariffs import TariffShelf, add_versions
from hub.billing import load_tariffs
from hub.cli import tune_gc
from hub.migrations import upgrade_async

SHAPES = (("one", "one per meter"), ("five", "five per meter"))


async def timed(engine: AsyncEngine, fn: Callable[..., Awaitable[object]], batch: list[Incoming]
                ) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    async with engine.begin() as conn:
        await fn(conn, batch)
    return (time.perf_counter() - t0) / len(batch) * 1e6, (time.process_time() - c0) / len(batch) * 1e6


async def city(pg: str, kind: str, batches: int, size: int, meters: int) -> None:
    url = await fresh_database(pg, "gh_bench_rd")
    engine = create_async_engine(url)
    try:
        await upgrade_async(url)
        last = await seed(engine, meters)
        if kind == "prepaid":
            async with engine.begin() as conn:
                await conn.execute(update(account).values(billing="prepaid"))
                await conn.execute(update(meter).values(prepaid_balance=Decimal("1000000.00")))
        async with engine.begin() as conn:  # the shipped book, read from the database batch by batch as the hub does
            await add_versions(conn, load_tariffs(Path("config/tariffs.toml")).versions, by="perf",
                               now=datetime.now(UTC))
        off = build_handlers(CoreConfig())["record_reading"].fn
        on = build_handlers(CoreConfig(prepaid=PrepaidSettings(enabled=True),
                                       tariffs=TariffShelf()))["record_reading"].fn
        for shape, label in SHAPES:
            todo = next_batches(last, shape, size, 2 * (batches + 2), 0)
            tune_gc()
            runs: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
            for n, batch in enumerate(todo):
                name = "off" if n % 2 == 0 else "on"
                runs[name].append(await timed(engine, off if name == "off" else on, batch))
            med = {k: (statistics.median(w for w, _ in v[2:]), statistics.median(c for _, c in v[2:]))
                   for k, v in runs.items()}
            print(f"{kind:8s} {label:15s} wall off {med['off'][0]:6.1f} on {med['on'][0]:6.1f} "
                  f"({med['on'][0] - med['off'][0]:+6.1f})   CPU off {med['off'][1]:6.1f} on {med['on'][1]:6.1f} "
                  f"({med['on'][1] - med['off'][1]:+6.1f}) µs/reading", flush=True)
    finally:
        await engine.dispose()
        await drop_database(pg, url)


async def main(pg: str, batches: int, size: int, meters: int) -> None:
    for kind in ("postpaid", "prepaid"):
        await city(pg, kind, batches, size, meters)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--pg", default=DEFAULT_PG)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--meters", type=int, default=1000)
    a = p.parse_args()
    asyncio.run(main(a.pg, a.batches, a.batch, a.meters))
