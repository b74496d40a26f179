"""Helpers of the transport contract suite: unique names and a broker seen from outside."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import uuid
from collections.abc import Callable
from typing import Any

import pika
from pika.adapters.asyncio_connection import AsyncioConnection

from hub.transport.pika import PikaTransport


class Names:
    """Exchange and queue names unique to one test, so tests share a broker without meeting."""

    def __init__(self) -> None:
        self.uid = uuid.uuid4().hex[:10]
        self.exchange = f"test.{self.uid}"
        self.client_name = f"gashub-test-{self.uid}"
        self.queues: list[str] = []

    def q(self, label: str) -> str:
        name = f"test.{self.uid}.{label}"
        if name not in self.queues:
            self.queues.append(name)
        return name


class BrokerAdmin:
    """The broker seen from outside the transport under test (raw pika, its own connection)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def _run(self, work: Callable[[Any, asyncio.Future[Any]], None]) -> Any:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Any] = loop.create_future()
        closed: asyncio.Future[None] = loop.create_future()

        def on_open(conn: Any) -> None:
            conn.channel(on_open_callback=lambda ch: work(ch, result))

        def fail(_conn: Any, exc: BaseException) -> None:
            if not result.done():
                result.set_exception(exc)

        def on_close(_conn: Any, exc: BaseException) -> None:
            fail(_conn, exc)
            if not closed.done():
                closed.set_result(None)

        conn = AsyncioConnection(
            pika.URLParameters(self.url),
            on_open_callback=on_open,
            on_open_error_callback=fail,
            on_close_callback=on_close,
            custom_ioloop=loop,
        )
        try:
            async with asyncio.timeout(10):
                return await result
        finally:
            if conn.is_open:
                conn.close()
                await closed

    async def delete(self, queues: list[str], exchange: str) -> None:
        def work(ch: Any, done: asyncio.Future[Any]) -> None:
            def step(remaining: list[str]) -> None:
                if remaining:
                    ch.queue_delete(remaining[0], callback=lambda _f: step(remaining[1:]))
                else:
                    ch.exchange_delete(exchange, callback=lambda _f: done.set_result(None))

            step(list(queues))

        await self._run(work)

    async def get(self, queue: str) -> tuple[Any, Any, bytes]:
        """Take one message (it must be there) and return its method, properties and body."""

        def work(ch: Any, done: asyncio.Future[Any]) -> None:
            ch.basic_get(queue, lambda _ch, method, props, body: done.set_result((method, props, body)), True)

        result: tuple[Any, Any, bytes] = await self._run(work)
        return result

    async def close_connections(self, transport: PikaTransport, client_name: str) -> str:
        """Close the transport's connections from the broker's side (``rabbitmqctl``), or, where the
        broker's CLI is not at hand, cut their sockets. Returns which of the two it did."""
        if shutil.which("rabbitmqctl"):
            listing = await _rabbitmqctl("list_connections", "--no-table-headers", "pid", "client_properties")
            pattern = re.compile(rf'^(\S+)\t.*\{{"connection_name","{re.escape(client_name)}/')
            pids = [m.group(1) for line in listing.splitlines() if (m := pattern.match(line))]
            assert pids, f"no connection named {client_name}/... on the broker:\n{listing}"
            await asyncio.gather(*(_rabbitmqctl("close_connection", pid, "test") for pid in pids))
            return "broker"
        cut_sockets(transport)
        return "socket"


def cut_sockets(transport: PikaTransport) -> None:
    """Abort the transport's TCP connections under pika, as a network failure would."""
    for link in (transport.publisher, transport.consumer):
        link.connection._transport._sock.shutdown(socket.SHUT_RDWR)  # pika's private socket: tests only


async def _rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {args}: {err.decode()}"
    return out.decode()
