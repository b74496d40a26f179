"""The chaos harness: real RabbitMQ and PostgreSQL, ``gashub worker`` subprocesses, and the broker
seen from outside (``rabbitmqctl``, a process's sockets).

Each test gets its own exchange, queue prefix, PostgreSQL database, routes folder and settings
file; the fixture deletes the queues, the exchange and the database and kills any worker still
running, whatever the test's outcome. Workers log to files under the test's ``tmp_path``; their
tails are printed at teardown, so a failing test shows them.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import func, select

from core.db.tables import reading
from hub.app import Hub
from hub.envelope import Envelope
from hub.errors import HubError
from hub.migrations import upgrade_async
from hub.settings import load_settings
from hub.transport.base import QueueInfo
from hub.transport.pika import PikaTransport
from tests.cli_env import clean_env
from tests.contract.broker_admin import BrokerAdmin
from tests.flow.conftest import equals, fresh_postgres_database, holds

REPO = Path(__file__).resolve().parents[2]
ROUTE = "readings"
ROUTES = f"""
[[route]]
name = "{ROUTE}"
from = "meter.reading"
to = "core:record_reading"
retry = {{ max_attempts = 3, backoff = ["100ms"] }}
"""
# No [connectors]: with GASHUB_CONFIG pointing here, config/gashub.toml (and its connectors) is not read.
# Readings only: record_reading writes no events (no route here would take them).
CONFIG = """\
log_level = "INFO"
log_json = true

[core.readings]
flag_events = false
raise_alarms = false
notify = []
"""


class Worker:
    """One ``gashub worker`` subprocess, logging to a file."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log_path: Path, log_file: IO[bytes]) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path
        self._log_file = log_file

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    async def wait(self, within: float) -> int | None:
        """The exit code, or ``None`` if the process is still running after ``within`` seconds."""
        for _ in range(int(within / 0.05)):
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        return self.process.poll()

    async def stop(self, within: float = 30.0) -> int | None:
        """SIGTERM, as an orchestrator stops a worker; the exit code (``None``: it did not stop)."""
        self.signal(signal.SIGTERM)
        return await self.wait(within)

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        await self.wait(10)

    def close_log(self) -> None:
        self._log_file.close()

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text[-lines:])


