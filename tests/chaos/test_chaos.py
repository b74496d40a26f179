"""Chaos on the production stack (RabbitMQ + PostgreSQL): workers killed with ``kill -9`` while
thousands of messages are in flight, connections closed by the broker mid-stream, and workers
competing for one queue. In every case each message takes effect exactly once: none lost, none
doubled, nothing dead-lettered, the audit chain intact."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable
from urllib.parse import urlparse

import pytest
from sqlalchemy import select

from core.db.tables import reading
from hub.app import Role
from hub.store.audit import verify_chain
from hub.store.tables import dead_letter, hop, processed
from tests.chaos.conftest import ROUTE, Chaos, close_connections, connection_pids, delivered_bytes_by_worker
from tests.flow.conftest import equals

pytestmark = [pytest.mark.slow, pytest.mark.broker, pytest.mark.postgres, pytest.mark.timeout(240)]


async def assert_exactly_once(chaos: Chaos, message_ids: list[str]) -> int:
    """Every message stored once, its ledger row and one ``delivered`` hop; nothing dead; the audit
    chain intact; the route's queues empty. Returns the number of ``duplicate`` hops."""
    total = len(message_ids)
    assert await chaos.count(reading) == total
    assert await chaos.count(reading, column=reading.c.message_id) == total
    async with chaos.hub.db.read() as conn:
        stored_ids = set((await conn.scalars(select(reading.c.message_id))).all())
        chain = await verify_chain(conn)
    assert stored_ids == set(message_ids), "the stored readings are not the published messages"
    assert await chaos.count(processed, processed.c.route == ROUTE) == total
    assert await chaos.count(hop, hop.c.route == ROUTE, hop.c.outcome == "delivered") == total
    assert await chaos.count(hop, hop.c.route == ROUTE, hop.c.outcome == "delivered", column=hop.c.message_id) == total
    assert await chaos.count(hop, hop.c.route == ROUTE, hop.c.outcome.in_(("dead", "retry"))) == 0
    assert await chaos.count(dead_letter) == 0
    assert chain.ok, f"audit chain broken at {chain.first_bad_seq}: {chain.problem}"
    for name in chaos.all_queues:
        info = await chaos.queue(name)
        assert info.messages == 0, f"{info.messages} messages left on {name}"
    return await chaos.count(hop, hop.c.route == ROUTE, hop.c.outcome == "duplicate")


async def test_kill9_worker_with_10000_in_flight(chaos: Chaos) -> None:
    total = 10_000
    t0 = time.monotonic()
    await chaos.open()
    envelopes = chaos.envelopes(total)
    await chaos.publish(envelopes, batch=500)
    assert (await chaos.queue()).messages == total  # all 10,000 waiting before any worker starts

    a, b = chaos.start_worker("a"), chaos.start_worker("b")
    await chaos.wait_for(lambda: equals(chaos.consumers(), 2), 60, "two consumers", alive=(a, b))
    await chaos.wait_for(lambda: _at_least(chaos.stored(), 1_500), 90, "1,500 readings stored", alive=(a, b))

    # Mid-stream. Freeze both workers so the broker's counts hold still, note how many messages are
    # waiting, kill -9 the first worker, and see the broker take back what it held unacknowledged.
    for w in (a, b):
        w.signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(0.3)  # let the broker process acks that were already on the wire
        stored_at_kill = await chaos.stored()
        ready_before = (await chaos.queue()).messages
        await a.kill()
        await chaos.wait_for(lambda: equals(chaos.consumers(), 1), 30, "the killed worker's consumer to go")
        ready_after = (await chaos.queue()).messages
    finally:
        b.signal(signal.SIGCONT)
    returned = ready_after - ready_before
    print(
        f"kill -9 worker a with {stored_at_kill:,} stored and {ready_before:,} waiting: "
        f"the broker took back {returned:,} unacknowledged deliveries"
    )
    assert stored_at_kill < total, "the kill came too late to be mid-stream"
    assert ready_before > 0, "the kill came too late to be mid-stream"
    assert returned > 0, "the killed worker held no unacknowledged deliveries: nothing was redelivered"

    c = chaos.start_worker("c")
    await chaos.wait_for(lambda: equals(chaos.stored(), total), 150, f"{total:,} readings stored", alive=(b, c))
    await chaos.wait_drained()
    for w in (b, c):
        assert await w.stop() == 0, f"worker {w.name} did not stop cleanly on SIGTERM:\n{w.tail()}"

    duplicates = await assert_exactly_once(chaos, [e.id for e in envelopes])
    assert duplicates <= returned, "more duplicates than deliveries the broker took back"
    print(
        f"kill -9: {total:,} stored exactly once; {returned:,} deliveries redelivered, "
        f"{duplicates:,} absorbed as 'duplicate' hops (committed but unacked when killed); "
        f"{time.monotonic() - t0:.1f}s"
    )


