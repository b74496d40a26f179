"""CTWing's side of the meter benchmarks: ``dataReport`` pushes of many meters, as fast as the hub takes
them or at a set rate.

    .venv/bin/python bench/ctwing_pusher.py --url URL --devices FILE [--first I --count K]
                                           [--concurrency C] [--rate R --duration S]

The pushes are what ``connectors.nbiot.simulator.CtwingSimulator.report`` makes: a pass-through
``dataReport`` whose ``APPdata`` is the meter's real CJ/T 188 ``901F`` reply (base64), with the
platform's ids, packet numbers and a millisecond ``timestamp``, POSTed as JSON by the simulator's own
``push``. Devices come from FILE (one JSON object a line: ``device_id``, ``imei``, ``address``,
``volume``), lines ``first … first + count - 1``.

Without ``--rate`` every device pushes once; the pushes are built first (``ready`` is printed),
then sent with ``concurrency`` requests in flight. With ``--rate`` pushes are built as they are
sent, on a schedule of ``rate`` a second for ``duration`` seconds (devices in turn, again from the
first once all have pushed), never more than ``concurrency`` in flight: a push whose turn comes while
all are busy waits, and the achieved rate says so; nothing is sent after ``duration``.

The pushes go over plain HTTP/1.1 keep-alive connections (``KeepAliveClient``: one TCP connection per
request in flight, the request written as bytes, the status line and ``Content-Length`` body read
back). aiohttp's client cost about 150 µs of CPU per push, and the pushers share the hub's two cores:
a partner's CPU is not the hub's, so the load generator should take as little of it as it can.

Prints JSON lines: ``{"ready": …}``, ``{"started": t}``, ``{"progress": …}`` each second, and the
totals at the end (``sent``, answers by HTTP status, ``errors``, ``rate``, ``cpu_s``, latency
percentiles of the answers in ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.meters.cjt188 import load_meter_profiles
from connectors.meters.simulator import SimulatedMeter
from connectors.nbiot.simulator import CtwingSimulator, NbDevice


def emit(doc: dict[str, Any]) -> None:
    print(json.dumps(doc), flush=True)


def devices_from(path: Path, first: int, count: int | None, profile: str) -> list[NbDevice]:
    meter_profile = load_meter_profiles().get(profile)
    out = []
    with path.open() as f:
        for n, line in enumerate(f):
            if n < first:
                continue
            if count is not None and len(out) >= count:
                break
            d = json.loads(line)
            out.append(NbDevice(d["device_id"], d["imei"],
                                SimulatedMeter(d["address"], meter_profile, volume_m3=Decimal(d["volume"]))))
    return out


class _Exchange(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request at a time, its answer's status returned."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.answer: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError(f"connection closed before the answer ({exc!r})"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).split(b"\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[:end + 4 + length]
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(int(head[0].split(b" ", 2)[1]))

    async def post(self, request: bytes, body: bytes) -> int:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        self.transport.write(body)
        return await self.answer


class KeepAliveClient:
    """POSTs JSON bodies to one URL over a pool of keep-alive connections (at most one request each)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.head = (f"POST {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                     "Content-Type: application/json\r\nContent-Length: ").encode()
        self.timeout = timeout
        self.idle: list[_Exchange] = []
        self.open: list[_Exchange] = []

    async def post(self, body: bytes) -> int:
        conn = self.idle.pop() if self.idle else None
        if conn is None or conn.closed:
            _, conn = await asyncio.get_running_loop().create_connection(_Exchange, self.host, self.port)
            self.open.append(conn)
        try:
            async with asyncio.timeout(self.timeout):
                status = await conn.post(self.head + str(len(body)).encode() + b"\r\n\r\n", body)
        except BaseException:
            if conn.transport is not None:
                conn.transport.close()
            raise
        self.idle.append(conn)
        return status

    async def aclose(self) -> None:
        for conn in self.open:
            if conn.transport is not None:
                conn.transport.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Pusher:
    def __init__(self, url: str, devices: list[NbDevice], concurrency: int) -> None:
        self.sim = CtwingSimulator(url, devices)
        self.client = KeepAliveClient(url)
        self.ids = [d.device_id for d in devices]
        self.slots = asyncio.Semaphore(concurrency)
        self.concurrency = concurrency
        self.answers: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.sent = 0

    async def one(self, body: bytes) -> None:
        try:
            t0 = time.perf_counter()
            status = await self.client.post(body)
            self.latencies.append((time.perf_counter() - t0) * 1000)
            self.answers[status] += 1
        except (OSError, TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1
        finally:
            self.slots.release()

    def body(self, n: int) -> bytes:
        return orjson.dumps(self.sim.report(self.ids[n % len(self.ids)]))

    async def all_once(self) -> float:
        bodies = [self.body(n) for n in range(len(self.ids))]
        emit({"ready": len(bodies)})
        started = time.time()
        emit({"started": started})
        tasks = set()
        reporter = asyncio.create_task(self.report(started))
        for body in bodies:
            await self.slots.acquire()
            self.sent += 1
            task = asyncio.create_task(self.one(body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        reporter.cancel()
        return started

    async def paced(self, rate: float, duration: float) -> float:
        emit({"ready": len(self.ids)})
        started = time.time()
        emit({"started": started})
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        tasks = set()
        reporter = asyncio.create_task(self.report(started))
        total = int(rate * duration)
        end = t0 + duration
        for n in range(total):
            due = t0 + n / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                async with asyncio.timeout_at(end):
                    await self.slots.acquire()
            except TimeoutError:
                break  # the hub took fewer than asked: the pushes not sent are the shortfall
            self.sent += 1
            task = asyncio.create_task(self.one(self.body(n)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        reporter.cancel()
        return started

    async def report(self, started: float) -> None:
        while True:
            await asyncio.sleep(1.0)
            emit({"progress": {"t": round(time.time() - started, 1), "sent": self.sent,
                               "answered": sum(self.answers.values()), "ok": self.answers.get(200, 0),
                               "errors": sum(self.errors.values())}})


async def main(args: argparse.Namespace) -> None:
    devices = devices_from(Path(args.devices), args.first, args.count, args.profile)
    pusher = Pusher(args.url, devices, args.concurrency)
    cpu0 = time.process_time()
    try:
        if args.rate:
            started = await pusher.paced(args.rate, args.duration)
        else:
            started = await pusher.all_once()
        elapsed = time.time() - started
    finally:
        await pusher.client.aclose()
    emit({"done": True, "sent": pusher.sent, "answers": {str(k): v for k, v in pusher.answers.items()},
          "errors": dict(pusher.errors), "seconds": elapsed, "rate": pusher.sent / elapsed,
          "cpu_s": time.process_time() - cpu0,
          "latency_ms": {"p50": percentile(pusher.latencies, 0.50), "p95": percentile(pusher.latencies, 0.95),
                         "p99": percentile(pusher.latencies, 0.99),
                         "max": max(pusher.latencies, default=float("nan"))}})


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="the hub's CTWing push endpoint")
    p.add_argument("--devices", required=True, help="device file (JSON lines)")
    p.add_argument("--first", type=int, default=0, help="first line of the device file to use")
    p.add_argument("--count", type=int, default=None, help="devices to use (default: all from --first)")
    p.add_argument("--profile", default="cjt188-2018", help="meter profile of the devices' frames")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight at most (default 64)")
    p.add_argument("--rate", type=float, default=0.0, help="pushes a second (default: every device once, flat out)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of pushing with --rate (default 30)")
    args = p.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(args))
    else:
        uvloop.run(main(args))
