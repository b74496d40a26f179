"""``PikaTransport``: RabbitMQ through pika's ``AsyncioConnection``.

- Broker: RabbitMQ 3.x (the hub's topology needs nothing newer than 3.8).
- Protocol: AMQP 0-9-1 with pika>=1.3 on the running event loop; no threads, nothing blocks.
- Authentication: user and password in the AMQP URL (``amqp://user:pass@host:5672/vhost``,
  ``amqps://`` for TLS), taken from ``GASHUB_AMQP_URL``. The password never appears in logs or errors.
- Settings: ``url``; ``name``; ``reconnect_backoff`` (seconds between attempts, the last repeats);
  ``heartbeat`` (s); ``connect_timeout`` (s); ``publish_wait`` (how long ``publish`` waits for a
  lost connection to come back before raising ``ConnectionLost``); ``requeue_pause`` (s after a
  failed batch); ``client_name`` (prefix of the connection names the broker shows).

Two connections. The publisher's holds one confirm channel: a batch is written whole, then its
confirms are awaited (``_pika_confirms``). The consumer's holds a channel per consumer plus
short-lived channels for declarations and queries, kept off the publisher's connection because the
broker's flow control blocks a publishing connection. After an unexpected close each connection is
reopened with the backoff schedule until ``aclose()``; topologies are declared again and consumers
resume on their own. pika's exceptions are translated into ``hub.errors`` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pika
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.exceptions import AMQPError, ChannelClosedByBroker

from hub.errors import ConfigError, ConnectionLost, HubError, TransportError, Unroutable
from hub.transport._pika_confirms import ConfirmTracker, PendingBatch
from hub.transport.base import BatchHandler, Delivery, OutboundMessage, QueueInfo, Topology

log = logging.getLogger(__name__)

_PERSISTENT = 2
_NOT_FOUND = 404
_PRECONDITION_FAILED = 406
_CLOSE_TIMEOUT = 5.0
_MISSING_EXCHANGE = re.compile(r"no exchange '(.*)' in vhost")


class _Connection(AsyncioConnection):  # type: ignore[misc]
    """pika's asyncio connection, writing the frames of one loop iteration with one ``send``.

    pika hands every frame (three per message) to the socket on its own; joining them saves two
    system calls and their buffer bookkeeping per message (about an eighth of the CPU per message).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._hub_loop = asyncio.get_running_loop()
        self._outgoing: list[bytes] = []
        super().__init__(*args, **kwargs)

    def _adapter_emit_data(self, data: bytes) -> None:
        if not self._outgoing:
            self._hub_loop.call_soon(self._flush_outgoing)
        self._outgoing.append(data)

    def _flush_outgoing(self) -> None:
        data, self._outgoing = b"".join(self._outgoing), []
        if self._transport is not None and data:
            super()._adapter_emit_data(data)


def _reason(exc: BaseException | None) -> str:
    """The innermost cause of a pika error, for humans."""
    while exc is not None:
        inner = getattr(exc, "exceptions", None)
        if inner:
            exc = inner[-1]
        elif exc.args and isinstance(exc.args[0], BaseException):
            exc = exc.args[0]
        else:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return "unknown reason"


def _translate(exc: BaseException, doing: str) -> HubError:
    if isinstance(exc, HubError):
        return exc
    if isinstance(exc, ChannelClosedByBroker):
        text = f"{doing}: the broker answered {exc.reply_code} {exc.reply_text}"
        if exc.reply_code == _NOT_FOUND:
            return Unroutable(text)
        if exc.reply_code == _PRECONDITION_FAILED:
            return ConfigError(f"{text}; it exists with other settings: delete it or change the topology")
        return TransportError(text)
    return ConnectionLost(f"{doing}: {_reason(exc)}")


class _Channel:
    """A pika channel whose RPCs are awaitable; when the channel closes the pending ones fail."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.closed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        self._pending: set[asyncio.Future[Any]] = set()
        raw.add_on_close_callback(self._on_close)

    @classmethod
    async def open(cls, connection: Any) -> _Channel:
        opened: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        channel = cls(connection.channel(on_open_callback=lambda _ch: _resolve(opened, None)))
        await channel._wait(opened)
        return channel

    def call_soon(self, method: Callable[..., None], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Send an RPC now (pika queues them in order); the future gets the reply frame."""
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        method(*args, callback=lambda frame: _resolve(reply, frame), **kwargs)
        self._pending.add(reply)
        reply.add_done_callback(self._pending.discard)
        return reply

    async def call(self, method: Callable[..., None], *args: Any, **kwargs: Any) -> Any:
        return await self._wait(self.call_soon(method, *args, **kwargs))

    async def _wait(self, reply: asyncio.Future[Any]) -> Any:
        if self.closed.done():
            reply.cancel()
            raise self.closed.result()
        self._pending.add(reply)
        reply.add_done_callback(self._pending.discard)
        return await reply

    def _on_close(self, _raw: Any, reason: BaseException) -> None:
        _resolve(self.closed, reason)
        for reply in list(self._pending):
            if not reply.done():
                reply.set_exception(reason)

    async def close(self) -> None:
        if self.raw.is_open:
            with contextlib.suppress(AMQPError):
                self.raw.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await asyncio.shield(self.closed)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


