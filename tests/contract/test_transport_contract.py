"""The transport contract, run against every transport (``transport`` is parametrised).

Tests marked ``broker`` cover what only RabbitMQ does (dropped connections, AMQP properties) and use
``PikaTransport`` alone. Every test has its own exchange and queues (``names``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from broker_admin import BrokerAdmin, Names, cut_sockets

from hub.errors import ConnectionLost, Unroutable
from hub.transport.base import (
    DEFAULT_EXCHANGE,
    Delivery,
    OutboundMessage,
    QueueInfo,
    QueueSpec,
    Topology,
    Transport,
)
from hub.transport.pika import PikaTransport


def message(names: Names, key: str, message_id: str, *, exchange: str | None = None, **kw: Any) -> OutboundMessage:
    return OutboundMessage(
        routing_key=key,
        body=f'{{"id": "{message_id}"}}'.encode(),
        message_id=message_id,
        exchange=names.exchange if exchange is None else exchange,
        **kw,
    )


def messages(names: Names, key: str, prefix: str, count: int) -> list[OutboundMessage]:
    return [message(names, key, f"{prefix}-{i:04d}") for i in range(count)]


async def collect(
    transport: Transport,
    queue: str,
    count: int,
    *,
    within: float = 5.0,
    prefetch: int = 1000,
    max_batch: int = 500,
    batches: list[int] | None = None,
) -> list[Delivery]:
    """Consume until ``count`` deliveries arrived, then cancel; fails after ``within`` seconds."""
    got: list[Delivery] = []
    enough = asyncio.Event()

    async def handler(batch: list[Delivery]) -> None:
        got.extend(batch)
        if batches is not None:
            batches.append(len(batch))
        if len(got) >= count:
            enough.set()

    handle = await transport.consume(queue, handler, prefetch=prefetch, max_batch=max_batch)
    try:
        async with asyncio.timeout(within):
            await enough.wait()
    except TimeoutError:
        pytest.fail(f"{queue}: {len(got)} of {count} messages arrived in {within}s")
    finally:
        await handle.cancel()
    return got


async def settles_at(transport: Transport, queue: str, *, messages: int | None = None, consumers: int = 0) -> QueueInfo:
    """The queue's info once it shows ``consumers`` (and ``messages``, when given), or after 3 s.

    The broker settles acks, requeues and consumer counts asynchronously; so does ``MemoryTransport``
    for consumer counts. While a consumer holds unacked messages, RabbitMQ leaves them out of
    ``messages`` and ``MemoryTransport`` counts them: tests compare ``messages`` only when no
    consumer holds any.
    """
    info = await transport.queue_info(queue)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and (
        info.consumers != consumers or (messages is not None and info.messages != messages)
    ):
        await asyncio.sleep(0.02)
        info = await transport.queue_info(queue)
    return info


def ids(deliveries: Sequence[Delivery]) -> list[str]:
    return [str(d.message_id) for d in deliveries]


# Routing


async def test_topic_patterns_route_star_and_hash(transport: Transport, names: Names) -> None:
    star, hash_, alarm = names.q("star"), names.q("hash"), names.q("alarm")
    await transport.declare(
        Topology(
            names.exchange,
            (QueueSpec(star, ("meter.*",)), QueueSpec(hash_, ("meter.#",)), QueueSpec(alarm, ("#.alarm",))),
        )
    )
    for key in ["meter.read", "meter.read.daily", "meter", "valve.alarm", "alarm"]:
        await transport.publish([message(names, key, key)])

    expected = {
        star: {"meter.read"},
        hash_: {"meter.read", "meter.read.daily", "meter"},
        alarm: {"valve.alarm", "alarm"},
    }
    async with asyncio.timeout(15):
        for queue, keys in expected.items():
            assert (await transport.queue_info(queue)).messages == len(keys), queue
            got = await collect(transport, queue, len(keys))
            assert {d.message_id for d in got} == keys
            assert all(d.routing_key == d.message_id and d.queue == queue for d in got)


async def test_a_message_reaches_every_bound_queue_once(transport: Transport, names: Names) -> None:
    a, b, other = names.q("a"), names.q("b"), names.q("other")
    await transport.declare(
        Topology(
            names.exchange,
            (
                QueueSpec(a, ("reading.*",)),
                QueueSpec(b, ("reading.gas", "reading.#")),  # two matching bindings, one copy
                QueueSpec(other, ("invoice.*",)),
            ),
        )
    )
    await transport.publish(messages(names, "reading.gas", "r", 10))
    async with asyncio.timeout(10):
        assert (await transport.queue_info(a)).messages == 10
        assert (await transport.queue_info(b)).messages == 10
        assert (await transport.queue_info(other)).messages == 0
        assert ids(await collect(transport, b, 10)) == [f"r-{i:04d}" for i in range(10)]


async def test_unroutable_on_the_exchange_raises(transport: Transport, names: Names) -> None:
    queue = names.q("bound")
    await transport.declare(Topology(names.exchange, (QueueSpec(queue, ("meter.*",)),)))
    async with asyncio.timeout(10):
        with pytest.raises(Unroutable):
            await transport.publish([message(names, "invoice.paid", "lost")])
        with pytest.raises(Unroutable):
            await transport.publish([message(names, "meter.read", "ok-1"), message(names, "valve.x", "lost")])
        await transport.publish([message(names, "meter.read", "ok-2")])  # the transport goes on
        assert {d.message_id for d in await collect(transport, queue, 1)} <= {"ok-1", "ok-2"}


async def test_unroutable_on_the_default_exchange_raises(transport: Transport, names: Names) -> None:
    queue = names.q("direct")
    await transport.declare(Topology(names.exchange, (QueueSpec(queue),)))
    async with asyncio.timeout(10):
        with pytest.raises(Unroutable):
            await transport.publish([message(names, names.q("missing"), "lost", exchange=DEFAULT_EXCHANGE)])
        await transport.publish([message(names, queue, "direct-1", exchange=DEFAULT_EXCHANGE)])
        assert ids(await collect(transport, queue, 1)) == ["direct-1"]


async def test_publishing_to_an_undeclared_exchange_raises_unroutable(transport: Transport, names: Names) -> None:
    queue = names.q("q")
    await transport.declare(Topology(names.exchange, (QueueSpec(queue, ("#",)),)))
    async with asyncio.timeout(10):
        with pytest.raises(Unroutable):
            await transport.publish([message(names, "a.b", "lost", exchange=f"{names.exchange}.undeclared")])
        await transport.publish([message(names, "a.b", "after")])
        assert ids(await collect(transport, queue, 1)) == ["after"]


# Consuming


async def test_consumers_get_every_message_in_publish_order(transport: Transport, names: Names) -> None:
    queue = names.q("ordered")
    await transport.declare(Topology(names.exchange, (QueueSpec(queue, ("reading.#",)),)))
    sent = messages(names, "reading.gas", "m", 300)
    async with asyncio.timeout(15):
        for start in range(0, 300, 100):
            await transport.publish(sent[start : start + 100])
        sizes: list[int] = []
        got = await collect(transport, queue, 300, max_batch=50, batches=sizes)
    assert ids(got) == [m.message_id for m in sent]
    assert max(sizes) <= 50
    assert not any(d.redelivered for d in got)
    assert got[0].body == sent[0].body
    assert got[0].routing_key == "reading.gas"


async def test_returning_from_the_handler_acks_the_batch(transport: Transport, names: Names) -> None:
    queue = names.q("acked")
    await transport.declare(Topology(names.exchange, (QueueSpec(queue, ("x.*",)),)))
    async with asyncio.timeout(15):
        await transport.publish(messages(names, "x.y", "a", 40))
        sizes: list[int] = []
        got = await collect(transport, queue, 40, prefetch=20, max_batch=7, batches=sizes)
        assert len(got) == 40
        assert max(sizes) <= 7
        info = await settles_at(transport, queue, messages=0)
        assert (info.messages, info.consumers) == (0, 0)
        await transport.publish([message(names, "x.y", "b")])
        # Nothing acked comes back: the next consumer sees only the new message.
        assert ids(await collect(transport, queue, 1)) == ["b"]


async def test_a_failing_handler_gets_the_batch_again_marked_redelivered(transport: Transport, names: Names) -> None:
    queue = names.q("retry")
    await transport.declare(Topology(names.exchange, (QueueSpec(queue, ("x.*",)),)))
    failed: list[str] = []
    done: list[Delivery] = []
    all_done = asyncio.Event()

    async def handler(batch: list[Delivery]) -> None:
        if not failed:
            failed.extend(ids(batch))
            raise RuntimeError("partner down")
        done.extend(batch)
        if {d.message_id for d in done} >= {f"f-{i:04d}" for i in range(5)}:
            all_done.set()

    async with asyncio.timeout(10):
        await transport.publish(messages(names, "x.y", "f", 5))
        handle = await transport.consume(queue, handler, max_batch=5)
        await all_done.wait()
        await handle.cancel()
        assert failed
        again = [d for d in done if d.message_id in failed]
        assert sorted(ids(again)) == sorted(failed)
        assert all(d.redelivered for d in again)
        assert (await settles_at(transport, queue, messages=0)).messages == 0


async def test_competing_consumers_share_the_queue_without_duplicates(transport: Transport, names: Names) -> None:
    queue = names.q("shared")
    await transport.declare(Topology(names.exchange, (QueueSpec(queue, ("job.*",)),)))
    seen: dict[str, list[str]] = {"one": [], "two": []}
    total = asyncio.Event()

    def handler(who: str) -> Any:
        async def handle(batch: list[Delivery]) -> None:
            await asyncio.sleep(0.005)
            seen[who].extend(ids(batch))
            if len(seen["one"]) + len(seen["two"]) >= 200:
                total.set()

        return handle

    async with asyncio.timeout(15):
        one = await transport.consume(queue, handler("one"), prefetch=10, max_batch=5)
        two = await transport.consume(queue, handler("two"), prefetch=10, max_batch=5)
        assert (await settles_at(transport, queue, consumers=2)).consumers == 2
        await transport.publish(messages(names, "job.run", "j", 200))
        await total.wait()
        await one.cancel()
        await two.cancel()
    everything = seen["one"] + seen["two"]
    assert Counter(everything).most_common(1)[0][1] == 1, "a message went to both consumers"
    assert set(everything) == {f"j-{i:04d}" for i in range(200)}
    assert seen["one"], "one consumer got everything"
    assert seen["two"], "one consumer got everything"


async def test_cancel_puts_unacked_messages_back(transport: Transport, names: Names) -> None:
    queue = names.q("held")
    await transport.declare(Topology(names.exchange, (QueueSpec(queue, ("x.*",)),)))
    handed: list[str] = []
    got_batch = asyncio.Event()

    async def stuck(batch: list[Delivery]) -> None:
        handed.extend(ids(batch))
        got_batch.set()
        await asyncio.Event().wait()

    async with asyncio.timeout(10):
        await transport.publish(messages(names, "x.y", "h", 10))
        handle = await transport.consume(queue, stuck, prefetch=10, max_batch=10)
        await got_batch.wait()
        await handle.cancel()
        await handle.cancel()  # safe twice
        info = await settles_at(transport, queue, messages=10)
        assert (info.messages, info.consumers) == (10, 0)
        again = await collect(transport, queue, 10)
        assert sorted(ids(again)) == [f"h-{i:04d}" for i in range(10)]
        assert all(d.redelivered for d in again if d.message_id in handed)


async def test_consuming_an_unknown_queue_raises_unroutable(transport: Transport, names: Names) -> None:
    async def handler(batch: list[Delivery]) -> None:
        raise AssertionError("never called")

    await transport.declare(Topology(names.exchange, ()))
    with pytest.raises(Unroutable):
        await transport.consume(names.q("missing"), handler)


# Delay queues, metadata, queries


async def test_a_delay_queue_dead_letters_into_its_target_after_the_ttl(transport: Transport, names: Names) -> None:
    work, delay = names.q("work"), names.q("delay-300ms")
    await transport.declare(
        Topology(names.exchange, (QueueSpec(work, ("job.#",)), QueueSpec(delay, ttl_ms=300, dead_letter_to=work)))
    )
    arrived: list[tuple[float, Delivery]] = []
    came = asyncio.Event()

    async def handler(batch: list[Delivery]) -> None:
        arrived.extend((time.monotonic(), d) for d in batch)
        came.set()

    async with asyncio.timeout(10):
        handle = await transport.consume(work, handler)
        started = time.monotonic()
        await transport.publish([message(names, delay, "later", exchange=DEFAULT_EXCHANGE, headers={"x-attempt": 2})])
        await came.wait()
        await handle.cancel()
    when, delivery = arrived[0]
    assert 0.25 <= when - started < 3.0
    assert (delivery.message_id, delivery.queue) == ("later", work)
    assert delivery.body == b'{"id": "later"}'
    assert delivery.headers["x-attempt"] == 2
    assert len(arrived) == 1
    assert (await transport.queue_info(delay)).messages == 0


async def test_headers_and_message_id_survive_the_trip(transport: Transport, names: Names) -> None:
    queue = names.q("meta")
    await transport.declare(Topology(names.exchange, (QueueSpec(queue, ("meta.*",)),)))
    headers = {"route": "wechat-to-billing", "attempt": 3, "urgent": True, "partner": {"code": "WX", "n": 1}}
    await transport.publish(
        [
            message(names, "meta.x", "with-headers", headers=headers, correlation_id="corr-1", type="meta.x"),
            message(names, "meta.x", "bare"),
        ]
    )
    async with asyncio.timeout(10):
        first, second = await collect(transport, queue, 2)
    assert first.message_id == "with-headers"
    assert first.headers == headers
    assert second.message_id == "bare"
    assert second.headers == {}


async def test_queue_info_counts_messages_and_consumers(transport: Transport, names: Names) -> None:
    queue = names.q("counted")
    await transport.declare(Topology(names.exchange, (QueueSpec(queue, ("c.*",)),)))
    async with asyncio.timeout(10):
        assert await transport.queue_info(queue) == QueueInfo(queue, 0, 0)
        await transport.publish(messages(names, "c.d", "c", 3))
        assert await transport.queue_info(queue) == QueueInfo(queue, 3, 0)
        started = asyncio.Event()

        async def stuck(batch: list[Delivery]) -> None:
            started.set()
            await asyncio.Event().wait()

        handle = await transport.consume(queue, stuck)
        assert (await settles_at(transport, queue, consumers=1)).consumers == 1
        await started.wait()
        await handle.cancel()
        assert await settles_at(transport, queue, messages=3) == QueueInfo(queue, 3, 0)
        with pytest.raises(Unroutable):
            await transport.queue_info(names.q("missing"))


async def test_purge_drops_ready_messages(transport: Transport, names: Names) -> None:
    queue = names.q("purged")
    await transport.declare(Topology(names.exchange, (QueueSpec(queue, ("p.*",)),)))
    async with asyncio.timeout(10):
        await transport.publish(messages(names, "p.q", "p", 4))
        assert await transport.purge(queue) == 4
        assert (await transport.queue_info(queue)).messages == 0
        assert await transport.purge(queue) == 0
        assert await transport.purge(names.q("missing")) == 0


async def test_declare_is_idempotent_and_health_follows_the_connection(transport: Transport, names: Names) -> None:
    topology = Topology(names.exchange, (QueueSpec(names.q("twice"), ("t.*",)),))
    await transport.declare(topology)
    await transport.declare(topology)
    assert transport.healthy()
    await transport.aclose()
    assert not transport.healthy()
    with pytest.raises(ConnectionLost):
        await transport.publish([message(names, "t.u", "closed")])
    await transport.aclose()  # never raises, even twice


# What only the broker does


@pytest.mark.broker
async def test_amqp_properties_mirror_the_message(rabbitmq: PikaTransport, names: Names, broker: BrokerAdmin) -> None:
    queue = names.q("props")
    await rabbitmq.declare(Topology(names.exchange, (QueueSpec(queue, ("meter.*",)),)))
    await rabbitmq.publish(
        [
            message(
                names,
                "meter.read",
                "01HZX",
                correlation_id="corr-7",
                type="meter.reading",
                timestamp=1_764_201_600,
                headers={"route": "scada"},
            )
        ]
    )
    async with asyncio.timeout(10):
        method, props, body = await broker.get(queue)
    assert (method.exchange, method.routing_key, body) == (names.exchange, "meter.read", b'{"id": "01HZX"}')
    assert props.delivery_mode == 2
    assert props.content_type == "application/json"
    assert (props.message_id, props.correlation_id, props.type) == ("01HZX", "corr-7", "meter.reading")
    assert props.timestamp == 1_764_201_600
    assert props.headers == {"route": "scada"}


@pytest.mark.broker
async def test_nothing_is_lost_when_the_broker_drops_both_connections(
    rabbitmq: PikaTransport, names: Names, broker: BrokerAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hub.transport.pika")
    queue = names.q("durable")
    await rabbitmq.declare(Topology(names.exchange, (QueueSpec(queue, ("meter.*",)),)))
    seen: set[str] = set()
    progress = asyncio.Event()

    async def handler(batch: list[Delivery]) -> None:
        seen.update(ids(batch))
        progress.set()

    async def until(condition: Callable[[], bool]) -> None:
        while not condition():
            progress.clear()
            await progress.wait()

    published: list[str] = []
    stop = asyncio.Event()

    async def publish_until_stopped() -> None:
        while not stop.is_set():
            batch = messages(names, "meter.read", f"d{len(published):05d}", 50)
            while True:
                try:
                    await rabbitmq.publish(batch)
                    break
                except ConnectionLost:  # unconfirmed: publish the batch again, consumers deduplicate
                    await asyncio.sleep(0.01)
            published.extend(m.message_id for m in batch)
            await asyncio.sleep(0.005)

    async def drop_and_check() -> None:
        await until(lambda: len(seen) >= 500)
        how = await broker.close_connections(rabbitmq, names.client_name)
        await until(lambda: rabbitmq.publisher.reconnects >= 1 and rabbitmq.consumer.reconnects >= 1)
        after_reconnect = len(published)
        await until(lambda: len(published) >= after_reconnect + 500)  # confirms work again
        stop.set()
        await publishing
        await until(lambda: seen >= set(published))
        assert rabbitmq.healthy(), how

    handle = await rabbitmq.consume(queue, handler, prefetch=100, max_batch=20)
    publishing = asyncio.create_task(publish_until_stopped())
    try:
        await asyncio.wait_for(drop_and_check(), 30)
    finally:
        publishing.cancel()  # still running only when the test failed
        await asyncio.gather(publishing, return_exceptions=True)
        await handle.cancel()
    events = {(r.getMessage(), getattr(r, "role", None)) for r in caplog.records}
    assert ("transport.pika.reconnected", "publish") in events
    assert ("transport.pika.reconnected", "consume") in events


@pytest.mark.broker
async def test_a_cut_connection_fails_unconfirmed_publishes_then_recovers(
    rabbitmq: PikaTransport, names: Names
) -> None:
    queue = names.q("cut")
    await rabbitmq.declare(Topology(names.exchange, (QueueSpec(queue, ("meter.*",)),)))
    batch = messages(names, "meter.read", "c", 2000)
    async with asyncio.timeout(30):
        pending = asyncio.create_task(rabbitmq.publish(batch))
        await asyncio.sleep(0)  # the batch is written and waits for its confirms
        assert not pending.done()
        cut_sockets(rabbitmq)
        with pytest.raises(ConnectionLost):
            await pending
        assert not rabbitmq.healthy()
        await rabbitmq.publish(batch)  # waits for the reconnection, then is confirmed
        assert rabbitmq.healthy()
        got = await collect(rabbitmq, queue, 2000, within=15)
    assert {d.message_id for d in got} == {m.message_id for m in batch}
