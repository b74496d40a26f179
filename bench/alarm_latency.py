"""Alarm → valve-close latency while readings flow in the background through CTWing's push.

    .venv/bin/python bench/alarm_latency.py [--meters 100000] [--rate 2000] [--duration 60] [--leaks 100]
    .venv/bin/python bench/alarm_latency.py --meters 300 --rate 20 --duration 8 --leaks 4 --warmup 1   # smoke

1. A fresh PostgreSQL database gets ``--meters`` accounts of the benchmark city with their meters and
   reading histories (``bench/meter_stack.py``); ``--dtus`` × ``ceil(leaks / dtus)`` of those meters hang
   on simulated DTUs, the rest are CTWing devices.
2. The hub runs as in production: ``gashub run`` in its own process on RabbitMQ + PostgreSQL, with the
   repository's meter and notification routes (alarms and valve commands on the safety lane, valve
   commands to the DTU connector ``meters:valve``), reading validation on, the SMS gateway simulated
   in this process.
3. The DTU simulators (``connectors.meters.simulator.DtuSimulator``) dial the hub's DTU server over
   real TCP, register and wait with their meters on the bus.
4. ``--pushers`` processes (``bench/ctwing_pusher.py``, each with its share of the devices and of the
   rate, at most ``--concurrency`` pushes in flight each) POST CTWing ``dataReport`` pushes at
   ``--rate`` a second in all for ``--duration`` seconds, through the same push path as
   ``bench/meter_push.py``.
5. After ``--warmup`` seconds, a leak is raised every ``--leak-every`` seconds for another DTU meter as a
   device event through a platform push: the meter vendor's alarm push
   (``{"event": "alarm", "alarm": "leak", …}`` to the vendor push connector, as
   ``connectors.vendor_push.simulator.VendorCloudSimulator`` sends it). The core records the alarm and
   asks for the valve to close; the DTU connector sends the CJ/T 188 valve-control frame to the meter.
6. Latency: from the moment the alarm push is sent to the moment the close frame reaches that meter
   on its simulated wire (``SimulatedMeter.received``, the same clock). p50, p95, p99 and max are
   printed with the background rate achieved (pushes answered 200 a second, and readings stored a
   second during the leaks) against the target p99 < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.gen_accounts import asyncpg_dsn  # noqa: E402
from bench.hub_vs_raw import cpu_by_process  # noqa: E402
from bench.meter_push import read_pusher  # noqa: E402
from bench.meter_stack import (  # noqa: E402
    AMQP_DEFAULT,
    PG_DEFAULT,
    PROFILE,
    VENDOR_TOKEN,
    BenchMeter,
    HubConfig,
    RunningHub,
    add_run_routes_argument,
    analyze_hub_tables,
    city_database,
    delete_hub_topology,
    free_port,
    load_average,
    write_devices,
)
from bench.pgdb import drop_database  # noqa: E402
from connectors.meters.cjt188 import ValveAction, ValveControl, load_meter_profiles  # noqa: E402
from connectors.meters.simulator import DtuSimulator, SimulatedMeter  # noqa: E402


@dataclass
class Leak:
    meter: BenchMeter
    sim: SimulatedMeter
    injected: float = math.nan
    """``time.monotonic()`` when the alarm push was sent."""
    status: int = 0

    def closed_at(self) -> float | None:
        for at, request in self.sim.received:
            if isinstance(request, ValveControl) and request.action is ValveAction.CLOSE:
                return at
        return None


def merged(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The pushers' totals as one: sums, the longest time, the worst of each latency percentile."""
    out: dict[str, Any] = {"sent": 0, "answers": {}, "errors": {}, "seconds": 0.0, "cpu_s": 0.0, "latency_ms": {}}
    for doc in docs:
        out["sent"] += doc["sent"]
        out["seconds"] = max(out["seconds"], doc["seconds"])
        out["cpu_s"] += doc["cpu_s"]
        for key in ("answers", "errors"):
            for k, v in doc[key].items():
                out[key][k] = out[key].get(k, 0) + v
        for k, v in doc["latency_ms"].items():
            out["latency_ms"][k] = max(out["latency_ms"].get(k, 0.0), v)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] if ordered else math.nan


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from connectors.http_sms.simulator import SmsGatewaySimulator

    print(f"seeding {args.meters:,} accounts and meters (seed {args.seed}) …", flush=True)
    url, key, seconds, meters = await city_database(args.pg, args.meters, args.seed, kept=args.city_db)
    print(f"  {url.rsplit('/', 1)[1]} ready in {seconds:.1f} s", flush=True)
    sms = SmsGatewaySimulator(port=free_port())  # started in the try below; its URL is known now
    config = HubConfig(workdir, url, args.amqp, key, free_port(), free_port(), sms.url)
    hub = RunningHub(config, workers=args.workers, run_routes=args.run_routes)
    dtus: list[DtuSimulator] = []
    pushers: list[asyncio.subprocess.Process] = []
    try:
        await sms.start()
        per_dtu = math.ceil(args.leaks / args.dtus)
        on_dtus = meters[:args.dtus * per_dtu]
        ctwing = meters[len(on_dtus):]
        if not ctwing:
            raise SystemExit("--meters must exceed the meters behind DTUs (dtus × ceil(leaks / dtus))")
        profile = load_meter_profiles().get(PROFILE)
        by_dtu: dict[str, list[BenchMeter]] = {}
        leaks: list[Leak] = []
        for d in range(args.dtus):
            dtu_id = f"86{d + 1:013d}"
            chosen = on_dtus[d * per_dtu:(d + 1) * per_dtu]
            by_dtu[dtu_id] = chosen
            sims = [SimulatedMeter(m.address, profile, volume_m3=m.volume) for m in chosen]
            dtus.append(DtuSimulator("127.0.0.1", config.dtu_port, dtu_id=dtu_id, meters=sims,
                                     bus_delay_s=args.bus_delay))
            leaks += [Leak(m, s) for m, s in zip(chosen, sims, strict=True)]
        # Leaks take the DTUs in turn: the first meter of each, then the second of each, …
        leaks = sorted(leaks, key=lambda leak: (on_dtus.index(leak.meter) % per_dtu, on_dtus.index(leak.meter)))
        leaks = leaks[:args.leaks]
        config.write(ctwing, by_dtu)
        devices = workdir / "devices.jsonl"
        write_devices(devices, ctwing)
        up = await hub.start()
        print(f"  gashub run ready in {up:.1f} s (CTWing: {len(ctwing):,} devices; {args.dtus} DTUs with "
              f"{per_dtu} meters each; {args.workers} worker(s), run_routes {hub.run_routes})", flush=True)
        for dtu in dtus:
            await dtu.connect()
        await asyncio.sleep(1.0)  # registration: the first bytes on each connection

        share = math.ceil(len(ctwing) / args.pushers)
        for i in range(args.pushers):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(REPO / "bench" / "ctwing_pusher.py"), "--url", config.push_url, "--devices",
                str(devices), "--first", str(i * share), "--count", str(share), "--rate", str(args.rate / args.pushers),
                "--duration", str(args.duration), "--concurrency", str(args.concurrency), cwd=REPO,
                stdout=asyncio.subprocess.PIPE)
            assert proc.stdout is not None
            ready = json.loads(await proc.stdout.readline())
            assert "ready" in ready, ready
            pushers.append(proc)
        state: dict[str, Any] = {}
        readers = [asyncio.create_task(read_pusher(p, f"pusher{i + 1}", state)) for i, p in enumerate(pushers)]
        pids = hub.pids
        cpu_before = cpu_by_process(pids)
        print(f"background: {args.rate:,.0f} CTWing pushes/s for {args.duration:.0f} s; leaks from {args.warmup:.0f} s, "
              f"one every {args.leak_every:.2f} s (load average {load_average()})", flush=True)
        await asyncio.sleep(args.warmup)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            if args.analyze:
                took = await analyze_hub_tables(conn)
                print(f"  ANALYZE of the hub's tables after the warm-up: {took * 1000:.0f} ms", flush=True)
            window_start = time.time()
            await inject(leaks, config, args.leak_every, state)
            window_end = time.time()
            await all_closed(leaks, within=args.wait)
            for proc in pushers:
                await proc.wait()
            await asyncio.gather(*readers)
            cpu_after = cpu_by_process(pids)
            in_window = int(await conn.fetchval(
                "SELECT count(*) FROM hub_processed WHERE route = 'readings' AND processed_us BETWEEN $1 AND $2",
                int(window_start * 1e6), int(window_end * 1e6)))
            stored = int(await conn.fetchval("SELECT count(*) FROM hub_processed WHERE route = 'readings'"))
            alarms = int(await conn.fetchval("SELECT count(*) FROM hub_processed WHERE route = 'vendor-alarms'"))
            valves = int(await conn.fetchval("SELECT count(*) FROM hub_processed WHERE route = 'valve-commands'"))
        finally:
            await conn.close()
        return {"leaks": leaks, "pusher": merged(list(state.get("done", {}).values())), "window_s": window_end - window_start, "in_window": in_window,
                "stored": stored, "alarms": alarms, "valves": valves, "sms": len(sms.sent),
                "cpu_us": {k: (cpu_after[k] - cpu_before.get(k, 0.0)) for k in cpu_after},
                "duration": time.time() - min(state.get("started", [window_start]))}
    finally:
        for proc in pushers:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for dtu in dtus:
            await dtu.aclose()
        hub.stop()
        await sms.aclose()
        if not args.keep_database:
            await drop_database(args.pg, url)
        delete_hub_topology(config)


