"""What the meter benchmarks (``meter_push.py``, ``alarm_latency.py``) share: a seeded city of meters in a
fresh PostgreSQL database, a hub configured for those meters and started as ``gashub run`` (the
production process: HTTP partner endpoints, route consumers, outbox relay, scheduler, connectors),
and pusher processes that play CTWing (``bench/ctwing_pusher.py``).

The city is ``bench/city.py``'s, loaded by ``bench/gen_accounts.py``'s ``load`` (``COPY``, two
generator processes): accounts with their holders (personal data encrypted under a key made for the
run, or, with ``--city-db``, under ``GASHUB_CORE__KEYS__BENCH`` in a kept database that each run copies),
one meter each and a year of monthly readings. Its year ends on 30 November 2026; readings
that lie after the moment of the run are deleted, so that today's push is the newest reading of
each meter. Each meter gets a CTWing device (``ctw`` + its digits, an IMEI, the CJ/T 188 address
``000`` + its digits, profile ``cjt188-2018``) and a register for today's push: its last reading plus
its average daily use since its first one, for the days since its last.

The hub runs with the repository's own meter and notification routes (``routes/meters.toml``,
``routes/notifications.toml``), valve commands going to the DTU connector (``meters:valve``), the
connectors CTWing (every device), the demo vendor push (alarms), a DTU server (the meters the alarm
benchmark puts behind DTUs) and the SMS gateway (its simulator runs in the benchmark's process).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any, Protocol

import asyncpg

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.gen_accounts import asyncpg_dsn, load  # noqa: E402
from bench.hub_vs_raw import delete_topology  # noqa: E402
from bench.pgdb import drop_database, fresh_database  # noqa: E402

PROFILE = "cjt188-2018"
VENDOR_TOKEN = "bench-vendor-token"
"""The simulated vendor's push token (the benchmark's own, set for the hub in its environment)."""
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
AMQP_DEFAULT = "amqp://guest:guest@127.0.0.1:5672/"


@dataclass(frozen=True, slots=True)
class BenchMeter:
    """A seeded meter and what a push of it carries."""

    meter_id: str
    volume: Decimal
    """Today's register (m³, two decimals as CJ/T 188 carries it)."""

    @property
    def digits(self) -> str:
        return self.meter_id[1:]

    @property
    def device_id(self) -> str:
        return f"ctw{self.digits}"

    @property
    def imei(self) -> str:
        return f"86{int(self.digits):013d}"

    @property
    def address(self) -> str:
        return f"{int(self.digits):014d}"

    def device(self) -> dict[str, str]:
        return {"meter_id": self.meter_id, "device_id": self.device_id, "imei": self.imei,
                "address": self.address, "profile": PROFILE}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


HOT_TABLES = ("hub_inbox", "hub_message", "hub_hop", "hub_processed", "core_reading", "core_outbox", "core_alarm")
"""The tables a push and a reading write to; ``analyze_hub_tables`` gives them statistics."""


async def analyze_hub_tables(conn: Any) -> float:
    """``ANALYZE`` the tables the pushes fill (seconds taken). A database copied from the kept city starts
    them empty and never analyzed, and autovacuum analyzes them only at its next round (``autovacuum_naptime``,
    60 s): until then PostgreSQL plans with default selectivities, and marking 123 inbox entries
    published (``source = $1 AND partner_key = ANY($2)``) scans every entry of the source (17 ms at 40,000
    entries, 1.3 ms once analyzed). A running system is past that first minute."""
    started = time.perf_counter()
    await conn.execute(f"ANALYZE {', '.join(HOT_TABLES)}")
    return time.perf_counter() - started


async def city_database(pg: str, n: int, seed: int, *, kept: str | None = None) -> tuple[str, str, float, list[BenchMeter]]:
    """The run's database holding ``n`` accounts of the city: its URL, the personal-data key, the seconds it
    took, and the meters with their registers for today.

    Without ``kept`` the city is seeded now into a fresh database under a key made for the run. With
    ``kept`` it is seeded once into the database of that name, which stays (its personal data under the key
    in ``GASHUB_CORE__KEYS__BENCH``, which must then stay the same), and each run works on a copy of it
    (``CREATE DATABASE … TEMPLATE``)."""
    started = time.perf_counter()
    if kept is None:
        key = new_key()
        url = await fresh_database(pg)
        try:
            await seed_city(url, n, seed, key)
        except BaseException:
            await drop_database(pg, url)
            raise
    else:
        key = os.environ.get("GASHUB_CORE__KEYS__BENCH", "")
        if not key:
            raise SystemExit("--city-db needs the city's key in GASHUB_CORE__KEYS__BENCH (a base64 32-byte key; "
                             "keep it for the next runs)")
        if not kept.replace("_", "").isalnum():
            raise SystemExit(f"--city-db {kept!r}: use a plain name such as gh_city_100k")
        base = pg.rsplit("/", 1)[0]
        admin = await asyncpg.connect(asyncpg_dsn(pg))
        try:
            exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", kept)
            if not exists:
                await admin.execute(f'CREATE DATABASE "{kept}"')
        finally:
            await admin.close()
        city = f"{base}/{kept}"
        if not exists:
            print(f"  seeding the kept city {kept} (later runs copy it)", flush=True)
            await seed_city(city, n, seed, key)
        conn = await asyncpg.connect(asyncpg_dsn(city))
        try:
            meters = int(await conn.fetchval("SELECT count(*) FROM core_meter"))
        finally:
            await conn.close()
        if meters != n:
            raise SystemExit(f"the kept city {kept} has {meters:,} meters, not {n:,}: name another database "
                             f"(or drop {kept} if it is yours)")
        url = f"{base}/gh_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(asyncpg_dsn(pg))
        try:
            await admin.execute(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}" TEMPLATE "{kept}"')
        finally:
            await admin.close()
    return url, key, time.perf_counter() - started, await push_registers(url)


