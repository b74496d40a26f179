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
reopened with the backoff schedule until ``aclose()`` (``_pika_link``); topologies are declared
again and consumers resume on their own. pika's exceptions are translated into ``hub.errors`` in
these modules and never leave them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from typing import Any

import pika
from pika.exceptions import AMQPError, ChannelClosedByBroker

from hub.errors import ConfigError, ConnectionLost, HubError, TransportError, Unroutable
from hub.transport._pika_confirms import ConfirmTracker, PendingBatch
from hub.transport._pika_deliver import Deliver
from hub.transport._pika_link import NOT_FOUND, Channel, HubConnection, Link, reason, translate
from hub.transport.base import BatchHandler, Delivery, OutboundMessage, QueueInfo, Topology

log = logging.getLogger(__name__)

_PERSISTENT = 2
_MISSING_EXCHANGE = re.compile(r"no exchange '(.*)' in vhost")


class _PikaConsumer:
    """One ``consume()``: a channel on the consumer connection, reopened after every reconnect."""

    def __init__(self, owner: PikaTransport, queue: str, handler: BatchHandler, prefetch: int, max_batch: int) -> None:
        self._owner = owner
        self._queue = queue
        self._handler = handler
        self._prefetch = prefetch
        self._max_batch = max_batch
        self._channel: Channel | None = None
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
            channel = await Channel.open(connection)
        except (AMQPError, HubError) as exc:
            raise translate(exc, f"opening a channel to consume {self._queue!r}") from None
        self._channel = channel
        buffer: list[Delivery] = []
        self._buffer = buffer
        queue, wake = self._queue, self._wake

        def on_message(_ch: Any, method: Any, properties: Any, body: bytes) -> None:
            buffer.append(Delivery(body, method.routing_key, properties.message_id, properties.headers or {},
                                   method.redelivered, method.delivery_tag, queue))
            wake.set()

        def on_deliver(d: Deliver) -> None:  # the same, read without pika's frame objects
            buffer.append(Delivery(d.body, d.routing_key, d.message_id, d.headers or {}, d.redelivered,
                                   d.delivery_tag, queue))
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
            ok = await channel.call(channel.raw.basic_consume, queue, on_message)
            if isinstance(connection, HubConnection):
                connection.tap(channel.raw, ok.method.consumer_tag, on_deliver)
        except (AMQPError, HubError) as exc:
            await channel.close()
            raise translate(exc, f"consuming from queue {queue!r}") from None

    async def _run(self) -> None:
        try:
            while True:
                await self._drain()
                await self._resubscribe()
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

    async def _settle(self, channel: Channel, batch: list[Delivery]) -> None:
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

    def _answer(self, channel: Channel, last_tag: int, *, ack: bool) -> None:
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
        expected = "expected amqp://user:password@host:5672/vhost (or amqps://)"
        if url.partition("://")[0].lower() not in ("amqp", "amqps"):
            raise ConfigError(f"not an AMQP URL; {expected}", where="amqp_url")
        try:
            parsed = pika.URLParameters(url)
        except (ValueError, TypeError, IndexError, AMQPError) as exc:
            raise ConfigError(f"not a valid AMQP URL ({exc}); {expected}", where="amqp_url") from None
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
        self.publisher = Link(self, "publish", self._prepare_publisher)
        self.consumer = Link(self, "consume", self._redeclare)
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
            f"cannot connect to {self._where}: {reason(exc)}. Check that the broker is running and "
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

    async def wait_ready(self, link: Link, *, forever: bool = False) -> Any:
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
            channel = await Channel.open(connection)
            channel.raw.add_on_close_callback(self._on_publish_channel_closed)
            channel.raw.add_on_return_callback(self._on_return)
            self._publish_channel = channel.raw
            await channel.call(channel.raw.confirm_delivery, self._on_confirm)
        except AMQPError as exc:
            raise translate(exc, "opening the publishing channel") from None
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

    def _on_publish_channel_closed(self, channel: Any, cause: BaseException) -> None:
        if channel is not self._publish_channel:
            return
        self._publish_channel = None
        missing = None
        if isinstance(cause, ChannelClosedByBroker) and cause.reply_code == NOT_FOUND:
            found = _MISSING_EXCHANGE.search(cause.reply_text)
            missing = found.group(1) if found else ""

        def error(batch: PendingBatch) -> TransportError:
            if missing is not None and (not missing or any(m.exchange == missing for m in batch.messages)):
                return Unroutable(f"exchange {missing or '?'!r} does not exist: {reason(cause)}")
            return ConnectionLost(
                f"the connection to {self._where} dropped before the broker confirmed "
                f"{len(batch.messages)} messages ({reason(cause)}); publish them again"
            )

        self._confirms.fail_all(error)
        self.publisher.broken(f"publishing channel closed: {reason(cause)}")

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
            channel = await Channel.open(connection)
            raw = channel.raw
            replies = [
                channel.call_soon(raw.exchange_declare, exchange=topology.exchange, exchange_type="topic", durable=True)
            ]
            for spec in topology.queues:
                # Classic queues in the v2 format (RabbitMQ ≥ 3.10) spend about half the broker CPU
                # of v1 on persistent messages that wait in a backlog.
                arguments: dict[str, Any] = {"x-queue-version": 2}
                if spec.ttl_ms is not None:
                    arguments["x-message-ttl"] = spec.ttl_ms
                if spec.dead_letter_to is not None:
                    arguments["x-dead-letter-exchange"] = ""
                    arguments["x-dead-letter-routing-key"] = spec.dead_letter_to
                replies.append(
                    channel.call_soon(raw.queue_declare, queue=spec.name, durable=True, arguments=arguments or None)
                )
                replies.extend(
                    channel.call_soon(raw.queue_bind, queue=spec.name, exchange=topology.exchange, routing_key=pattern)
                    for pattern in spec.bindings
                )
            await asyncio.gather(*replies)
        except (AMQPError, HubError) as exc:
            raise translate(exc, f"declaring exchange {topology.exchange!r} and its queues") from None
        await channel.close()

    async def _query(self, method: str, queue: str, **kwargs: Any) -> Any:
        channel = await Channel.open(await self.wait_ready(self.consumer))
        try:
            return (await channel.call(getattr(channel.raw, method), queue=queue, **kwargs)).method
        finally:
            await channel.close()

    async def queue_info(self, queue: str) -> QueueInfo:
        try:
            ok = await self._query("queue_declare", queue, passive=True)
        except (AMQPError, HubError) as exc:
            raise translate(exc, f"queue {queue!r}") from None
        return QueueInfo(queue, int(ok.message_count), int(ok.consumer_count))

    async def purge(self, queue: str) -> int:
        try:
            ok = await self._query("queue_purge", queue)
        except (AMQPError, HubError) as exc:
            error = translate(exc, f"purging queue {queue!r}")
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
