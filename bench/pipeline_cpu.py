"""The route pipeline's CPU per message, without a broker: the steady measure behind issue 2's ratio.

    .venv/bin/python bench/pipeline_cpu.py [--batches 60] [--batch 1000]

``bench/hub_vs_raw.py`` measures the whole flow, and on a shared machine its figures move by a fifth
from one run to the next (the broker's and the worker's CPU per message rise and fall together). This
measures only what the worker adds per message: the route of ``hub_vs_raw.py`` (``vendor.demo.reading``
→ mapping ``vendor-meter-reading@2`` → ``core:record_reading``) built by ``Hub.build`` on a fresh
PostgreSQL database with the in-memory transport, and ``RoutePipeline.handle`` called with batches of
deliveries as the consumer hands them over: envelope parse, mapping, validation, the ledger, the
reading, the message store and the audit hops in one transaction, metrics. Printed: this process's
CPU time per message over the batches (min, quartile, median; the first four warm up and are not
counted) and the wall time, which includes PostgreSQL's share. Compare figures of one machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.hub_publisher import reading_envelopes  # noqa: E402
from bench.hub_vs_raw import CONFIG, ROUTE  # noqa: E402
from bench.pgdb import drop_database, fresh_database  # noqa: E402

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
WARM_UP = 4


async def main(pg: str, batches: int, size: int) -> None:
    from hub.app import Hub
    from hub.cli import tune_gc
    from hub.migrations import upgrade_async
    from hub.settings import load_settings
    from hub.transport.base import Delivery
    from hub.transport.memory import MemoryTransport

    url = await fresh_database(pg, "gh_bench_pipe")
    with tempfile.TemporaryDirectory(prefix="gashub-pipeline-") as tmp:
        routes = Path(tmp) / "routes"
        routes.mkdir()
        (routes / "bench.toml").write_text(ROUTE)
        config = Path(tmp) / "bench.toml"
        config.write_text(CONFIG)
        os.environ.update(GASHUB_CONFIG=str(config), GASHUB_ROUTES_DIR=str(routes), GASHUB_DATABASE_URL=url,
                          GASHUB_MAPPINGS_DIR=str(REPO / "mappings"), GASHUB_LOG_LEVEL="WARNING")
        os.environ.pop("GASHUB_AMQP_URL", None)
        hub = None
        try:
            await upgrade_async(url)
            hub = Hub.build(load_settings(), transport=MemoryTransport())
            pipeline = hub.runtimes["bench"].pipeline
            deliveries = [Delivery(out.body, out.routing_key, out.message_id, dict(out.headers), False, i + 1, "bench")
                          for i, out in enumerate(reading_envelopes((batches + WARM_UP) * size, "bench"))]
            tune_gc()
            cpu: list[float] = []
            wall: list[float] = []
            for b in range(batches + WARM_UP):
                batch = deliveries[b * size:(b + 1) * size]
                c0, w0 = time.process_time(), time.perf_counter()
                await pipeline.handle(batch)
                cpu.append((time.process_time() - c0) / size * 1e6)
                wall.append((time.perf_counter() - w0) / size * 1e6)
            cpu, wall = cpu[WARM_UP:], wall[WARM_UP:]
            print(f"route pipeline, {batches} batches of {size:,} vendor readings into PostgreSQL, no broker")
            print(f"CPU µs per message: min {min(cpu):.1f}, first quartile {statistics.quantiles(cpu, n=4)[0]:.1f}, "
                  f"median {statistics.median(cpu):.1f}")
            print(f"wall µs per message (PostgreSQL included): median {statistics.median(wall):.1f}")
        finally:
            if hub is not None:
                await hub.db.aclose()
            await drop_database(pg, url)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg", default=os.environ.get("GASHUB_BENCH_DATABASE_URL", DEFAULT_PG))
    p.add_argument("--batches", type=int, default=60, help="measured batches (default 60; four more warm up)")
    p.add_argument("--batch", type=int, default=1000, help="messages per batch (default 1,000, as hub_vs_raw.py)")
    a = p.parse_args()
    asyncio.run(main(a.pg, a.batches, a.batch))
