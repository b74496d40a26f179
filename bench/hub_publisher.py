"""The publisher side of the hub benchmark: vendor reading envelopes through ``PikaTransport``.

Builds its envelopes first and prints ``ready``; then publishes them in batches with confirms,
several batches in flight, prints ``{"started": t}`` at the first publish and ``{"rate": …}`` at the end.

With ``--queue Q --max-ready N`` it keeps at most about N ready messages in the route's queue, as a
partner system under flow control does: a task reads the queue's depth (a passive declare) every few
milliseconds and the next batch waits while the depth is above N. (Measured on 2026-11-28: it does not
lower the broker's CPU per message in the hub run, so the benchmark's default is to run ahead;
``docs/performance.md``.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.envelope import Envelope
from hub.publisher import to_outbound
from hub.settings import load_settings
from hub.transport.base import OutboundMessage
from hub.transport.pika import PikaTransport


def reading_envelopes(n: int, exchange: str) -> list[OutboundMessage]:
    """``n`` vendor readings (50,000 meters, a second apart) as the hub publishes them."""
    base = 1_795_000_000_000
    return [
        to_outbound(Envelope(type="vendor.demo.reading", source="bench", subject=f"30{i % 50000:012d}", data={
            "event": "reading", "devId": f"30{i % 50000:012d}", "seq": i, "ts": base + i * 1000,
            "total_m3": f"{1000 + i / 1000:.3f}", "valve": "0", "batt": {"low": "0", "mv": 3400}, "rsrp": -95,
        }), exchange=exchange)
        for i in range(n)
    ]


async def main(n: int, batch: int, in_flight: int, queue: str | None, max_ready: int) -> None:
    settings = load_settings()
    assert settings.amqp_url is not None
    transport = PikaTransport(settings.amqp_url.get_secret_value(), name="bench-publisher")
    await transport.connect()
    messages = reading_envelopes(n, settings.exchange)
    print("ready", flush=True)
    chunks = [messages[i:i + batch] for i in range(0, n, batch)]
    sem = asyncio.Semaphore(in_flight)
    below = asyncio.Event()
    below.set()
    waits = 0

    async def watch_depth() -> None:
        assert queue is not None
        while True:
            if (await transport.queue_info(queue)).messages > max_ready:
                below.clear()
            else:
                below.set()
            await asyncio.sleep(0.005)

    async def send(chunk: list) -> None:  # type: ignore[type-arg]
        nonlocal waits
        async with sem:
            if not below.is_set():
                waits += 1
                await below.wait()
            await transport.publish(chunk)

    started = time.time()
    cpu0 = time.process_time()
    print(json.dumps({"started": started}), flush=True)
    watcher = asyncio.create_task(watch_depth()) if queue and max_ready > 0 else None
    await asyncio.gather(*(send(c) for c in chunks))
    elapsed = time.time() - started
    if watcher is not None:
        watcher.cancel()
    print(json.dumps({"rate": n / elapsed, "seconds": elapsed, "cpu_s": time.process_time() - cpu0,
                      "paused_batches": waits}), flush=True)
    await transport.aclose()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--in-flight", type=int, default=4)
    p.add_argument("--queue", help="the route's queue, whose depth --max-ready bounds")
    p.add_argument("--max-ready", type=int, default=0,
                   help="wait while the queue holds more ready messages than this (default 0: never wait)")
    a = p.parse_args()
    asyncio.run(main(a.n, a.batch, a.in_flight, a.queue, a.max_ready))
