"""End-to-end flows through the whole hub, driven from the partners' side, on both stacks."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from sqlalchemy import func, select, text, update

from connectors.vendor_push.simulator import VendorCloudSimulator
from core.catalogue import Lane
from core.db.tables import reading, valve_event
from hub.envelope import Envelope
from hub.store.tables import dead_letter, hop, message
from hub.transport.base import OutboundMessage
from tests.flow.conftest import OPS_TOKEN, VENDOR_TOKEN, Stack, equals, eventually

AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}


async def count(hub: Any, table: Any, *where: Any) -> int:
    async with hub.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def vendor(stack: Stack, hub: Any, meters: int = 20) -> VendorCloudSimulator:
    return VendorCloudSimulator(f"{stack.base_url(hub)}/partners/vendor-demo/push", VENDOR_TOKEN, meters=meters)


async def test_vendor_readings_are_stored_once_and_traced(stack: Stack) -> None:
    hub = await stack.start_hub()
    sim = vendor(stack, hub)
    try:
        docs = [sim.reading(n) for n in range(5)]
        ids = []
        for doc in docs:
            status, answer = await sim.push(doc)
            assert (status, answer["code"], answer["msg"]) == (200, 0, "ok")
            ids.append(answer["message_id"])
        status, answer = await sim.push(docs[2])  # the vendor sends the same push again
        assert (status, answer["msg"], answer["message_id"]) == (200, "duplicate", ids[2])
        await eventually(lambda: equals(count(hub, reading), 5), what="5 readings stored")
        await asyncio.sleep(0.3)
        assert await count(hub, reading) == 5
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.get(f"{stack.base_url(hub)}/ops/messages/{ids[0]}/trace") as resp:
                assert resp.status == 200
                trace = await resp.json()
        outcomes = [(h["route"], h["outcome"]) for h in trace["hops"]]
        assert outcomes == [("in:vendor", "received"), ("vendor-readings", "delivered")]
        assert trace["hops"][1]["mapping_version"] == "vendor-meter-reading@1"
    finally:
        await sim.aclose()


async def test_transient_failures_retry_with_policy_delays_then_deliver_on_attempt_four(stack: Stack) -> None:
    hub = await stack.start_hub()
    stack.sms.fail_next = 3
    env = Envelope(type="notification.requested", source="test", data={
        "notification_id": "n-retry", "kind": "bill", "phone": "13812345678", "params": {"amount": "10.00"}})
    await hub.publisher.publish([env])
    await eventually(lambda: len(stack.sms.sent) == 1, what="SMS sent", timeout=20)
    times = stack.sms.request_times
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, policy in zip(gaps, (0.2, 0.4, 0.8), strict=True):
        assert gap >= policy * 0.9, f"retry came after {gap:.3f}s, policy says {policy}s ({gaps})"
    async def hops() -> list[tuple[int, str]]:
        async with hub.db.read() as conn:
            rows = await conn.execute(select(hop.c.attempt, hop.c.outcome).where(
                hop.c.message_id == env.id, hop.c.route == "sms-send").order_by(hop.c.seq))
            return [(r.attempt, r.outcome) for r in rows]

    expected = [(1, "retry"), (2, "retry"), (3, "retry"), (4, "delivered")]
    await eventually(lambda: equals(hops(), expected), what=f"hops {expected}")
    # The gateway's acceptance comes back as notification.delivered and the core records it.
    await eventually(lambda: equals(_notification_status(hub, "n-retry"), "accepted"), what="delivery recorded")


async def _count_of(items: Any) -> int:
    return len(await items)


async def _notification_status(hub: Any, nid: str) -> str | None:
    async with hub.db.read() as conn:
        return await conn.scalar(text("SELECT status FROM core_notification_status WHERE notification_id = :n"),
                                 {"n": nid})


async def test_always_failing_target_dead_letters_then_replay_delivers_once(stack: Stack) -> None:
    hub = await stack.start_hub()
    stack.sms.down = True
    env = Envelope(type="notification.requested", source="test", data={
        "notification_id": "n-dead", "kind": "bill", "phone": "13912345678"})
    await hub.publisher.publish([env])
    await eventually(lambda: equals(count(hub, dead_letter), 1), what="dead letter", timeout=20)
    async with hub.db.read() as conn:
        dl = (await conn.execute(select(dead_letter))).one()
    assert dl.route == "sms-send"
    assert dl.attempts == 4
    assert "gave up after 4 attempts" in dl.reason
    assert "503" in dl.reason
    dlq = await hub.transports[Lane.NORMAL].queue_info(hub.runtimes["sms-send"].route.queues.dead)
    assert dlq.messages == 1
    assert stack.sms.sent == []

    stack.sms.down = False  # the fix
    base = stack.base_url(hub)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/ops/dead-letters/{dl.id}/replay") as resp:
            assert resp.status == 401  # no token
        async with http.post(f"{base}/ops/dead-letters/{dl.id}/replay", headers=AUTH) as resp:
            assert resp.status == 202, await resp.text()
        await eventually(lambda: len(stack.sms.sent) == 1, what="replayed SMS sent")
        async with http.post(f"{base}/ops/dead-letters/{dl.id}/replay", headers=AUTH) as resp:
            assert resp.status == 409
            assert resp.content_type == "application/problem+json"
    await asyncio.sleep(0.5)
    assert len(stack.sms.sent) == 1
    assert stack.sms.sent[0]["out_id"] == env.id


@pytest.mark.parametrize("case", ["not-json", "json-array", "missing-fields", "wrong-type", "ten-megabytes"])
async def test_malformed_input_is_dead_lettered_with_a_clear_reason(stack: Stack, case: str) -> None:
    hub = await stack.start_hub()
    good = Envelope(type="meter.reading", source="test", data={
        "meter_id": "30000000000001", "read_at": "2026-11-27T08:00:00+08:00", "volume_m3": "12.345",
        "source": "manual"})
    bodies = {
        "not-json": (b"\x00\x01 this is not json", "not JSON"),
        "json-array": (b"[1, 2, 3]", "expected an object"),
        "missing-fields": (orjson.dumps({"type": "meter.reading", "data": {}}), "source"),
        "wrong-type": (Envelope(type="meter.reading", source="test", data={
            "meter_id": "30000000000002", "read_at": "2026-11-27T08:00:00+08:00", "volume_m3": "lots",
            "source": "manual"}).to_json(), "volume_m3"),
        "ten-megabytes": (b'{"pad": "' + b"x" * (10 * 1024 * 1024) + b'"}', "limit"),
    }
    body, expected = bodies[case]
    queue = hub.runtimes["readings"].route.queues.main
    await hub.transports[Lane.NORMAL].publish([
        OutboundMessage(routing_key=queue, body=body, message_id=f"bad-{case}", exchange=""),
        OutboundMessage(routing_key=queue, body=good.to_json(), message_id=good.id, exchange=""),
    ])
    await eventually(lambda: equals(count(hub, reading), 1), what="the good reading after the bad one")
    await eventually(lambda: equals(count(hub, dead_letter), 1), what="a dead letter")
    async with hub.db.read() as conn:
        dl = (await conn.execute(select(dead_letter))).one()
    assert dl.route == "readings"
    assert dl.error_class in ("MalformedMessage", "InvalidMessage")
    assert expected in dl.reason, dl.reason
    assert hub.runtimes["readings"].running


async def test_alarm_closes_the_valve_under_one_correlation_id(stack: Stack) -> None:
    hub = await stack.start_hub()
    sim = vendor(stack, hub)
    try:
        status, answer = await sim.push(sim.alarm(7, "leak"))
        assert status == 200
        await eventually(lambda: equals(count(hub, valve_event), 1), what="valve state recorded")
        assert stack.valves.valves == {sim.meter_id(7): "closed"}
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.get(f"{stack.base_url(hub)}/ops/messages/{answer['message_id']}/trace") as resp:
                trace = await resp.json()
        routes = [h["route"] for h in trace["hops"] if h["outcome"] == "delivered"]
        assert routes == ["vendor-alarms", "valve-commands", "valve-states"]
        assert {m["type"] for m in trace["messages"]} == {"vendor.demo.alarm", "valve.command", "valve.state"}
        assert len({m["correlation_id"] for m in trace["messages"]}) == 1
    finally:
        await sim.aclose()


async def test_replay_dry_run_shows_field_differences_between_mapping_versions(stack: Stack) -> None:
    hub = await stack.start_hub()
    sim = vendor(stack, hub)
    try:
        doc = sim.reading(3)
        doc["totalLitres"] = "lots"  # firmware 2.x sends no litres: mapping v1 cannot read it
        doc["total_m3"] = "321.5"
        await sim.push(doc)
        await eventually(lambda: equals(count(hub, dead_letter), 1), what="unmappable reading dead-lettered")
        async with hub.db.read() as conn:
            dl = (await conn.execute(select(dead_letter))).one()
        assert dl.error_class == "UnmappableMessage"
        base = stack.base_url(hub)
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.post(f"{base}/ops/dead-letters/{dl.id}/replay",
                                 json={"mapping_version": 2, "dry_run": True}) as resp:
                assert resp.status == 200
                result = await resp.json()
            assert result["current"]["error"] is not None
            assert result["proposed"]["output"]["volume_m3"] == "321.5"
            async with http.post(f"{base}/ops/dead-letters/{dl.id}/replay", json={"mapping_version": 2}) as resp:
                assert resp.status == 202
        await eventually(lambda: equals(count(hub, reading), 1), what="replayed through v2")
        async with hub.db.read() as conn:
            stored = (await conn.execute(select(reading.c.volume_m3))).scalar_one()
            mv = (await conn.execute(select(hop.c.mapping_version).where(
                hop.c.route == "vendor-readings", hop.c.outcome == "delivered"))).scalar_one()
        assert float(stored) == 321.5
        assert mv == "vendor-meter-reading@2"
    finally:
        await sim.aclose()


async def test_rejected_partner_input_is_audited_and_nothing_is_stored(stack: Stack) -> None:
    hub = await stack.start_hub()
    sim = vendor(stack, hub)
    try:
        status, _ = await sim.push(sim.reading(1), token="forged")
        assert status == 401
        status, _ = await sim.push(b"{not json")
        assert status == 400
        status, _ = await sim.push(b'{"event": "reading", "devId": "1", "seq": 1, "pad": "' + b"x" * 70000 + b'"}')
        assert status == 413
        async with hub.db.read() as conn:
            rejected = (await conn.execute(select(hop.c.error).where(hop.c.outcome == "rejected"))).scalars().all()
        assert len(rejected) == 3
        assert any("X-Vendor-Token" in r for r in rejected)
        assert await count(hub, message) == 0
    finally:
        await sim.aclose()


async def test_ops_api_needs_the_token_and_answers_queries(stack: Stack) -> None:
    hub = await stack.start_hub()
    base = stack.base_url(hub)
    await hub.publisher.publish([Envelope(type="notification.requested", source="test", data={
        "notification_id": "n-ops", "kind": "bill", "phone": "13812345678"})])
    await eventually(lambda: len(stack.sms.sent) == 1, what="SMS sent")
    async with aiohttp.ClientSession() as http:
        for path in ("/ops/routes", "/ops/messages", "/ops/dead-letters"):
            async with http.get(base + path) as resp:
                assert resp.status == 401, path
            async with http.get(base + path, headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401, path
        async def search() -> list[dict[str, Any]]:
            async with http.get(f"{base}/ops/messages?type=notification.requested", headers=AUTH) as resp:
                return list((await resp.json())["items"])

        # The partner has the SMS before the route's transaction commits: wait for the store.
        await eventually(lambda: equals(_count_of(search()), 1), what="the message stored")
        items = await search()
        assert [i["type"] for i in items] == ["notification.requested"]
        async with http.get(f"{base}/ops/messages/{items[0]['id']}/trace", headers=AUTH) as resp:
            body = await resp.text()
        assert "13812345678" not in body  # personal data is masked in ops output
        assert "138****5678" in body or "1**" in body
        async def sms_route() -> dict[str, Any]:
            async with http.get(f"{base}/ops/routes", headers=AUTH) as resp:
                return {r["name"]: r for r in (await resp.json())["routes"]}["sms-send"]

        async def delivered() -> float:
            return float((await sms_route())["settled"].get("delivered", 0))

        await eventually(lambda: equals(delivered(), 1.0), what="the route's settled count")
        assert (await sms_route())["breaker"]["state"] == "closed"
        async with http.get(f"{base}/ops/messages?since=yesterday", headers=AUTH) as resp:
            assert resp.status == 400
            assert "ISO 8601" in (await resp.json())["detail"]
        async with http.get(f"{base}/health") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/ready") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/metrics") as resp:
            assert 'gashub_route_messages_total{outcome="delivered",route="sms-send"} 1.0' in await resp.text()


async def test_audit_verify_detects_edited_and_deleted_rows(stack: Stack) -> None:
    hub = await stack.start_hub()
    sim = vendor(stack, hub)
    try:
        for n in range(6):
            await sim.push(sim.reading(n))
        await eventually(lambda: equals(count(hub, reading), 6), what="readings")
    finally:
        await sim.aclose()
    await hub.stop()
    env = {**os.environ, "GASHUB_DATABASE_URL": stack.database_url}

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hub.cli", "audit", "verify"], env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    ok = await asyncio.to_thread(verify)
    assert ok.returncode == 0, ok.stderr
    assert "intact: 12 hops" in ok.stdout
    db = hub.db.__class__(stack.database_url)
    try:
        async with db.begin() as conn:
            await conn.execute(update(hop).where(hop.c.seq == 5).values(error="nothing to see"))
        bad = await asyncio.to_thread(verify)
        assert bad.returncode == 2
        assert "hop 5" in bad.stderr
        async with db.begin() as conn:
            await conn.execute(update(hop).where(hop.c.seq == 5).values(error=""))
            await conn.execute(hop.delete().where(hop.c.seq == 8))
        bad = await asyncio.to_thread(verify)
        assert bad.returncode == 2
        assert "hop 8 is missing" in bad.stderr
        async with db.begin() as conn:
            await conn.execute(hop.delete().where(hop.c.seq >= 8))
        bad = await asyncio.to_thread(verify)
        assert bad.returncode == 2
        assert "deleted at the end" in bad.stderr
    finally:
        await db.aclose()


async def test_a_message_the_database_refuses_is_dead_lettered_and_the_batch_moves_on(stack: Stack) -> None:
    """A value PostgreSQL cannot store (a NUL character) must not bring the batch back for ever."""
    hub = await stack.start_hub()
    good = Envelope(type="meter.reading", source="test", data={
        "meter_id": "30000000000011", "read_at": "2026-11-27T08:00:00+08:00", "volume_m3": "1.000",
        "source": "manual"})
    poison = orjson.loads(good.to_json())
    poison["id"] = "01M8ZZZZZZZZZZZZZZZZZZZZZZ"
    poison["subject"] = "bad\x00subject"
    poison["data"]["meter_id"] = "30000000000012"
    queue = hub.runtimes["readings"].route.queues.main
    await hub.transports[Lane.NORMAL].publish([
        OutboundMessage(routing_key=queue, body=orjson.dumps(poison), message_id=poison["id"], exchange=""),
        OutboundMessage(routing_key=queue, body=good.to_json(), message_id=good.id, exchange=""),
    ])
    await eventually(lambda: equals(count(hub, reading), 1), what="the good reading")
    await eventually(lambda: equals(count(hub, dead_letter), 1), what="the poison message dead-lettered")
    async with hub.db.read() as conn:
        dl = (await conn.execute(select(dead_letter))).one()
    assert dl.message_id == poison["id"]
    assert "subject" in dl.reason


async def test_two_replays_at_once_publish_once(stack: Stack) -> None:
    hub = await stack.start_hub()
    stack.sms.down = True
    await hub.publisher.publish([Envelope(type="notification.requested", source="test", data={
        "notification_id": "n-twice", "kind": "bill", "phone": "13912345678"})])
    await eventually(lambda: equals(count(hub, dead_letter), 1), what="dead letter", timeout=20)
    async with hub.db.read() as conn:
        dl_id = (await conn.execute(select(dead_letter.c.id))).scalar_one()
    stack.sms.down = False
    base = stack.base_url(hub)
    async with aiohttp.ClientSession(headers=AUTH) as http:

        async def replay() -> int:
            async with http.post(f"{base}/ops/dead-letters/{dl_id}/replay") as resp:
                return resp.status

        statuses = sorted(await asyncio.gather(replay(), replay(), replay()))
    assert statuses == [202, 409, 409]
    await eventually(lambda: len(stack.sms.sent) == 1, what="the replayed SMS")
    async with hub.db.read() as conn:
        replays = await conn.scalar(select(func.count()).select_from(hop).where(hop.c.outcome == "replayed"))
    assert replays == 1


async def test_an_outbox_event_no_route_takes_is_set_aside_and_the_rest_flow(stack: Stack) -> None:
    """Routes can change under a running outbox: the relay must not stall behind an unroutable row."""
    from core.catalogue.messages import ReadingRecorded, ValveAction, ValveCommand
    from core.messages import Event
    from core.outbox import emit

    hub = await stack.start_hub()
    unroutable = ReadingRecorded(reading_id="r1", meter_id="30000000000099",
                                 read_at=datetime(2026, 11, 27, tzinfo=UTC), volume_m3=Decimal("1.000"))
    command = ValveCommand(command_id="c-aside", meter_id="30000000000099", action=ValveAction.CLOSE,
                           reason="test", requested_by="test")
    async with hub.db.begin() as conn:
        await emit(conn, [(Event("reading.recorded", unroutable), None), (Event("valve.command", command), None)])
    hub.relay.wake()
    await eventually(lambda: stack.valves.valves.get("30000000000099") == "closed", what="the valve closed")
    await eventually(lambda: equals(count(hub, dead_letter), 1), what="the unroutable event set aside")
    async with hub.db.read() as conn:
        dl = (await conn.execute(select(dead_letter))).one()
        pending = await conn.scalar(text("SELECT count(*) FROM core_outbox WHERE published_us IS NULL"))
    assert (dl.route, dl.type, dl.error_class) == ("out:outbox", "reading.recorded", "Unroutable")
    assert pending == 0
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.post(f"{stack.base_url(hub)}/ops/dead-letters/{dl.id}/replay") as resp:
            assert resp.status == 409
            assert "still no route takes reading.recorded" in (await resp.json())["detail"]