async def seed_city(url: str, n: int, seed: int, key: str) -> None:
    """Migrate the database, load ``n`` accounts of the city and drop the readings after now."""
    from core.accounts import Privacy
    from core.privacy import KeyRing
    from hub.migrations import upgrade_async

    started = time.perf_counter()
    await upgrade_async(url)
    privacy = Privacy.from_ring(KeyRing.from_settings({"bench": key}, current="bench"))
    loaded = 0

    def progress(k: int) -> None:
        nonlocal loaded
        loaded += k
        if loaded % 20_000 < k or loaded == n:
            print(f"  {loaded:,} accounts loaded ({time.perf_counter() - started:.0f} s)", flush=True)

    await load(url, privacy, n, seed, workers=2, progress=progress)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("DELETE FROM core_reading WHERE read_at > $1", datetime.now(UTC))
        await conn.execute("VACUUM (ANALYZE) core_reading")
    finally:
        await conn.close()


async def push_registers(url: str) -> list[BenchMeter]:
    """Each meter with its register for a push now: its last reading plus its average daily use since its
    first, for the days since the last."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        now = datetime.now(UTC)
        rows = await conn.fetch(
            "SELECT meter_id, min(read_at) AS first_at, max(read_at) AS last_at, min(volume_m3) AS first_v, "
            "max(volume_m3) AS last_v FROM core_reading WHERE read_at <= $1 GROUP BY meter_id ORDER BY meter_id", now)
    finally:
        await conn.close()
    meters = []
    cent = Decimal("0.01")
    for r in rows:
        days = max((r["last_at"] - r["first_at"]).total_seconds() / 86400, 1.0)
        per_day = (Decimal(r["last_v"]) - Decimal(r["first_v"])) / Decimal(str(days))
        since = Decimal(str(max((now - r["last_at"]).total_seconds() / 86400, 0.0)))
        volume = (Decimal(r["last_v"]) + per_day * since).quantize(cent, ROUND_CEILING)
        meters.append(BenchMeter(r["meter_id"], volume))
    return meters


def bench_routes() -> str:
    """The repository's meter and notification routes; valve commands go to the DTU connector."""
    text = (REPO / "routes" / "meters.toml").read_text() + "\n" + (REPO / "routes" / "notifications.toml").read_text()
    if 'to = "valves:valve"' not in text:
        raise SystemExit("routes/meters.toml no longer sends valve commands to valves:valve: update bench/meter_stack.py")
    return text.replace('to = "valves:valve"', 'to = "meters:valve"')


def _toml_list(items: Sequence[dict[str, str]]) -> str:
    return "[\n" + "".join("  {" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in item.items()) + "},\n"
                           for item in items) + "]"


@dataclass
class HubConfig:
    """The files and environment of one benchmark hub."""

    workdir: Path
    database_url: str
    amqp_url: str
    key: str
    http_port: int
    dtu_port: int
    sms_url: str
    suffix: str = ""

    def __post_init__(self) -> None:
        self.suffix = self.suffix or uuid.uuid4().hex[:6]

    @property
    def exchange(self) -> str:
        return f"bench.{self.suffix}"

    @property
    def push_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/partners/ctwing/push"

    @property
    def vendor_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/partners/vendor-demo/push"

    def write(self, ctwing: Sequence[BenchMeter], dtus: dict[str, Sequence[BenchMeter]]) -> Path:
        routes = self.workdir / "routes"
        routes.mkdir(exist_ok=True)
        (routes / "meters.toml").write_text(bench_routes())
        dtu_meters = [{"meter_id": m.meter_id, "address": m.address, "dtu": dtu, "profile": PROFILE}
                      for dtu, meters in dtus.items() for m in meters]
        config = self.workdir / "gashub.toml"
        config.write_text(
            "# Written by bench/meter_stack.py: the hub of one meter benchmark run.\n"
            f'log_level = "WARNING"\n\n[http]\nhost = "127.0.0.1"\nport = {self.http_port}\n\n'
            '[connectors.vendor]\nkind = "vendor_push"\npath = "/partners/vendor-demo/push"\n\n'
            f'[connectors.sms]\nkind = "http_sms"\nbase_url = "{self.sms_url}"\n\n'
            f'[connectors.meters]\nkind = "dtu_cjt188"\nhost = "127.0.0.1"\nport = {self.dtu_port}\n'
            f"meters = {_toml_list(dtu_meters)}\n\n"
            f'[connectors.ctwing]\nkind = "ctwing"\ndevices = {_toml_list([m.device() for m in ctwing])}\n')
        return config

    def env(self) -> dict[str, str]:
        return {**os.environ, "GASHUB_CONFIG": str(self.workdir / "gashub.toml"),
                "GASHUB_DATABASE_URL": self.database_url, "GASHUB_AMQP_URL": self.amqp_url,
                "GASHUB_EXCHANGE": self.exchange, "GASHUB_QUEUE_PREFIX": self.exchange,
                "GASHUB_ROUTES_DIR": str(self.workdir / "routes"), "GASHUB_MAPPINGS_DIR": str(REPO / "mappings"),
                "GASHUB_CORE__KEYS__BENCH": self.key, "GASHUB_CONNECTORS__VENDOR__TOKEN": VENDOR_TOKEN,
                "GASHUB_LOG_LEVEL": "WARNING"}


