"""Resilience flows on both stacks: a partner down (circuit breaker), a crash between commit and
publish (outbox and inbox), the same message many times at once, and the safety lane under load."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

import core.outbox
from connectors.vendor_push.simulator import VendorCloudSimulator
from core.catalogue import Lane
from core.db.tables import alarm, outbox, reading, valve_event
from hub.connectors.context import HubConnectorContext
from hub.envelope import Envelope
from hub.outbox_relay import OutboxRelay
from hub.store.tables import dead_letter, hop, inbox
from hub.transport.base import Delivery
from tests.flow.conftest import OPS_TOKEN, VENDOR_TOKEN, Stack, equals, eventually

AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}


class SimulatedCrash(Exception):
    """The process "dies" here: nothing after this point of the code path runs."""


async def count(hub: Any, table: Any, *where: Any) -> int:
    async with hub.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def pending_outbox(hub: Any) -> int:
    async with hub.db.read() as conn:
        return await core.outbox.pending_count(conn)


async def route_outcomes(hub: Any, route: str, message_id: str | None = None) -> list[str]:
    where = [hop.c.route == route]
    if message_id is not None:
        where.append(hop.c.message_id == message_id)
    async with hub.db.read() as conn:
        rows = await conn.execute(select(hop.c.outcome).where(*where).order_by(hop.c.seq))
        return [str(r.outcome) for r in rows]


def vendor(stack: Stack, hub: Any, meters: int = 20) -> VendorCloudSimulator:
    return VendorCloudSimulator(f"{stack.base_url(hub)}/partners/vendor-demo/push", VENDOR_TOKEN, meters=meters)


def count_calls(hub: Any, connector: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call the hub makes to ``connector`` (the simulators deduplicate, so they would hide one)."""
    target = hub.connectors[connector]
    real = target.deliver
    calls: list[str] = []

    async def deliver(envelope: Envelope, action: str) -> Any:
        calls.append(str(envelope.data.get("command_id") or envelope.id))
        return await real(envelope, action)

    monkeypatch.setattr(target, "deliver", deliver)
    return calls


def close_command_id(sim: VendorCloudSimulator, doc: dict[str, Any]) -> str:
    # vendor-meter-alarm maps alarm_id = "vendor-{devId}-{seq}"; core.handlers.alarms closes "close-{alarm_id}".
    return f"close-vendor-{doc['devId']}-{doc['seq']}"


def notification(n: int) -> Envelope:
    return Envelope(type="notification.requested", source="test", data={
        "notification_id": f"n-breaker-{n}", "kind": "bill", "phone": f"138{n:08d}", "params": {"amount": "1.00"}})


def meter_reading(n: int, *, prefix: str = "31") -> Envelope:
    return Envelope(type="meter.reading", source="test", data={
        "meter_id": f"{prefix}{n:012d}", "read_at": "2026-11-27T08:00:00+08:00", "volume_m3": f"{n % 9000}.125",
        "source": "manual"})


# 1. Circuit breaker ------------------------------------------------------------------------------


