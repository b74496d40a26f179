"""Messages per second through the hub against the raw broker floor, in one run on this machine.

    .venv/bin/python bench/hub_vs_raw.py [-n 100000]

(a) the raw floor: pika alone, persistent messages on a durable queue, pipelined publisher confirms
    (a window of unconfirmed messages), a consumer with prefetch and batched acks, publisher and
    consumer running at once; measured twice (both in one process, as ``shared/perf/pika_floor.py``
    does, and in two processes) and the better figure is the floor;
(b) the hub pipeline: a publisher process publishing vendor readings through the hub's
    ``PikaTransport`` with confirms, and a ``gashub worker`` process running the route
    ``vendor.demo.reading → mapping vendor-meter-reading@2 → core:record_reading`` (a row per
    reading in PostgreSQL, the processed ledger, the message store and the audit hop chain, then
    the ack), in batches of up to 1,000 messages (route ``batch`` and ``consumer.max_batch``).
    The publisher runs ahead of the worker; ``--max-ready N`` makes it keep at most about N
    ready messages in the route's queue instead, as a partner under flow control would (measured: the
    broker's CPU per message stays about twice the raw floor's either way, see docs/performance.md).

Both are timed from the first publish to the last message settled, over the same number of
messages. The machine is shared, so the measurements run in interleaved rounds (raw, raw, hub; three
by default) and the best raw figure is compared with the best hub figure; the script prints every
round, the medians, both best rates and ``ratio hub/raw: X.XX``. The hub's end is seen from the
audit head's sequence number (one row), never by counting rows, which would load the database that
is being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.pgdb import drop_database, fresh_database  # noqa: E402

ROUTE = """
[[route]]
name = "bench"
from = "vendor.demo.reading"
map = "vendor-meter-reading@2"
to = "core:record_reading"
retry = { max_attempts = 3, backoff = ["1s"] }
batch = 1000
"""
# Batches of up to 1,000 (the defaults are 500): the route's and the consumer's cap, as a reading route
# under load would be configured. Fixed costs per batch (a transaction and about fifteen statements)
# are then spread over twice the messages: about a tenth less worker CPU per message (measured
# 2026-11-28 with the pipeline alone, docs/performance.md).
_CONSUMER = "# benchmark: no connectors\n[consumer]\nmax_batch = 1000\n"
CONFIG = _CONSUMER + "[core.readings]\nrun_rules = false\n"
"""The hub's settings for the benchmark: record_reading with its validation rules off."""


def run_raw(n: int, mode: str, amqp: str) -> tuple[float, dict[str, float]]:
    before = cpu_by_process({})
    out = subprocess.run([sys.executable, str(REPO / "bench" / "raw_floor.py"), "--mode", mode, "-n", str(n),
                          "--amqp", amqp], capture_output=True, text=True, check=True)
    after = cpu_by_process({})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    cpu = {"python": result["cpu_s"] / n * 1e6, "rabbitmq": (after["rabbitmq"] - before["rabbitmq"]) / n * 1e6}
    return float(result["rate"]), cpu


async def wait_for_consumer(amqp: str, queue: str, worker: subprocess.Popen[bytes], at_least: int = 1) -> None:
    from hub.errors import HubError
    from hub.transport.pika import PikaTransport

    probe = PikaTransport(amqp, name="bench-probe")
    await probe.connect()
    try:
        for _ in range(600):
            if worker.poll() is not None:
                raise RuntimeError("the worker exited before it started consuming")
            try:
                if (await probe.queue_info(queue)).consumers >= at_least:
                    return
            except HubError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("the worker did not start consuming within 60 s")
    finally:
        await probe.aclose()