class _Link:
    """One AMQP connection kept open: reopened with backoff after every loss until closed.

    ``prepare`` runs on each new or repaired connection before the link reports ``ready``.
    """

    def __init__(self, owner: PikaTransport, role: str, prepare: Callable[[Any], Awaitable[None]]) -> None:
        self._owner = owner
        self.role = role
        self._prepare = prepare
        self.connection: Any = None
        self.ready = asyncio.Event()
        self.reconnects = 0
        self._broken = asyncio.Event()
        self._closed: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """First connection: failing raises ``ConnectionLost`` instead of retrying."""
        self.connection = await self._connect()
        try:
            await self._prepare(self.connection)
        except BaseException:
            await self.close()
            raise
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"pika-{self.role}-link")
        if not self._broken.is_set():
            self.ready.set()

    def broken(self, reason: str) -> None:
        """Called from pika's callbacks when the connection or a channel it needs is lost."""
        if self._owner.closing:
            return
        if self.ready.is_set():
            log.warning("transport.pika.connection_lost", extra={"role": self.role, "reason": reason})
        self.ready.clear()
        self._broken.set()

    async def _connect(self) -> Any:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[Any] = loop.create_future()
        closed: asyncio.Future[None] = loop.create_future()

        def on_open_error(_conn: Any, exc: BaseException) -> None:
            if not opened.done():
                opened.set_exception(ConnectionLost(self._owner.unreachable(exc)))

        def on_close(conn: Any, exc: BaseException) -> None:
            _resolve(closed, None)
            if conn is self.connection:
                self.broken(_reason(exc))

        connection = _Connection(
            self._owner.parameters(self.role),
            on_open_callback=lambda conn: _resolve(opened, conn),
            on_open_error_callback=on_open_error,
            on_close_callback=on_close,
            custom_ioloop=loop,
        )
        try:
            async with asyncio.timeout(self._owner.connect_timeout):
                await opened
        except BaseException as exc:
            opened.cancel()
            with contextlib.suppress(AMQPError):
                connection.close()
            if isinstance(exc, TimeoutError):
                raise ConnectionLost(self._owner.unreachable(exc)) from None
            raise
        self._closed = closed
        return connection

    async def _supervise(self) -> None:
        backoff = self._owner.reconnect_backoff
        while True:
            await self._broken.wait()
            attempt = 0
            while self._broken.is_set():
                self._broken.clear()
                # A lost channel on a live connection is reopened at once, the first time.
                channel_only = self.connection is not None and self.connection.is_open
                delay = 0.0 if attempt == 0 and channel_only else backoff[min(attempt, len(backoff) - 1)]
                attempt += 1
                log.warning(
                    "transport.pika.reconnecting",
                    extra={"role": self.role, "attempt": attempt, "delay_s": delay},
                )
                await asyncio.sleep(delay)
                try:
                    if self.connection is None or not self.connection.is_open:
                        self.connection = None
                        self.connection = await self._connect()
                    await self._prepare(self.connection)
                except (HubError, AMQPError) as exc:
                    log.warning(
                        "transport.pika.reconnect_failed",
                        extra={"role": self.role, "attempt": attempt, "reason": _reason(exc)},
                    )
                    self._broken.set()
                except Exception:
                    log.exception("transport.pika.reconnect_failed", extra={"role": self.role})
                    self._broken.set()
            self.reconnects += 1
            self.ready.set()
            log.info("transport.pika.reconnected", extra={"role": self.role, "attempt": attempt})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.ready.set()  # wake whoever waits for the connection: they see the transport closing
        connection, closed = self.connection, self._closed
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(AMQPError):
                connection.close()
            if closed is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_CLOSE_TIMEOUT):
                        await closed