async def test_breaker_pauses_the_route_while_the_partner_is_down_then_delivers_each_once(stack: Stack) -> None:
    threshold, reset_after = 2, 1.0
    hub = await stack.start_hub(breaker={"failure_threshold": threshold, "reset_after_s": reset_after})
    breaker = hub.breakers["sms"]
    sms = stack.sms
    sms.down = True
    envs = [notification(n) for n in range(10)]
    await hub.publisher.publish(envs)

    await eventually(lambda: breaker.opened_count >= 1 and str(breaker.state) != "closed",
                     what="the breaker to open", timeout=10)
    assert str(breaker.state) == "open"
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.get(f"{stack.base_url(hub)}/ops/routes") as resp:
            assert resp.status == 200
            routes = {r["name"]: r for r in (await resp.json())["routes"]}
    shown = routes["sms-send"]["breaker"]
    # Open, or already half-open when the request took longer than reset_after on a busy machine
    # (CI saw it once): either way the route is paused and the opening is counted.
    assert shown["state"] in ("open", "half-open"), shown
    assert shown["opened"] >= 1

    # Without a breaker the retry policy (4 attempts, 0.2 + 0.4 + 0.8 s) would dead-letter all ten
    # within ~1.5 s; the partner stays down well beyond that.
    down_for = 3.5
    await asyncio.sleep(down_for)
    assert await count(hub, dead_letter) == 0, "messages were dead-lettered while the breaker was open"
    dlq = await hub.transports[Lane.NORMAL].queue_info(hub.runtimes["sms-send"].route.queues.dead)
    assert dlq.messages == 0
    assert sms.sent == []
    times = list(sms.request_times)
    assert times, "the gateway was never called"
    first = times[0]
    # First wave: the batch's calls that were already under way when the breaker opened, at most
    # one per message. Afterwards: at most one half-open trial per reset period.
    first_wave = [t for t in times if t - first < 0.5]
    later = [t for t in times if t - first >= 0.5]
    elapsed = times[-1] - first if later else 0.0
    allowed_trials = math.floor(elapsed / reset_after) + 1
    print(f"\n[{stack.kind}] partner down {down_for}s: first wave {len(first_wave)} calls, "
          f"then {len(later)} trial calls (allowed {allowed_trials}); breaker opened {breaker.opened_count}x")
    assert threshold <= len(first_wave) <= len(envs)
    assert len(later) <= allowed_trials, f"{len(later)} calls while open, at most {allowed_trials} trials"
    assert len(later) <= down_for / reset_after + 1
    assert await _sms_hops(hub, "delivered") == 0

    before_up = sms.requests
    sms.down = False  # the partner is back
    await eventually(lambda: len(sms.sent) == len(envs), what="all ten SMS sent", timeout=15)
    await eventually(lambda: equals(_sms_hops(hub, "delivered"), len(envs)), what="ten delivered hops")
    await asyncio.sleep(0.5)  # anything doubled would arrive now
    assert {s["out_id"] for s in sms.sent} == {e.id for e in envs}
    assert len(sms.sent) == len(envs)
    # Every request after the partner came back succeeded, so each is one send: exactly ten.
    assert sms.requests - before_up == len(envs), f"{sms.requests - before_up} sends for {len(envs)} messages"
    assert await _sms_hops(hub, "delivered") == len(envs)
    assert await count(hub, dead_letter) == 0
    assert str(breaker.state) == "closed"


async def _sms_hops(hub: Any, outcome: str) -> int:
    return await count(hub, hop, hop.c.route == "sms-send", hop.c.outcome == outcome)


# 2. Outbox: a crash between commit and publish ---------------------------------------------------


async def test_outbox_row_published_again_after_a_crash_before_the_mark_acts_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_mark = core.outbox.mark_published
    crashed: list[list[str]] = []

    async def mark_then_crash_once(conn: Any, ids: Sequence[str]) -> None:
        if not crashed:  # the broker has confirmed; the process dies before the row is marked
            crashed.append(list(ids))
            raise SimulatedCrash("died between the broker's confirm and mark_published")
        await real_mark(conn, ids)

    monkeypatch.setattr(core.outbox, "mark_published", mark_then_crash_once)
    hub = await stack.start_hub()
    calls = count_calls(hub, "valves", monkeypatch)
    sim = vendor(stack, hub)
    try:
        doc = sim.alarm(7, "leak")
        status, _ = await sim.push(doc)
        assert status == 200
        await eventually(lambda: bool(crashed), what="the relay's first pass")
        [[command_msg]] = crashed
        # The relay's next pass (after its 1 s pause) publishes the same row again, same message id.
        await eventually(lambda: equals(route_outcomes(hub, "valve-commands", command_msg), ["delivered", "duplicate"]),
                         what="one delivered and one duplicate hop", timeout=10)
        await eventually(lambda: equals(pending_outbox(hub), 0), what="no pending outbox rows")
        await eventually(lambda: equals(count(hub, valve_event), 1), what="valve state recorded")
        await asyncio.sleep(0.3)
    finally:
        await sim.aclose()
    assert calls == [close_command_id(sim, doc)], calls
    assert len(stack.valves.commands) == 1
    assert stack.valves.valves == {sim.meter_id(7): "closed"}
    assert await count(hub, outbox) == 1
    assert await count(hub, valve_event) == 1
    # The reply to the duplicate has the same derived id, so valve-states takes it as a duplicate too.
    assert sorted(await route_outcomes(hub, "valve-states")) in (["delivered"], ["delivered", "duplicate"])