class HubProcessConfig(Protocol):
    """What :class:`RunningHub` needs of a benchmark hub's configuration (:class:`HubConfig` has it):
    the folder its log goes to, the port its HTTP server listens on and its processes' environment."""

    @property
    def workdir(self) -> Path: ...

    @property
    def http_port(self) -> int: ...

    def env(self) -> dict[str, str]: ...


def add_run_routes_argument(parser: Any) -> None:
    """``--run-routes``, for the benchmarks that start a :class:`RunningHub` with ``--workers``."""
    parser.add_argument("--run-routes", choices=("all", "held"), default=None,
                        help="gashub run's consumer.run_routes (default: held with --workers, else all): with "
                             "held, gashub run keeps the safety lane and the DTU valve route, the workers the rest")


class RunningHub:
    """``gashub run`` in a child process, with the benchmark's configuration, and ``workers`` more
    ``gashub worker`` processes consuming the same routes (as a deployment adds them). ``run_routes`` is
    ``gashub run``'s ``consumer.run_routes``: by default ``held`` when there are workers (they take the
    normal lane, as a deployment with workers is set up), else ``all``."""

    def __init__(self, config: HubProcessConfig, workers: int = 0, run_routes: str | None = None) -> None:
        self.config = config
        self.run_routes = run_routes or ("held" if workers else "all")
        self.proc: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.worker_count = workers
        self.log_path = config.workdir / "hub.log"

    async def start(self, within: float = 180.0) -> float:
        """Start and wait until ``/ready`` answers 200; returns the seconds it took."""
        import aiohttp

        started = time.perf_counter()
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child keeps it; closed in stop()
        self._log = log
        env = {**self.config.env(), "GASHUB_CONSUMER__RUN_ROUTES": self.run_routes}
        self.proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "run"], env=env, cwd=REPO,
                                     stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{self.config.http_port}/ready"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.perf_counter() - started < within:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gashub run exited ({self.proc.returncode}); see {self.log_path}:\n"
                                       + self.log_path.read_text()[-3000:])
                try:
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            await self._start_workers()
                            return time.perf_counter() - started
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"gashub run was not ready within {within:.0f} s; see {self.log_path}")

    async def _start_workers(self) -> None:
        for _ in range(self.worker_count):
            self.workers.append(subprocess.Popen([sys.executable, "-m", "hub.cli", "worker"], env=self.config.env(),
                                                 cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT))
        if self.workers:
            await asyncio.sleep(3.0)  # connected and consuming

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def pids(self) -> dict[str, int]:
        """The hub's processes by name, for CPU accounting: ``hub`` (``gashub run``) and ``worker1``…"""
        return {"hub": self.pid, **{f"worker{n + 1}": w.pid for n, w in enumerate(self.workers)}}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self._log.close()


def delete_hub_topology(config: HubConfig) -> None:
    """Remove the exchange and every queue named with the run's prefix (the broker is left as found)."""
    try:
        out = subprocess.run(["rabbitmqctl", "list_queues", "-q", "name"], capture_output=True, text=True,
                             check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"could not list the broker's queues ({exc}): delete the queues named {config.exchange}.* by hand")
        return
    queues = [q.strip() for q in out.stdout.splitlines() if q.strip().startswith(config.exchange + ".")]
    delete_topology(config.amqp_url, config.exchange, queues)


def write_devices(path: Path, meters: Sequence[BenchMeter]) -> None:
    """The pushers' device file: one JSON object a line."""
    with path.open("w") as f:
        for m in meters:
            f.write(json.dumps({"device_id": m.device_id, "imei": m.imei, "address": m.address,
                                "volume": str(m.volume)}) + "\n")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