def delete_topology(amqp: str, exchange: str, queues: list[str]) -> None:
    """Leave the broker as it was: the run's queues and exchange go."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(amqp))
    try:
        channel = connection.channel()
        for queue in queues:
            channel.queue_delete(queue)
        channel.exchange_delete(exchange)
    finally:
        connection.close()


def cpu_by_process(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by the named processes and by the broker and database servers (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")

    def cpu(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick

    out = {name: cpu(pid) for name, pid in pids.items()}
    for name, comm in (("rabbitmq", "beam.smp"), ("postgresql", "postgres")):
        total = 0.0
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if (proc / "comm").read_text().strip() == comm:
                        total += cpu(int(proc.name))
                except OSError:
                    continue
        out[name] = total
    return out


async def run_hub(n: int, amqp: str, pg: str, workdir: Path, workers: int = 1, max_ready: int = 0) -> dict[str, Any]:
    from hub.migrations import upgrade_async

    url = await fresh_database(pg)
    suffix = uuid.uuid4().hex[:6]
    routes = workdir / "routes"
    routes.mkdir()
    (routes / "bench.toml").write_text(ROUTE)
    config = workdir / "bench.toml"
    # No connectors and one route. Issue 2 measures the hub with a core target that writes a row:
    # record_reading with its validation rules off (GASHUB_BENCH_VEE=1 turns them on, events off).
    if os.environ.get("GASHUB_BENCH_VEE"):
        config.write_text(_CONSUMER + "[core.readings]\nflag_events = false\nraise_alarms = false\nnotify = []\n")
    else:
        config.write_text(CONFIG)
    env = {**os.environ, "GASHUB_CONFIG": str(config), "GASHUB_DATABASE_URL": url, "GASHUB_AMQP_URL": amqp,
           "GASHUB_EXCHANGE": f"bench.{suffix}", "GASHUB_QUEUE_PREFIX": f"bench.{suffix}",
           "GASHUB_ROUTES_DIR": str(routes), "GASHUB_MAPPINGS_DIR": str(REPO / "mappings"),
           "GASHUB_LOG_LEVEL": "WARNING"}
    worker_log = open(workdir / "worker.log", "w")  # noqa: SIM115 - closed below
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await upgrade_async(url)
        command = [sys.executable, "-m", "hub.cli", "worker"]
        if os.environ.get("GASHUB_BENCH_PROFILE"):  # py-spy's collapsed stacks of the worker, for tuning
            command = ["py-spy", "record", "-r", "200", "-f", "raw", "-o", os.environ["GASHUB_BENCH_PROFILE"],
                       "--", *command]
        for _ in range(workers):
            procs.append(subprocess.Popen(command, env=env, cwd=REPO, stdout=worker_log, stderr=subprocess.STDOUT))
        for proc in procs:
            await wait_for_consumer(amqp, f"bench.{suffix}.route.bench", proc, at_least=len(procs))
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, str(REPO / "bench" / "hub_publisher.py"), "-n", str(n),
            "--queue", f"bench.{suffix}.route.bench", "--max-ready", str(max_ready),
            *os.environ.get("GASHUB_BENCH_PUBLISHER_ARGS", "").split(), env=env, cwd=REPO,
            stdout=asyncio.subprocess.PIPE)
        assert publisher.stdout is not None
        ready = await publisher.stdout.readline()  # the publisher says when its envelopes are built
        assert ready.strip() == b"ready", ready
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            t_start_line = await publisher.stdout.readline()
            started = float(json.loads(t_start_line)["started"])
            pids = {f"worker{i + 1}" if workers > 1 else "worker": p.pid for i, p in enumerate(procs)}
            pids["publisher"] = publisher.pid
            cpu_before = cpu_by_process(pids)
            done = 0
            deadline = time.time() + 600
            while done < n:
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"a worker died; see {workdir / 'worker.log'}")
                if time.time() > deadline:
                    raise RuntimeError(f"only {done} of {n} settled after 10 minutes")
                # The audit head's sequence number counts the settled messages (one hop each, committed
                # with the batch): a one-row read. Counting core_reading here instead would scan up to
                # n rows fifty times a second, and that scan would be measured as the hub's cost.
                done = int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM hub_audit_head"))
                if done < n:
                    await asyncio.sleep(0.02)
            finished = time.time()
            cpu_after = cpu_by_process(pids)
            pub = json.loads(await publisher.stdout.readline())
            await publisher.wait()
            readings = int(await conn.fetchval("SELECT count(*) FROM core_reading"))
            hops = int(await conn.fetchval("SELECT count(*) FROM hub_hop"))
            stored = int(await conn.fetchval("SELECT count(*) FROM hub_message"))
            ledger = int(await conn.fetchval("SELECT count(*) FROM hub_processed"))
            # Every hop of one batch carries the batch's time stamp.
            batches = int(await conn.fetchval("SELECT count(DISTINCT at_us) FROM hub_hop"))
        finally:
            await conn.close()
        cpu_us = {k: (cpu_after[k] - cpu_before.get(k, 0.0)) / n * 1e6 for k in cpu_after}
        cpu_us["publisher"] = pub["cpu_s"] / n * 1e6
        return {"rate": n / (finished - started), "seconds": finished - started, "publish_rate": pub["rate"],
                "paused_batches": pub.get("paused_batches", 0),
                "readings": readings, "hops": hops, "stored": stored, "ledger": ledger, "cpu_us": cpu_us, "batches": batches}
    finally:
        for proc in procs:
            proc.send_signal(2 if os.environ.get("GASHUB_BENCH_PROFILE") else 15)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        worker_log.close()
        await drop_database(pg, url)
        delete_topology(amqp, f"bench.{suffix}", [f"bench.{suffix}.route.bench", f"bench.{suffix}.route.bench.dlq",
                                                  f"bench.{suffix}.route.bench.delay.1000"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100_000, help="messages per measurement (default 100,000)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of (raw one process, raw two processes, hub), interleaved so that both "
                             "see the same machine; the best of each is compared (default 3)")
    parser.add_argument("--workers", type=int, default=1,
                        help="gashub worker processes consuming the route (default 1)")
    parser.add_argument("--max-ready", type=int, default=0,
                        help="the hub's publisher keeps at most about this many ready messages in the route's "
                             "queue, like a partner under flow control (default 0: it runs ahead)")
    parser.add_argument("--amqp", default=os.environ.get("GASHUB_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--pg", default=os.environ.get("GASHUB_BENCH_DATABASE_URL",
                                                       "postgresql+asyncpg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    n = args.n
    print(f"gashub benchmark: {n:,} persistent messages per measurement, publisher and consumer at once, "
          f"{args.rounds} interleaved rounds")
    raws: list[float] = []
    hubs: list[float] = []
    for round_no in range(1, args.rounds + 1):
        print(f"round {round_no}:")
        raw_one, cpu_one = run_raw(n, "one-process", args.amqp)
        print(f"  raw floor, pika, one process (window 1000, acks every 50): {raw_one:>9,.0f} msg/s   "
              f"CPU/msg µs: " + ", ".join(f"{k} {v:.0f}" for k, v in cpu_one.items()))
        raw_two, cpu_two = run_raw(n, "two-processes", args.amqp)
        print(f"  raw floor, pika, two processes:                           {raw_two:>9,.0f} msg/s   "
              f"CPU/msg µs: " + ", ".join(f"{k} {v:.0f}" for k, v in cpu_two.items()))
        with tempfile.TemporaryDirectory(prefix="gashub-bench-") as tmp:
            hub = asyncio.run(run_hub(n, args.amqp, args.pg, Path(tmp), args.workers, args.max_ready))
        print(f"  hub pipeline (publish → route → mapping → core row in PostgreSQL → audit → ack): "
              f"{hub['rate']:>9,.0f} msg/s ({hub['seconds']:.1f} s)")
        pacing = (f"kept ≤ {args.max_ready:,} ready messages ahead ({hub['paused_batches']:,} batches waited)"
                  if args.max_ready else "unpaced")
        print(f"  publisher: {pacing}; it published at {hub['publish_rate']:,.0f} msg/s")
        print("  CPU per message (µs): " + ", ".join(f"{k} {v:.0f}" for k, v in hub["cpu_us"].items()))
        print(f"  batches: {hub['batches']:,} (mean {n / max(1, hub['batches']):.0f} messages)")
        print(f"  checks: {hub['readings']:,} readings, {hub['stored']:,} messages stored, "
              f"{hub['ledger']:,} ledger rows, {hub['hops']:,} audit hops")
        if not hub["readings"] == hub["stored"] == hub["ledger"] == hub["hops"] == n:
            print("  CHECK FAILED: every message must have exactly one reading, stored message, ledger row and hop")
            return 1
        print(f"  this round: ratio {hub['rate'] / max(raw_one, raw_two):.2f}")
        raws.append(max(raw_one, raw_two))
        hubs.append(hub["rate"])
    raw, best_hub = max(raws), max(hubs)
    print(f"median of rounds: raw {statistics.median(raws):,.0f} msg/s, hub {statistics.median(hubs):,.0f} msg/s, "
          f"ratio {statistics.median(hubs) / statistics.median(raws):.2f}")
    print(f"raw floor (best of {len(raws)} rounds): {raw:,.0f} msg/s")
    print(f"hub (best of {len(hubs)} rounds): {best_hub:,.0f} msg/s")
    print(f"ratio hub/raw: {best_hub / raw:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