async def test_broker_connection_drop_mid_stream(chaos: Chaos) -> None:
    total = 5_000
    t0 = time.monotonic()
    hub = chaos.hub
    await hub.start(Role.RUN, http=False)
    transport = chaos.transport
    envelopes = chaos.envelopes(total)
    published = 0

    def progress(n: int) -> None:
        nonlocal published
        published = n

    # Paced, so that publishing goes on while the broker closes the connections; while rabbitmqctl
    # works, the publisher trickles (one message per confirmed batch, no pause), so that the close
    # most likely catches a batch awaiting its confirms, which the publisher then publishes again.
    trickle = asyncio.Event()
    publisher = asyncio.create_task(
        chaos.publish(envelopes, batch=50, pause=0.05, trickle=trickle, progress=progress), name="chaos-publisher"
    )
    try:
        await chaos.wait_for(lambda: published >= 1_000, 60, "1,000 published")
        await chaos.wait_for(lambda: _at_least(chaos.stored(), 200), 60, "200 readings stored")
        pids = await connection_pids(chaos.client_name)
        assert len(pids) == 2, f"expected the hub's publishing and consuming connections, found {pids}"
        trickle.set()
        closing_at = published
        await close_connections(pids)
        closed_at = published
        await chaos.wait_for(
            lambda: transport.publisher.reconnects >= 1 and transport.consumer.reconnects >= 1,
            30,
            "both of the hub's connections to be reopened",
        )
        trickle.clear()
        retried = await asyncio.wait_for(publisher, 120)
    finally:
        if not publisher.done():
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)
    print(
        f"broker closed the hub's 2 connections between {closing_at:,} and {closed_at:,} published; "
        f"the publisher published a failed batch again {retried} time(s)"
    )
    assert closed_at < total, "the connections were closed after publishing had finished"

    await chaos.wait_for(lambda: equals(chaos.stored(), total), 90, f"{total:,} readings stored")
    await chaos.wait_for(lambda: transport.healthy(), 30, "the transport to report healthy")
    await chaos.wait_drained()
    assert (await chaos.queue()).consumers == 1, "the route's consumer did not resume after the reconnect"
    duplicates = await assert_exactly_once(chaos, [e.id for e in envelopes])
    assert all(t.healthy() for t in hub.transports.values())
    print(f"connection drop: {total:,} stored exactly once; {duplicates} duplicate hops; {time.monotonic() - t0:.1f}s")


async def test_three_workers_compete(chaos: Chaos) -> None:
    total = 6_000
    t0 = time.monotonic()
    await chaos.open()
    workers = [chaos.start_worker(name) for name in ("a", "b", "c")]
    await chaos.wait_for(lambda: equals(chaos.consumers(), 3), 60, "three consumers", alive=workers)

    envelopes = chaos.envelopes(total)
    consumers_seen: set[int] = set()

    async def watch() -> None:
        while True:
            consumers_seen.add((await chaos.queue()).consumers)
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch(), name="chaos-consumer-watch")
    try:
        await chaos.publish(envelopes, batch=500)
        await chaos.wait_for(lambda: equals(chaos.stored(), total), 120, f"{total:,} readings stored", alive=workers)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    await chaos.wait_drained()
    assert consumers_seen == {3}, f"the queue's consumer count changed while working: {consumers_seen}"

    # Each worker's share, from the bytes the broker delivered on its consuming connections.
    body = min(len(e.to_json()) for e in envelopes)
    port = urlparse(chaos.amqp_url).port or 5672
    shares: dict[str, int] = {}

    async def caught_up() -> bool:
        shares.update(await delivered_bytes_by_worker(workers, port))
        return sum(shares.values()) >= total * body

    await chaos.wait_for(caught_up, 20, "the broker's connection statistics", every=1.0)
    overall = sum(shares.values())
    print("delivered bytes per worker: " + ", ".join(f"{k} {v / overall:.0%}" for k, v in shares.items()))
    for name, sent in shares.items():
        assert sent >= overall * 0.10, f"worker {name} got {sent / overall:.1%} of the deliveries: {shares}"

    for w in workers:
        assert await w.stop() == 0, f"worker {w.name} did not stop cleanly on SIGTERM:\n{w.tail()}"
    duplicates = await assert_exactly_once(chaos, [e.id for e in envelopes])
    assert duplicates == 0, "no worker died, so no message should have been redelivered"
    print(f"three workers: {total:,} stored exactly once; {time.monotonic() - t0:.1f}s")


async def _at_least(value: Awaitable[int], minimum: int) -> bool:
    return (await value) >= minimum
