"""The raw broker floor: pika alone at its best on this machine.

Persistent messages on a durable queue; the publisher pipelines confirms (a window of unconfirmed
messages on an ``AsyncioConnection``), the consumer uses prefetch and acks every 50 messages;
both run at once. ``--mode one-process`` runs both on one event loop (as
``shared/perf/pika_floor.py``); ``--mode two-processes`` runs the consumer in a child process, as a
hub deployment would. Prints one JSON line: ``{"rate": msg/s, "seconds": …}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
import uuid
from typing import Any

import pika
from pika.adapters.asyncio_connection import AsyncioConnection

BODY = json.dumps({"meter": "30123456789012", "volume_m3": 1234.567, "ts": "2026-11-27T00:00:00+08:00",
                   "pad": "x" * 400}).encode()


async def open_channel(url: str) -> tuple[Any, Any]:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[tuple[Any, Any]] = loop.create_future()

    def on_open(conn: Any) -> None:
        conn.channel(on_open_callback=lambda ch: fut.set_result((conn, ch)))

    AsyncioConnection(pika.URLParameters(url), on_open_callback=on_open,
                      on_open_error_callback=lambda c, e: fut.set_exception(RuntimeError(e)), custom_ioloop=loop)
    return await fut


async def declare(url: str, queue: str) -> None:
    conn, ch = await open_channel(url)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ch.queue_declare(queue, durable=True, callback=lambda _: ch.queue_purge(queue, callback=lambda _: done.set_result(None)))
    await done
    conn.close()


async def consume(url: str, queue: str, n: int, started: Any = None) -> float:
    loop = asyncio.get_running_loop()
    conn, ch = await open_channel(url)
    got = 0
    done: asyncio.Future[float] = loop.create_future()

    def on_msg(channel: Any, method: Any, props: Any, body: bytes) -> None:
        nonlocal got
        got += 1
        if got % 50 == 0 or got == n:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if got == n and not done.done():
            done.set_result(time.time())

    ch.basic_qos(prefetch_count=2000)
    ch.basic_consume(queue, on_msg)
    if started is not None:
        started.set()
    finished = await done
    conn.close()
    return finished


async def publish(url: str, queue: str, n: int, window: int) -> float:
    loop = asyncio.get_running_loop()
    conn, ch = await open_channel(url)
    sent = confirmed = 0
    free = asyncio.Event()
    free.set()

    def on_confirm(frame: Any) -> None:
        nonlocal confirmed
        confirmed = max(confirmed, frame.method.delivery_tag)
        if sent - confirmed < window:
            free.set()

    ready: asyncio.Future[None] = loop.create_future()
    ch.confirm_delivery(on_confirm, callback=lambda _: ready.set_result(None))
    await ready
    props = pika.BasicProperties(delivery_mode=2)
    t0 = time.time()
    while sent < n:
        if sent - confirmed >= window:
            free.clear()
            await free.wait()
        ch.basic_publish("", queue, BODY, props, mandatory=True)
        sent += 1
        if sent % 200 == 0:
            await asyncio.sleep(0)
    while confirmed < n:
        free.clear()
        await free.wait()
    conn.close()
    return t0


async def one_process(url: str, n: int, window: int) -> dict[str, float]:
    queue = f"bench.raw.{uuid.uuid4().hex[:6]}"
    await declare(url, queue)
    consumer = asyncio.create_task(consume(url, queue, n))
    await asyncio.sleep(0.2)
    t0 = await publish(url, queue, n, window)
    t1 = await consumer
    return {"rate": n / (t1 - t0), "seconds": t1 - t0, "queue": queue}  # type: ignore[dict-item]


def _child(url: str, queue: str, n: int, started: Any, result: Any) -> None:
    finished = asyncio.run(consume(url, queue, n, started))
    result.put((finished, time.process_time()))


async def two_processes(url: str, n: int, window: int) -> dict[str, float]:
    queue = f"bench.raw.{uuid.uuid4().hex[:6]}"
    await declare(url, queue)
    ctx = multiprocessing.get_context("spawn")
    started, result = ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_child, args=(url, queue, n, started, result))
    child.start()
    await asyncio.to_thread(started.wait, 30)
    t0 = await publish(url, queue, n, window)
    t1, child_cpu = await asyncio.to_thread(result.get, True, 600)
    child.join(30)
    return {"rate": n / (t1 - t0), "seconds": t1 - t0, "queue": queue, "child_cpu_s": child_cpu}  # type: ignore[dict-item]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int, default=100_000)
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--mode", choices=["one-process", "two-processes"], default="one-process")
    p.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    a = p.parse_args()
    run = one_process if a.mode == "one-process" else two_processes
    out = asyncio.run(run(a.amqp, a.n, a.window))
    out["cpu_s"] = time.process_time() + float(out.get("child_cpu_s", 0.0))
    import subprocess

    subprocess.run(["rabbitmqctl", "delete_queue", str(out["queue"])], capture_output=True, check=False)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
