"""Readings per second from CTWing's platform push to a validated reading stored by the core, against
the raw broker floor measured in the same run.

    .venv/bin/python bench/meter_push.py [-n 100000] [--pushers 2] [--concurrency 100]
    .venv/bin/python bench/meter_push.py -n 100000 --pushes 5000  # 100,000 meters, the first 5,000 push
    .venv/bin/python bench/meter_push.py -n 500 --raw-n 2000      # a smoke run

1. A fresh PostgreSQL database gets ``n`` accounts of the benchmark city (``bench/city.py`` through
   ``bench/gen_accounts.py``'s ``COPY`` loader), each with its meter and a year of readings
   (``bench/meter_stack.py``: readings after now are dropped, and each meter's register for today is
   worked out from its own use).
2. The hub runs as in production: ``gashub run`` in its own process on RabbitMQ + PostgreSQL, with
   the repository's meter and notification routes and a CTWing connector that knows all ``n``
   devices (a generated ``config`` file), the core's reading validation (VEE) on, as by default.
3. The raw floor: ``bench/raw_floor.py`` (pika alone at its best, as in ``bench/hub_vs_raw.py``), once in
   one process and once in two, before the pushes and again after them; the best is the floor.
4. ``--pushers`` processes (``bench/ctwing_pusher.py``) POST one pass-through ``dataReport`` per meter,
   as ``CtwingSimulator`` makes them (the meter's real CJ/T 188 ``901F`` reply in ``APPdata``), with
   ``--concurrency`` requests in flight each. The hub answers each push only after the broker
   confirmed it; the ``readings`` route takes ``meter.reading`` to ``core:record_reading``.
5. The rate is from the first push to the last reading stored: the count of the ``readings``
   route's ledger rows (``hub_processed``, written in the transaction that stores the readings)
   reaching ``n``, and the last ledger row's time stamp. Then ``core_reading`` is counted for the
   readings stored by this run, with their quality, and ``ratio push/raw`` is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.gen_accounts import asyncpg_dsn  # noqa: E402
from bench.hub_vs_raw import cpu_by_process, run_raw  # noqa: E402
from bench.meter_stack import (  # noqa: E402
    AMQP_DEFAULT,
    PG_DEFAULT,
    HubConfig,
    RunningHub,
    add_run_routes_argument,
    city_database,
    delete_hub_topology,
    free_port,
    load_average,
    write_devices,
)
from bench.pgdb import drop_database  # noqa: E402


def raw_floor(n: int, amqp: str) -> float:
    one, _ = run_raw(n, "one-process", amqp)
    two, _ = run_raw(n, "two-processes", amqp)
    print(f"  raw floor, pika (window 1000, acks every 50): one process {one:,.0f} msg/s, two processes {two:,.0f} msg/s",
          flush=True)
    return max(one, two)


async def read_pusher(proc: asyncio.subprocess.Process, name: str, out: dict[str, Any]) -> None:
    assert proc.stdout is not None
    async for line in proc.stdout:
        doc = json.loads(line)
        if "started" in doc:
            out.setdefault("started", []).append(doc["started"])
        elif "progress" in doc:
            out.setdefault("progress", {})[name] = doc["progress"]
        elif "done" in doc:
            out.setdefault("done", {})[name] = doc


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from connectors.http_sms.simulator import SmsGatewaySimulator

    print(f"seeding {args.n:,} accounts and meters (seed {args.seed}) …", flush=True)
    url, key, seconds, meters = await city_database(args.pg, args.n, args.seed, kept=args.city_db)
    print(f"  {url.rsplit('/', 1)[1]} ready in {seconds:.1f} s ({args.n / seconds:,.0f} meters/s, with accounts, "
          f"holders and {len(meters):,} meters' reading histories)", flush=True)
    sms = SmsGatewaySimulator(port=free_port())  # started in the try below; its URL is known now
    config = HubConfig(workdir, url, args.amqp, key, free_port(), free_port(), sms.url)
    hub = RunningHub(config, workers=args.workers, run_routes=args.run_routes)
    result: dict[str, Any] = {}
    try:
        await sms.start()
        config.write(meters, {})
        devices = workdir / "devices.jsonl"
        write_devices(devices, meters)
        up = await hub.start()
        print(f"  gashub run ready in {up:.1f} s (CTWing connector with {len(meters):,} devices; "
              f"{args.workers} worker(s), run_routes {hub.run_routes})", flush=True)

        print("raw floor, before the pushes:", flush=True)
        raws = [await asyncio.to_thread(raw_floor, args.raw_n, args.amqp)]

        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            result = await push_all(args, hub, config, devices, min(args.pushes or len(meters), len(meters)), conn)
        finally:
            await conn.close()
        print("raw floor, after the pushes:", flush=True)
        raws.append(await asyncio.to_thread(raw_floor, args.raw_n, args.amqp))
        result["raw"] = max(raws)
        result["raws"] = raws
        return result
    finally:
        hub.stop()
        await sms.aclose()
        if not args.keep_database:
            await drop_database(args.pg, url)
        else:
            print(f"kept database {url.rsplit('/', 1)[1]}")
        delete_hub_topology(config)


async def push_all(args: argparse.Namespace, hub: RunningHub, config: HubConfig, devices: Path, n: int,
                   conn: asyncpg.Connection) -> dict[str, Any]:
    per = (n + args.pushers - 1) // args.pushers
    procs: list[asyncio.subprocess.Process] = []
    state: dict[str, Any] = {}
    for i in range(args.pushers):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(REPO / "bench" / "ctwing_pusher.py"), "--url", config.push_url,
            "--devices", str(devices), "--first", str(i * per), "--count", str(per),
            "--concurrency", str(args.concurrency), cwd=REPO, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        ready = json.loads(await proc.stdout.readline())
        assert "ready" in ready, ready
        procs.append(proc)
    # Every pusher has built its pushes; all start now (each prints its start time).
    print(f"pushing {n:,} dataReports from {args.pushers} pusher process(es), {args.concurrency} in flight each "
          f"(load average {load_average()})", flush=True)
    pids = hub.pids  # the pushers report their own CPU time
    cpu_before = cpu_by_process(pids)
    readers = [asyncio.create_task(read_pusher(p, f"pusher{i + 1}", state)) for i, p in enumerate(procs)]
    done = 0
    last_change, last_done = time.time(), -1
    while done < n:
        await asyncio.sleep(1.0)
        if not hub.alive():
            raise RuntimeError(f"gashub run died; see {hub.log_path}")
        done = int(await conn.fetchval("SELECT count(*) FROM hub_processed WHERE route = 'readings'"))
        answered = sum(p.get("answered", 0) for p in state.get("progress", {}).values())
        ok = sum(p.get("ok", 0) for p in state.get("progress", {}).values())
        if state.get("started"):
            t = time.time() - min(state["started"])
            print(f"  {t:6.1f} s: pushes answered {answered:,} (200: {ok:,}), readings stored {done:,} "
                  f"({done / t:,.0f}/s)", flush=True)
        if done != last_done:
            last_change, last_done = time.time(), done
        elif time.time() - last_change > args.stall and all(p.returncode is not None for p in procs):
            print(f"  no reading stored for {args.stall:.0f} s with every push answered: stopping", flush=True)
            break
    cpu_after = cpu_by_process(pids)
    for p in procs:
        await p.wait()
    await asyncio.gather(*readers)
    started = min(state["started"])
    last_us = await conn.fetchval("SELECT max(processed_us) FROM hub_processed WHERE route = 'readings'")
    finished = last_us / 1e6 if last_us else time.time()
    since = int((started - 600) * 1e6)
    counts = {r["quality"] or "valid": r["n"] for r in await conn.fetch(
        "SELECT quality, count(*) AS n FROM core_reading WHERE message_id IN "
        "(SELECT message_id FROM hub_processed WHERE route = 'readings') GROUP BY quality")}
    rejected = int(await conn.fetchval("SELECT count(*) FROM hub_hop WHERE outcome = 'rejected' AND at_us >= $1", since))
    dead = int(await conn.fetchval("SELECT count(*) FROM hub_dead_letter"))
    inbox = int(await conn.fetchval("SELECT count(*) FROM hub_inbox WHERE published_us IS NOT NULL"))
    answers: dict[str, int] = {}
    errors: dict[str, int] = {}
    pushers_cpu = 0.0
    latency = []
    for doc in state.get("done", {}).values():
        for k, v in doc["answers"].items():
            answers[k] = answers.get(k, 0) + v
        for k, v in doc["errors"].items():
            errors[k] = errors.get(k, 0) + v
        pushers_cpu += doc["cpu_s"]
        latency.append(doc["latency_ms"])
    cpu = {k: (cpu_after[k] - cpu_before.get(k, 0.0)) / n * 1e6 for k in cpu_after}
    return {"n": n, "stored_ledger": done, "readings": counts, "seconds": finished - started,
            "rate": done / (finished - started), "answers": answers, "errors": errors, "rejected": rejected,
            "dead": dead, "inbox_published": inbox, "cpu_us": cpu, "latency": latency,
            "pushers_cpu_us": pushers_cpu / n * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100_000, help="meters seeded, each pushing one reading (default 100,000)")
    parser.add_argument("--pushes", type=int, default=0,
                        help="meters that push, the first of the n (default: all n); the hub still knows all n")
    parser.add_argument("--workers", type=int, default=0,
                        help="gashub worker processes beside gashub run, consuming the same routes (default 0)")
    add_run_routes_argument(parser)
    parser.add_argument("--seed", type=int, default=1, help="the city's seed (default 1)")
    parser.add_argument("--pushers", type=int, default=2, help="pusher processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=100,
                        help="pushes in flight per pusher (default 100, the simulator's connection limit)")
    parser.add_argument("--raw-n", type=int, default=100_000,
                        help="messages per raw floor measurement (default 100,000)")
    parser.add_argument("--stall", type=float, default=60.0,
                        help="give up when no reading was stored for this many seconds after the last push (default 60)")
    parser.add_argument("--keep-database", action="store_true", help="keep the run's database (to look at it)")
    parser.add_argument("--city-db", metavar="NAME",
                        help="seed the city once into database NAME, kept, and run on a copy of it (later runs "
                             "skip the seeding); needs the city's key in GASHUB_CORE__KEYS__BENCH")
    parser.add_argument("--amqp", default=os.environ.get("GASHUB_BENCH_AMQP_URL", AMQP_DEFAULT))
    parser.add_argument("--pg", default=os.environ.get("GASHUB_BENCH_DATABASE_URL", PG_DEFAULT),
                        help="a PostgreSQL URL to create the run's database from (default: the local server)")
    args = parser.parse_args()
    print(f"meter push benchmark: {args.n:,} meters, {args.pushes or args.n:,} pushing, CTWing dataReport → gashub run → core:record_reading "
          f"(VEE on) on RabbitMQ + PostgreSQL; load average {load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gashub-meterpush-") as tmp:
        r = asyncio.run(measure(args, Path(tmp)))
    n = r["n"]
    stored = sum(r["readings"].values())
    print("pushes answered: " + ", ".join(f"HTTP {k}: {v:,}" for k, v in sorted(r["answers"].items()))
          + (f"; client errors: {r['errors']}" if r["errors"] else ""))
    for i, lat in enumerate(r["latency"]):
        print(f"  pusher {i + 1} answer latency ms: p50 {lat['p50']:.1f}, p95 {lat['p95']:.1f}, p99 {lat['p99']:.1f}, "
              f"max {lat['max']:.1f}")
    print(f"readings stored by the core: {stored:,} of {n:,} (" + ", ".join(
        f"{q} {c:,}" for q, c in sorted(r["readings"].items())) + f"); ledger rows {r['stored_ledger']:,}; "
          f"refused at the door {r['rejected']:,}; dead letters {r['dead']:,}")
    print("CPU per reading (µs): " + ", ".join(f"{k} {v:.0f}" for k, v in r["cpu_us"].items())
          + f" (pushers' own: {r['pushers_cpu_us']:.0f})")
    print(f"load average after the run: {load_average()}")
    print(f"raw floor (best of {len(r['raws'])}): {r['raw']:,.0f} msg/s (before {r['raws'][0]:,.0f}, after "
          f"{r['raws'][-1]:,.0f}; median {statistics.median(r['raws']):,.0f})")
    print(f"push → validated reading stored: {r['rate']:,.0f} readings/s ({n:,} in {r['seconds']:.1f} s)")
    print(f"ratio push/raw: {r['rate'] / r['raw']:.2f}")
    if stored != n or r["stored_ledger"] != n:
        print("CHECK FAILED: every push must store exactly one reading")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