class Chaos:
    """One chaos test's world: settings, an in-test hub (for topology, publishing and queries) and
    the worker processes it starts."""

    def __init__(self, tmp: Path, amqp_url: str, database_url: str) -> None:
        self.tmp = tmp
        self.amqp_url = amqp_url
        self.database_url = database_url
        self.uid = uuid.uuid4().hex[:10]
        self.exchange = f"gashub.chaos.{self.uid}"
        self.queue_prefix = f"gashub.chaos.{self.uid}"
        self.client_name = f"gashub-chaos-{self.uid}"
        self.routes_dir = tmp / "routes"
        self.routes_dir.mkdir()
        (self.routes_dir / "chaos.toml").write_text(ROUTES)
        self.config_path = tmp / "gashub.toml"
        self.config_path.write_text(CONFIG)
        self.workers: list[Worker] = []
        self.settings = load_settings(
            database_url=database_url,
            amqp_url=amqp_url,
            exchange=self.exchange,
            queue_prefix=self.queue_prefix,
            routes_dir=self.routes_dir,
            mappings_dir=REPO / "mappings",
            http={"host": "127.0.0.1", "port": 0},
            # One consumer per process, so that the queue's consumer count tells which workers run.
            consumer={"parallel": 1},
        )
        assert not self.settings.connectors, "the chaos settings file must keep config/gashub.toml out"
        # The in-test hub's transport has a connection name of its own, so that the broker's side can
        # close exactly its connections (other processes may share the broker).
        self.transport = PikaTransport(amqp_url, client_name=self.client_name, reconnect_backoff=(0.2, 0.5, 1))
        self.hub = Hub.build(self.settings, transport=self.transport)
        route = self.hub.routes[0]
        self.queue_name = route.queues.main
        self.dead_queue = route.queues.dead
        self.all_queues = [q.name for q in self.hub.topology().queues]

    # the broker ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect the in-test transport and declare the topology (without starting the hub)."""
        await self.transport.connect()
        await self.transport.declare(self.hub.topology())

    async def queue(self, name: str | None = None) -> QueueInfo:
        return await self.transport.queue_info(name or self.queue_name)

    async def total_messages(self, name: str | None = None) -> int:
        """Ready plus unacknowledged, straight from the queue process (``rabbitmqctl``)."""
        wanted = name or self.queue_name
        out = await rabbitmqctl("list_queues", "--no-table-headers", "name", "messages")
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 2 and parts[0] == wanted:
                return int(parts[1])
        raise AssertionError(f"queue {wanted} is not on the broker:\n{out}")

    async def consumers(self) -> int:
        return (await self.queue()).consumers

    async def wait_drained(self, within: float = 60.0) -> None:
        """No message left on the route's queue, ready or unacknowledged."""
        await self.wait_for(lambda: equals(self.total_messages(), 0), within, "the route queue to drain", every=0.5)

    # publishing -------------------------------------------------------------------------------

    def envelopes(self, n: int, *, start: int = 0) -> list[Envelope]:
        """``n`` canonical readings, each from its own meter at its own time."""
        base = datetime(2024, 1, 1, tzinfo=UTC)
        return [
            Envelope(
                type="meter.reading",
                source="chaos",
                subject=f"M{self.uid}{i:06d}",
                data={
                    "meter_id": f"M{self.uid}{i:06d}",
                    "read_at": (base + timedelta(seconds=i)).isoformat(),
                    "volume_m3": f"{i % 9973}.{i % 1000:03d}",
                    "source": "dtu",
                },
            )
            for i in range(start, start + n)
        ]

    async def publish(
        self,
        envelopes: Sequence[Envelope],
        *,
        batch: int = 500,
        pause: float = 0.0,
        trickle: asyncio.Event | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Publish in confirmed batches; a batch that fails with a retriable error is published again
        (the caller's duty under the transport contract). While ``trickle`` is set, batches of one
        follow each other without a pause, so that a publish is nearly always awaiting its confirm.
        Returns how many times a batch was published again."""
        retried = 0
        done = 0
        while done < len(envelopes):
            trickling = trickle is not None and trickle.is_set()
            chunk = envelopes[done : done + (1 if trickling else batch)]
            while True:
                try:
                    await self.hub.publisher.publish(chunk)
                    break
                except HubError as exc:
                    if not exc.retriable:
                        raise
                    retried += 1
                    print(f"publisher: {len(chunk)} message(s) after {done:,} failed ({exc}); publishing again")
                    await asyncio.sleep(0.1)
            done += len(chunk)
            if progress is not None:
                progress(done)
            if pause and not trickling:
                await asyncio.sleep(pause)
        return retried

    # the database -----------------------------------------------------------------------------

    async def count(self, table: Any, *where: Any, column: Any = None) -> int:
        what = func.count() if column is None else func.count(column.distinct())
        async with self.hub.db.read() as conn:
            return int(await conn.scalar(select(what).select_from(table).where(*where)) or 0)

    async def stored(self) -> int:
        """Readings the core has stored."""
        return await self.count(reading)

    # workers ----------------------------------------------------------------------------------

    def worker_env(self) -> dict[str, str]:
        env = clean_env()
        env.update(
            GASHUB_CONFIG=str(self.config_path),
            GASHUB_DATABASE_URL=self.database_url,
            GASHUB_AMQP_URL=self.amqp_url,
            GASHUB_EXCHANGE=self.exchange,
            GASHUB_QUEUE_PREFIX=self.queue_prefix,
            GASHUB_ROUTES_DIR=str(self.routes_dir),
            GASHUB_MAPPINGS_DIR=str(REPO / "mappings"),
            GASHUB_LOG_JSON="true",
            GASHUB_CONSUMER__PARALLEL="1",
            PYTHONUNBUFFERED="1",
        )
        return env

    def start_worker(self, name: str) -> Worker:
        log_path = self.tmp / f"worker-{name}.log"
        log_file = log_path.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "worker"],
            cwd=REPO,
            env=self.worker_env(),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = Worker(name, process, log_path, log_file)
        self.workers.append(worker)
        return worker

    def check_workers(self, *expected_alive: Worker) -> None:
        for worker in expected_alive:
            if not worker.alive():
                raise AssertionError(f"worker {worker.name} exited with {worker.process.returncode}:\n{worker.tail()}")

    # waiting ----------------------------------------------------------------------------------

    async def wait_for(
        self,
        check: Callable[[], Awaitable[bool] | bool],
        within: float,
        what: str,
        every: float = 0.05,
        alive: Sequence[Worker] = (),
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not await holds(check):
            self.check_workers(*alive)
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {within:g}s waiting for {what}")
            await asyncio.sleep(every)

    # teardown ---------------------------------------------------------------------------------

    async def kill_workers(self) -> None:
        for worker in self.workers:
            if worker.alive():
                worker.signal(signal.SIGCONT)  # a frozen worker still dies of SIGKILL, but be tidy
                await worker.kill()
            worker.close_log()

    def print_logs(self) -> None:
        for worker in self.workers:
            print(
                f"\n----- worker {worker.name} (pid {worker.pid}, exit {worker.process.returncode}) "
                f"{worker.log_path} -----\n{worker.tail()}"
            )

    async def close_hub(self) -> None:
        if self.hub.started:
            await self.hub.stop()
        else:
            await self.transport.aclose()
            await self.hub.db.aclose()


async def rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {args}: {err.decode()}"
    return out.decode()


_CONNECTION_NAME = re.compile(r'\{"connection_name","([^"]*)"\}')


async def connection_pids(client_name: str) -> list[str]:
    """The broker's ids of the connections whose name starts with ``client_name/``."""
    listing = await rabbitmqctl("list_connections", "--no-table-headers", "pid", "client_properties")
    pids = []
    for line in listing.splitlines():
        pid, _, properties = line.partition("\t")
        name = _CONNECTION_NAME.search(properties)
        if name is not None and name.group(1).startswith(f"{client_name}/"):
            pids.append(pid)
    return pids


async def close_connections(pids: Sequence[str]) -> None:
    """Close connections from the broker's side, as an operator or a failing node would."""
    await asyncio.gather(*(rabbitmqctl("close_connection", pid, "chaos test") for pid in pids))


async def delivered_bytes_by_worker(workers: Sequence[Worker], amqp_port: int) -> dict[str, int]:
    """Bytes the broker has sent on each worker's consuming connections (``send_oct``; the broker
    refreshes it every ``collect_statistics_interval``, 5 s by default). A connection is matched to
    its worker by the client's local port, read from the worker's sockets under ``/proc``."""
    port_owner = {port: w.name for w in workers for port in amqp_local_ports(w.pid, amqp_port)}
    listing = await rabbitmqctl("list_connections", "--no-table-headers", "peer_port", "send_oct", "client_properties")
    out = {w.name: 0 for w in workers}
    for line in listing.splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        owner = port_owner.get(int(parts[0]))
        name = _CONNECTION_NAME.search(parts[2])
        if owner is not None and name is not None and name.group(1).endswith("/consume"):
            out[owner] += int(parts[1])
    return out


def amqp_local_ports(pid: int, amqp_port: int) -> set[int]:
    """Local ports of the process's TCP connections to ``amqp_port`` (Linux ``/proc``)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == amqp_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


@pytest.fixture
async def chaos(
    tmp_path: Path, amqp_url: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Chaos]:
    """A chaos world on a fresh database, exchange and queue prefix; torn down whatever happens."""
    monkeypatch.setenv("GASHUB_CONFIG", str(tmp_path / "gashub.toml"))
    async with AsyncExitStack() as stack:
        database_url, drop = await fresh_postgres_database(postgres_url)
        stack.push_async_callback(drop)
        await upgrade_async(database_url)
        world = Chaos(tmp_path, amqp_url, database_url)
        stack.push_async_callback(BrokerAdmin(amqp_url).delete, world.all_queues, world.exchange)
        stack.push_async_callback(world.close_hub)
        stack.callback(world.print_logs)
        stack.push_async_callback(world.kill_workers)
        yield world