async def test_a_second_hub_takes_over_pending_outbox_rows_of_a_dead_one(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await stack.start_hub()
    # The first hub's relay is not running (as if it died): its rows stay pending.
    relay_task = next(t for t in first._tasks if t.get_name() == "outbox-relay")
    relay_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await relay_task
    first_calls = count_calls(first, "valves", monkeypatch)
    sim = vendor(stack, first)
    try:
        doc7 = sim.alarm(7, "leak")
        assert (await sim.push(doc7))[0] == 200
        await eventually(lambda: equals(pending_outbox(first), 1), what="the valve command in the outbox")

        class PublishThenDie:
            """Publishes for real (the broker confirms), then the process dies before the mark."""

            async def publish(self, envelopes: Sequence[Envelope], **options: Any) -> None:
                await first.publisher.publish(envelopes, **options)
                raise SimulatedCrash("died after publishing, before mark_published")

        die = PublishThenDie()
        dying = OutboxRelay(first.db, {Lane.NORMAL: die, Lane.SAFETY: die},  # type: ignore[dict-item]
                            first.metrics)
        with pytest.raises(SimulatedCrash):
            await dying.run_once()
        assert await pending_outbox(first) == 1  # the mark was rolled back with the "crash"
        await eventually(lambda: equals(count(first, valve_event), 1), what="the first copy executed")

        doc8 = sim.alarm(8, "leak")  # committed, never published by the first hub
        assert (await sim.push(doc8))[0] == 200
        await eventually(lambda: equals(pending_outbox(first), 2), what="two pending rows")
    finally:
        await sim.aclose()
    await first.stop()
    assert first_calls == [close_command_id(sim, doc7)]

    second = await stack.start_hub()  # same database (and, on rabbitmq, the same broker and queues)
    second_calls = count_calls(second, "valves", monkeypatch)
    await eventually(lambda: equals(pending_outbox(second), 0), what="the second hub's relay took over")
    await eventually(lambda: equals(count(second, valve_event), 2), what="both valve states recorded")
    await eventually(lambda: equals(_sorted(route_outcomes(second, "valve-commands")),
                                 ["delivered", "delivered", "duplicate"]),
                     what="valve-commands: two delivered, one duplicate")
    await asyncio.sleep(0.3)
    assert second_calls == [close_command_id(sim, doc8)], second_calls
    assert [c["command_id"] for c in stack.valves.commands] == [close_command_id(sim, doc7),
                                                               close_command_id(sim, doc8)]
    assert stack.valves.valves == {sim.meter_id(7): "closed", sim.meter_id(8): "closed"}
    assert await count(second, alarm) == 2
    assert await count(second, outbox) == 2


async def _sorted(value: Any) -> list[Any]:
    return sorted(await value)


# 3. Inbound dedup across a crash -----------------------------------------------------------------


async def test_inbox_entry_left_unpublished_by_a_crash_is_published_when_the_partner_sends_again(
    stack: Stack,
) -> None:
    hub = await stack.start_hub()
    sim = vendor(stack, hub)
    try:
        doc = sim.reading(3)
        partner_key = f"{doc['devId']}:{doc['seq']}"
        name = hub.connectors["vendor"].context.name
        first = Envelope(type="vendor.demo.reading", source=name, subject=doc["devId"], data=doc)

        class DiesBeforePublish:
            async def publish(self, envelopes: Sequence[Envelope], **options: Any) -> None:
                raise SimulatedCrash("died after the inbox commit, before publishing")

        # The real receive path, up to the crash: inbox admit, message and hop committed, no publish.
        crashing = HubConnectorContext(hub.db, DiesBeforePublish(), hub.metrics, name)  # type: ignore[arg-type]
        with pytest.raises(SimulatedCrash):
            await crashing.receive(first, partner_key=partner_key)
        assert await _inbox_published(hub, name, partner_key) is False
        await asyncio.sleep(0.3)
        assert await count(hub, reading) == 0  # nothing was published

        status, answer = await sim.push(doc)  # the vendor never heard OK, so it sends again
        assert status == 200
        assert (answer["msg"], answer["message_id"]) == ("ok", first.id)
        await eventually(lambda: equals(count(hub, reading), 1), what="the reading stored")
        await eventually(lambda: equals(_inbox_published(hub, name, partner_key), True), what="marked published")

        status, answer = await sim.push(doc)
        assert (status, answer["msg"], answer["message_id"]) == (200, "duplicate", first.id)
        await asyncio.sleep(0.5)
        assert await count(hub, reading) == 1
        async with hub.db.read() as conn:
            stored_by = await conn.scalar(select(reading.c.message_id))
            hops = (await conn.execute(select(hop.c.route, hop.c.outcome).where(
                hop.c.message_id == first.id).order_by(hop.c.seq))).all()
        assert stored_by == first.id
        assert [(h.route, str(h.outcome)) for h in hops] == [(f"in:{name}", "received"),
                                                             ("vendor-readings", "delivered")]
    finally:
        await sim.aclose()


async def _inbox_published(hub: Any, source: str, key: str) -> bool:
    async with hub.db.read() as conn:
        published = (await conn.execute(select(inbox.c.published_us).where(
            inbox.c.source == source, inbox.c.partner_key == key))).one().published_us
    return published is not None


# 4. The same message many times at once ----------------------------------------------------------


async def test_the_same_reading_published_five_times_concurrently_is_applied_once(stack: Stack) -> None:
    hub = await stack.start_hub()
    env = meter_reading(1)
    await asyncio.gather(*(hub.publisher.publish([env]) for _ in range(5)))
    await eventually(lambda: equals(_count_hops(hub, "readings", env.id), 5), what="five settled copies")
    await asyncio.sleep(0.3)
    assert sorted(await route_outcomes(hub, "readings", env.id)) == ["delivered"] + ["duplicate"] * 4
    assert await count(hub, reading) == 1
    assert await count(hub, dead_letter) == 0


async def test_five_consumers_settling_the_same_message_at_once_apply_it_once(stack: Stack) -> None:
    """Five batches with the same message in the route's pipeline at the same time, as when
    competing consumers (or processes) get copies of it: the ledger lets one through."""
    hub = await stack.start_hub()
    env = meter_reading(2)
    runtime = hub.runtimes["readings"]
    deliveries = [Delivery(body=env.to_json(), routing_key=env.type, message_id=env.id, headers={},
                           redelivered=n > 0, tag=10_000 + n, queue=runtime.route.queues.main) for n in range(5)]
    await asyncio.gather(*(runtime.pipeline.handle([d]) for d in deliveries))
    assert sorted(await route_outcomes(hub, "readings", env.id)) == ["delivered"] + ["duplicate"] * 4
    assert await count(hub, reading) == 1


async def test_the_same_notification_five_times_concurrently_calls_the_partner_once(stack: Stack) -> None:
    hub = await stack.start_hub()
    env = notification(1)
    await asyncio.gather(*(hub.publisher.publish([env]) for _ in range(5)))
    await eventually(lambda: equals(_count_hops(hub, "sms-send", env.id), 5), what="five settled copies")
    await asyncio.sleep(0.3)
    assert len(stack.sms.sent) == 1  # the simulator deduplicates by out_id, as a good gateway would
    assert sorted(await route_outcomes(hub, "sms-send", env.id)) == ["delivered"] + ["duplicate"] * 4
    assert stack.sms.requests == 1


async def _count_hops(hub: Any, route: str, message_id: str) -> int:
    return len(await route_outcomes(hub, route, message_id))


# 5. Safety lane isolation ------------------------------------------------------------------------

BACKLOG = 3000
SAFETY_BOUND_S = 3.0


async def test_alarm_closes_the_valve_quickly_behind_a_backlog_of_readings(stack: Stack) -> None:
    hub = await stack.start_hub()
    # Queue the whole backlog first (consumers paused), so it is really there when the alarm comes.
    await hub.stop_route("readings")
    backlog = [meter_reading(n) for n in range(BACKLOG)]
    for start in range(0, BACKLOG, 500):
        await hub.publisher.publish(backlog[start:start + 500])
    queue = hub.runtimes["readings"].route.queues.main
    await eventually(lambda: _true_async(hub.transports[Lane.NORMAL].queue_info(queue), BACKLOG),
                     what=f"{BACKLOG} readings queued")
    sim = vendor(stack, hub)
    try:
        doc = sim.alarm(7, "leak")
        cid = close_command_id(sim, doc)
        await hub.start_route("readings")
        t0 = time.monotonic()
        status, _ = await sim.push(doc)
        assert status == 200
        await eventually(lambda: cid in stack.valves.arrived_at, what="the valve command",
                         timeout=SAFETY_BOUND_S * 5)
        latency = stack.valves.arrived_at[cid] - t0
        stored_then = await count(hub, reading)
        print(f"\n[{stack.kind}] alarm → valve command in {latency * 1000:.0f} ms; "
              f"{stored_then}/{BACKLOG} readings stored when it arrived")
        assert latency < SAFETY_BOUND_S, f"valve command took {latency:.2f}s behind {BACKLOG} readings"
        if stack.kind == "embedded":
            # It overtook the backlog: readings were still being stored when the valve closed. (On
            # RabbitMQ + PostgreSQL the whole backlog takes about as long as the alarm's path, so
            # there only the bound is asserted.)
            assert stored_then < BACKLOG, "the backlog was done first; the test did not load the hub"
        assert stack.valves.valves == {sim.meter_id(7): "closed"}
        await eventually(lambda: equals(count(hub, reading), BACKLOG), what="the backlog stored", timeout=60)
    finally:
        await sim.aclose()


async def _true_async(info: Any, messages: int) -> bool:
    return (await info).messages == messages