class _PikaConsumer:
    """One ``consume()``: a channel on the consumer connection, reopened after every reconnect."""

    def __init__(
        self, owner: PikaTransport, queue: str, handler: BatchHandler, prefetch: int, max_batch: int
    ) -> None:
        self._owner = owner
        self._queue = queue
        self._handler = handler
        self._prefetch = prefetch
        self._max_batch = max_batch
        self._channel: _Channel | None = None
        self._buffer: list[Delivery] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe once: a missing queue or a lost connection raises here, not later."""
        await self._subscribe(await self._owner.wait_ready(self._owner.consumer))
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"pika-consumer:{self._queue}")

    async def cancel(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        if task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _subscribe(self, connection: Any) -> None:
        try:
            channel = await _Channel.open(connection)
        except (AMQPError, HubError) as exc:
            raise _translate(exc, f"opening a channel to consume {self._queue!r}") from None
        self._channel = channel
        buffer: list[Delivery] = []
        self._buffer = buffer
        queue, wake = self._queue, self._wake

        def on_message(_ch: Any, method: Any, properties: Any, body: bytes) -> None:
            buffer.append(
                Delivery(
                    body=body,
                    routing_key=method.routing_key,
                    message_id=properties.message_id,
                    headers=properties.headers or {},
                    redelivered=method.redelivered,
                    tag=method.delivery_tag,
                    queue=queue,
                )
            )
            wake.set()

        def on_gone(*_args: Any) -> None:
            buffer.clear()  # not acked: the broker hands them out again
            wake.set()

        def on_cancelled_by_broker(_frame: Any) -> None:
            log.warning("transport.pika.consumer_cancelled_by_broker", extra={"queue": queue})
            with contextlib.suppress(AMQPError):
                channel.raw.close()

        channel.raw.add_on_close_callback(on_gone)
        channel.raw.add_on_cancel_callback(on_cancelled_by_broker)
        try:
            await channel.call(channel.raw.basic_qos, prefetch_count=self._prefetch)
            await channel.call(channel.raw.basic_consume, queue, on_message)
        except (AMQPError, HubError) as exc:
            await channel.close()
            raise _translate(exc, f"consuming from queue {queue!r}") from None

    async def _run(self) -> None:
        try:
            while True:
                await self._drain()
                await asyncio.Event().wait()
        finally:
            if self._channel is not None:
                await self._channel.close()

    async def _drain(self) -> None:
        """Hand buffered deliveries over batch by batch until the channel is gone."""
        channel = self._channel
        assert channel is not None
        buffer, limit = self._buffer, self._max_batch
        while True:
            if not buffer:
                if channel.closed.done():
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = buffer[:limit]
            del buffer[:limit]
            await self._settle(channel, batch)

    async def _settle(self, channel: _Channel, batch: list[Delivery]) -> None:
        last = batch[-1].tag
        try:
            await self._handler(batch)
        except Exception:
            log.warning(
                "transport.pika.batch_requeued",
                exc_info=True,
                extra={"queue": self._queue, "size": len(batch)},
            )
            self._answer(channel, last, ack=False)
            await asyncio.sleep(self._owner.requeue_pause)
            return
        self._answer(channel, last, ack=True)

    def _answer(self, channel: _Channel, last_tag: int, *, ack: bool) -> None:
        if channel.closed.done():
            # The broker already took the batch back and delivers it again.
            log.info("transport.pika.settle_after_channel_lost", extra={"queue": self._queue})
            return
        try:
            if ack:
                channel.raw.basic_ack(last_tag, multiple=True)
            else:
                channel.raw.basic_nack(last_tag, multiple=True, requeue=True)
        except AMQPError:
            log.warning("transport.pika.settle_failed", exc_info=True, extra={"queue": self._queue})

    async def _resubscribe(self) -> None:
        backoff = self._owner.reconnect_backoff
        attempt = 0
        while True:
            connection = await self._owner.wait_ready(self._owner.consumer, forever=True)
            try:
                await self._subscribe(connection)
            except HubError as exc:
                delay = backoff[min(attempt, len(backoff) - 1)]
                attempt += 1
                log.warning(
                    "transport.pika.consumer_resubscribe_failed",
                    extra={"queue": self._queue, "attempt": attempt, "delay_s": delay, "reason": str(exc)},
                )
                await asyncio.sleep(delay)
            else:
                if attempt:
                    log.info("transport.pika.consumer_resumed", extra={"queue": self._queue})
                return


class PikaTransport:
    """RabbitMQ transport: persistent, confirmed, ``mandatory`` publishing and batch consumers."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "rabbitmq",
        reconnect_backoff: Sequence[float] = (0.2, 0.5, 1, 2, 5),
        heartbeat: int = 30,
        connect_timeout: float = 10.0,
        publish_wait: float = 30.0,
        requeue_pause: float = 0.05,
        client_name: str = "gashub",
    ) -> None:
        try:
            parsed = pika.URLParameters(url)
        except (ValueError, TypeError, AMQPError) as exc:
            raise ConfigError(f"not a valid AMQP URL: {exc}", where="amqp_url") from None
        if not reconnect_backoff:
            raise ConfigError("needs at least one delay", where="reconnect_backoff")
        self.name = name
        self.reconnect_backoff = tuple(reconnect_backoff)
        self.connect_timeout = connect_timeout
        self.requeue_pause = requeue_pause
        self.closing = False
        self._url = url
        self._heartbeat = heartbeat
        self._publish_wait = publish_wait
        self._client_name = client_name
        self._where = (
            f"RabbitMQ at {parsed.host}:{parsed.port} "
            f"(vhost {parsed.virtual_host!r}, user {parsed.credentials.username!r})"
        )
        self.publisher = _Link(self, "publish", self._prepare_publisher)
        self.consumer = _Link(self, "consume", self._redeclare)
        self._topologies: list[Topology] = []
        self._confirms = ConfirmTracker()
        self._publish_channel: Any = None
        self._consumers: list[_PikaConsumer] = []
        self._connected = False

    def parameters(self, role: str) -> Any:
        params = pika.URLParameters(self._url)
        params.heartbeat = self._heartbeat
        params.connection_attempts = 1
        params.blocked_connection_timeout = max(self._publish_wait, 60.0)
        params.client_properties = {"connection_name": f"{self._client_name}/{role}"}
        return params

    def unreachable(self, exc: BaseException) -> str:
        return (
            f"cannot connect to {self._where}: {_reason(exc)}. Check that the broker is running and "
            "that GASHUB_AMQP_URL points at it with the right user, password and vhost."
        )

    async def connect(self) -> None:
        if self._connected:
            return
        self.closing = False
        try:
            await self.publisher.open()
            await self.consumer.open()
        except BaseException:
            await self.aclose()
            raise
        self._connected = True
        log.info("transport.pika.connected", extra={"broker": self._where})

    def healthy(self) -> bool:
        ready = self.publisher.ready.is_set() and self.consumer.ready.is_set()
        return self._connected and not self.closing and ready

    async def wait_ready(self, link: _Link, *, forever: bool = False) -> Any:
        """The link's connection once it is up; ``ConnectionLost`` after ``publish_wait`` or never."""
        if not self._connected or self.closing:
            raise ConnectionLost("the RabbitMQ transport is not connected (call connect()) or is closed")
        if not link.ready.is_set():
            try:
                async with asyncio.timeout(None if forever else self._publish_wait):
                    await link.ready.wait()
            except TimeoutError:
                raise ConnectionLost(
                    f"no connection to {self._where} for {self._publish_wait:g}s; still retrying"
                ) from None
        if self.closing:
            raise ConnectionLost("the RabbitMQ transport was closed")
        return link.connection

    # Publishing

    async def _prepare_publisher(self, connection: Any) -> None:
        old, self._publish_channel = self._publish_channel, None
        if old is not None:
            self._confirms.fail_all(lambda _b: ConnectionLost("the publishing channel was replaced"))
            if old.is_open:
                with contextlib.suppress(AMQPError):
                    old.close()
        try:
            channel = await _Channel.open(connection)
            channel.raw.add_on_close_callback(self._on_publish_channel_closed)
            channel.raw.add_on_return_callback(self._on_return)
            self._publish_channel = channel.raw
            await channel.call(channel.raw.confirm_delivery, self._on_confirm)
        except AMQPError as exc:
            raise _translate(exc, "opening the publishing channel") from None
        await self._redeclare(connection)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        self._confirms.on_confirm(
            method.delivery_tag, multiple=method.multiple, ack=isinstance(method, pika.spec.Basic.Ack)
        )

    def _on_return(self, _ch: Any, method: Any, properties: Any, _body: bytes) -> None:
        self._confirms.on_return(
            properties.message_id,
            method.exchange,
            method.routing_key,
            f"{method.reply_code} {method.reply_text}",
        )

    def _on_publish_channel_closed(self, channel: Any, reason: BaseException) -> None:
        if channel is not self._publish_channel:
            return
        self._publish_channel = None
        missing = None
        if isinstance(reason, ChannelClosedByBroker) and reason.reply_code == _NOT_FOUND:
            found = _MISSING_EXCHANGE.search(reason.reply_text)
            missing = found.group(1) if found else ""

        def error(batch: PendingBatch) -> TransportError:
            if missing is not None and (not missing or any(m.exchange == missing for m in batch.messages)):
                return Unroutable(f"exchange {missing or '?'!r} does not exist: {_reason(reason)}")
            return ConnectionLost(
                f"the connection to {self._where} dropped before the broker confirmed "
                f"{len(batch.messages)} messages ({_reason(reason)}); publish them again"
            )

        self._confirms.fail_all(error)
        self.publisher.broken(f"publishing channel closed: {_reason(reason)}")

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        if not messages:
            return
        await self.wait_ready(self.publisher)
        channel = self._publish_channel
        if channel is None or not channel.is_open:
            raise ConnectionLost(f"the publishing channel to {self._where} is closed; publish again")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch = self._confirms.open_batch(messages, done)
        send, properties, sent = channel.basic_publish, pika.BasicProperties, 0
        try:
            for m in messages:
                send(
                    m.exchange,
                    m.routing_key,
                    m.body,
                    properties(
                        content_type="application/json",
                        delivery_mode=_PERSISTENT,
                        message_id=m.message_id,
                        correlation_id=m.correlation_id,
                        type=m.type,
                        timestamp=m.timestamp,
                        headers=dict(m.headers) if m.headers else None,
                    ),
                    True,
                )
                sent += 1
        except (AMQPError, TypeError, ValueError) as exc:
            self._confirms.truncate(
                batch, sent, TransportError(f"cannot publish message {messages[sent].message_id}: {exc!r}")
            )
        await done

    # Declarations and queries, on the consumer connection

    async def declare(self, topology: Topology) -> None:
        await self._declare(await self.wait_ready(self.consumer), topology)
        if topology not in self._topologies:
            self._topologies.append(topology)

    async def _redeclare(self, connection: Any) -> None:
        for topology in self._topologies:
            await self._declare(connection, topology)

    async def _declare(self, connection: Any, topology: Topology) -> None:
        try:
            channel = await _Channel.open(connection)
            raw = channel.raw
            replies = [
                channel.call_soon(
                    raw.exchange_declare, exchange=topology.exchange, exchange_type="topic", durable=True
                )
            ]
            for spec in topology.queues:
                arguments: dict[str, Any] = {}
                if spec.ttl_ms is not None:
                    arguments["x-message-ttl"] = spec.ttl_ms
                if spec.dead_letter_to is not None:
                    arguments["x-dead-letter-exchange"] = ""
                    arguments["x-dead-letter-routing-key"] = spec.dead_letter_to
                replies.append(
                    channel.call_soon(
                        raw.queue_declare, queue=spec.name, durable=True, arguments=arguments or None
                    )
                )
                replies.extend(
                    channel.call_soon(
                        raw.queue_bind, queue=spec.name, exchange=topology.exchange, routing_key=pattern
                    )
                    for pattern in spec.bindings
                )
            await asyncio.gather(*replies)
        except (AMQPError, HubError) as exc:
            raise _translate(exc, f"declaring exchange {topology.exchange!r} and its queues") from None
        await channel.close()

    async def _query(self, method: str, queue: str, **kwargs: Any) -> Any:
        channel = await _Channel.open(await self.wait_ready(self.consumer))
        try:
            return (await channel.call(getattr(channel.raw, method), queue=queue, **kwargs)).method
        finally:
            await channel.close()

    async def queue_info(self, queue: str) -> QueueInfo:
        try:
            ok = await self._query("queue_declare", queue, passive=True)
        except (AMQPError, HubError) as exc:
            raise _translate(exc, f"queue {queue!r}") from None
        return QueueInfo(queue, int(ok.message_count), int(ok.consumer_count))

    async def purge(self, queue: str) -> int:
        try:
            ok = await self._query("queue_purge", queue)
        except (AMQPError, HubError) as exc:
            error = _translate(exc, f"purging queue {queue!r}")
            if isinstance(error, Unroutable):
                return 0
            raise error from None
        return int(ok.message_count)

    # Consuming and closing

    async def consume(
        self, queue: str, handler: BatchHandler, *, prefetch: int = 1000, max_batch: int = 500
    ) -> _PikaConsumer:
        consumer = _PikaConsumer(self, queue, handler, prefetch, max_batch)
        await consumer.start()
        self._consumers.append(consumer)
        return consumer

    async def aclose(self) -> None:
        self.closing = True
        try:
            consumers, self._consumers = self._consumers, []
            for consumer in consumers:
                await consumer.cancel()
            await self.consumer.close()
            await self.publisher.close()
            self._confirms.fail_all(lambda _b: ConnectionLost("the RabbitMQ transport was closed"))
        except Exception:
            log.exception("transport.pika.close_failed")
        self._connected = False