async def all_closed(leaks: list[Leak], *, within: float) -> None:
    """Until every leaking meter got its close frame, or ``within`` seconds (the meters' wires are looked at
    every 50 ms; the latency comes from the frames' own arrival times, not from this loop)."""
    async def watch() -> None:
        while any(leak.closed_at() is None for leak in leaks):  # noqa: ASYNC110 - the wires are plain lists
            await asyncio.sleep(0.05)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watch(), within)


async def inject(leaks: list[Leak], config: HubConfig, every: float, state: dict[str, Any]) -> None:
    """Send one vendor leak alarm every ``every`` seconds, each for the next leak's meter, without
    waiting for the answers (an answer comes only after the broker confirmed the alarm)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def push(n: int, leak: Leak) -> None:
            doc = {"event": "alarm", "devId": leak.meter.meter_id, "seq": 1_000_000 + n,
                   "ts": int(time.time() * 1000), "alarm": "leak", "level": 5}
            leak.injected = time.monotonic()
            async with session.post(config.vendor_url, json=doc, headers={"X-Vendor-Token": VENDOR_TOKEN}) as resp:
                leak.status = resp.status
                await resp.read()

        tasks = []
        for n, leak in enumerate(leaks):
            delay = t0 + n * every - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(push(n, leak)))
            if (n + 1) % 10 == 0:
                answered = sum(p.get("answered", 0) for p in state.get("progress", {}).values())
                at = max((p.get("t", 0) for p in state.get("progress", {}).values()), default=0)
                closed = sum(1 for x in leaks[:n + 1] if x.closed_at() is not None)
                print(f"  {n + 1} leaks raised, {closed} valves closed; background pushes answered "
                      f"{answered:,} at {at} s", flush=True)
        await asyncio.gather(*tasks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=100_000, help="meters seeded (default 100,000)")
    parser.add_argument("--workers", type=int, default=0,
                        help="gashub worker processes beside gashub run, consuming the same routes (default 0) "
                             "but the DTU valve commands: only gashub run holds the DTUs' connections")
    add_run_routes_argument(parser)
    parser.add_argument("--no-analyze", dest="analyze", action="store_false",
                        help="leave the tables' statistics to autovacuum (default: ANALYZE the hub's tables after "
                             "the warm-up, as autovacuum does within a minute of a fresh database's first traffic)")
    parser.add_argument("--seed", type=int, default=1, help="the city's seed (default 1)")
    parser.add_argument("--rate", type=float, default=2000.0, help="background CTWing pushes a second (default 2,000)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of background pushes (default 60)")
    parser.add_argument("--pushers", type=int, default=3, help="background pusher processes (default 3)")
    parser.add_argument("--concurrency", type=int, default=100,
                        help="background pushes in flight at most per pusher (default 100, the simulator's "
                             "connection limit)")
    parser.add_argument("--leaks", type=int, default=100, help="leak alarms, one meter each (default 100)")
    parser.add_argument("--dtus", type=int, default=10, help="simulated DTUs the leak meters hang on (default 10)")
    parser.add_argument("--leak-every", type=float, default=0.4, help="seconds between leaks (default 0.4)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of background before the first leak (default 5)")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the last valves (default 30)")
    parser.add_argument("--bus-delay", type=float, default=0.01,
                        help="seconds a simulated meter takes to answer on its bus (default 0.01)")
    parser.add_argument("--keep-database", action="store_true", help="keep the run's database")
    parser.add_argument("--city-db", metavar="NAME",
                        help="seed the city once into database NAME, kept, and run on a copy of it (later runs "
                             "skip the seeding); needs the city's key in GASHUB_CORE__KEYS__BENCH")
    parser.add_argument("--amqp", default=os.environ.get("GASHUB_BENCH_AMQP_URL", AMQP_DEFAULT))
    parser.add_argument("--pg", default=os.environ.get("GASHUB_BENCH_DATABASE_URL", PG_DEFAULT))
    args = parser.parse_args()
    if args.warmup + args.leaks * args.leak_every > args.duration:
        parser.error("the leaks must fall inside the background: warmup + leaks × leak-every ≤ duration")
    print(f"alarm latency benchmark: {args.leaks} leaks behind {args.dtus} DTUs while {args.rate:,.0f} CTWing "
          f"pushes/s flow, gashub run on RabbitMQ + PostgreSQL; load average {load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gashub-alarm-") as tmp:
        r = asyncio.run(measure(args, Path(tmp)))
    leaks: list[Leak] = r["leaks"]
    latencies = [(at - leak.injected) * 1000 for leak in leaks if (at := leak.closed_at()) is not None]
    missing = len(leaks) - len(latencies)
    p = r["pusher"]
    ok = p.get("answers", {}).get("200", 0)
    print(f"background: {p.get('sent', 0):,} pushes sent in {p.get('seconds', 0):.1f} s, {ok:,} answered 200 "
          f"({ok / max(p.get('seconds', 1), 1e-9):,.0f}/s; asked {args.rate:,.0f}/s); answers "
          f"{p.get('answers', {})}, client errors {p.get('errors', {})}; answer latency ms p50 "
          f"{p.get('latency_ms', {}).get('p50', math.nan):.0f}, p99 {p.get('latency_ms', {}).get('p99', math.nan):.0f}")
    print(f"readings stored while the leaks were raised: {r['in_window']:,} in {r['window_s']:.1f} s "
          f"({r['in_window'] / r['window_s']:,.0f}/s); all readings stored {r['stored']:,}")
    print(f"alarms recorded {r['alarms']}, valve commands delivered {r['valves']}, SMS at the gateway {r['sms']}; "
          f"alarm pushes answered: " + ", ".join(f"{s}: {sum(1 for x in leaks if x.status == s)}"
                                                 for s in sorted({x.status for x in leaks})))
    print("CPU seconds during the run: " + ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_us"].items())
          + f"; pushers {p.get('cpu_s', math.nan):.1f}")
    print(f"load average after the run: {load_average()}")
    print(f"valve closed at the meter's wire: {len(latencies)} of {len(leaks)}"
          + (f" ({missing} not within {args.wait:.0f} s of the last leak)" if missing else ""))
    if latencies:
        p99 = percentile(latencies, 0.99)
        print(f"alarm → valve-close latency ms: p50 {percentile(latencies, 0.50):.0f}, "
              f"p95 {percentile(latencies, 0.95):.0f}, p99 {p99:.0f}, max {max(latencies):.0f}")
        print(f"target p99 < 1000 ms: {'met' if p99 < 1000 and not missing else 'NOT met'} "
              f"(background achieved {ok / max(p.get('seconds', 1), 1e-9):,.0f} of {args.rate:,.0f} pushes/s)")
    return 1 if missing or not latencies else 0


if __name__ == "__main__":
    sys.exit(main())
