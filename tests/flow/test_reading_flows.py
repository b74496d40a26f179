"""Readings through the whole hub, pushed by the vendor simulator, on both stacks: what the core's
validation makes of them travels on as events under the reading's correlation id."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
from sqlalchemy import func, insert, select
from ulid import ULID

from connectors.vendor_push.simulator import VendorCloudSimulator
from core.accounts import CustomerIn, PremisesIn, id_check_digit, open_account
from core.db.tables import reading, reading_exception
from core.db.tables_billing import meter
from core.privacy import generate_key
from hub.app import Hub
from tests.flow.conftest import OPS_TOKEN, VENDOR_TOKEN, Stack, eventually

AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}
PHONE = "13912345678"
HOLDER = CustomerIn(name="赵六", phone=PHONE, id_number="33060219900101123" + id_check_digit("33060219900101123"))
HOME = PremisesIn(address="绍兴市柯桥区笛扬路1号", district="keqiao", lat=30.08, lon=120.49)
HOUR = timedelta(hours=1)


async def start(stack: Stack) -> tuple[Hub, VendorCloudSimulator]:
    hub = await stack.start_hub(core={"keys": {"k1": generate_key()}})
    return hub, VendorCloudSimulator(f"{stack.base_url(hub)}/partners/vendor-demo/push", VENDOR_TOKEN, meters=10)


async def metered_account(hub: Hub, meter_id: str, points: list[tuple[datetime, Decimal]]) -> None:
    """An account holding ``meter_id`` (valve open, model G2.5) with ``points`` already read."""
    assert hub.privacy is not None
    async with hub.db.begin() as conn:
        view = await open_account(conn, hub.privacy, f"req-{ULID()}", HOLDER, HOME, "residential", "postpaid",
                                  opened_at=points[0][0] - timedelta(days=1))
        await conn.execute(insert(meter).values(id=meter_id, account_id=view.account_id, model="G2.5",
                                                installed_at=date(2025, 1, 1), valve_state="open"))
        await conn.execute(insert(reading), [
            {"id": str(ULID()), "meter_id": meter_id, "read_at": at, "volume_m3": v, "source": "vendor",
             "quality": "valid", "message_id": f"seed-{ULID()}"} for at, v in points])


def push_doc(sim: VendorCloudSimulator, n: int, at: datetime, volume: Decimal) -> dict[str, Any]:
    doc = sim.reading(n)
    doc["ts"] = int(at.timestamp() * 1000)
    doc["totalLitres"] = int(volume * 1000)
    return doc


async def scalar(hub: Hub, stmt: Any) -> Any:
    async with hub.db.read() as conn:
        return await conn.scalar(stmt)


async def trace(stack: Stack, hub: Hub, message_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.get(f"{stack.base_url(hub)}/ops/messages/{message_id}/trace") as resp:
            assert resp.status == 200
            return dict(await resp.json())


def delivered(found: dict[str, Any]) -> set[str]:
    return {h["route"] for h in found["hops"] if h["outcome"] == "delivered"}


async def test_a_spike_from_the_vendor_is_flagged_and_the_holder_gets_an_sms(stack: Stack) -> None:
    hub, sim = await start(stack)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        m = sim.meter_id(3)
        points = [(now - (40 - n) * timedelta(days=1), Decimal(300) + Decimal("1.500") * n) for n in range(40)]
        await metered_account(hub, m, points)
        spiked = points[-1][1] + Decimal(40)  # 40 m³ in a day against 1.5 m³ a day on average
        status, answer = await sim.push(push_doc(sim, 3, now - timedelta(minutes=1), spiked))
        assert (status, answer["msg"]) == (200, "ok")

        async def sms_sent() -> bool:
            return [s["phone"] for s in stack.sms.sent] == [PHONE]

        await eventually(sms_sent, what="the holder's SMS")
        (sms,) = stack.sms.sent
        assert sms["template"] == "SMS_READING"
        assert (sms["params"]["rule"], sms["params"]["use_m3"]) == ("spike", "40.000")
        quality = await scalar(hub, select(reading.c.quality).where(reading.c.meter_id == m,
                                                                    reading.c.volume_m3 == spiked))
        assert quality == "suspect,held,estimate_due"  # billed on an estimate, not as read

        async def listed() -> bool:
            return bool(await scalar(hub, select(func.count()).select_from(reading_exception).where(
                reading_exception.c.meter_id == m, reading_exception.c.rules == "spike")))

        await eventually(listed, what="the reading on the exceptions list")

        async def whole_flow() -> bool:
            found = await trace(stack, hub, answer["message_id"])
            return {"vendor-readings", "sms-send", "reading-exceptions", "sms-delivered"} <= delivered(found)

        await eventually(whole_flow, what="every hop of the flow")
        found = await trace(stack, hub, answer["message_id"])
        assert {x["type"] for x in found["messages"]} == {
            "vendor.demo.reading", "reading.flagged", "notification.requested", "notification.delivered"}
        assert {x["correlation_id"] for x in found["messages"]} == {answer["message_id"]}
        assert PHONE not in str(found)  # masked in ops output
    finally:
        await sim.aclose()


async def test_a_day_of_flow_from_the_vendor_closes_the_valve_and_warns_the_holder(stack: Stack) -> None:
    hub, sim = await start(stack)
    try:
        # A reading five minutes into an hour that is over, its baseline 35 minutes before it, and a
        # reading every hour for the day before that, each using a little gas.
        at = (datetime.now(UTC) - timedelta(minutes=10)).replace(minute=5, second=0, microsecond=0)
        m = sim.meter_id(6)
        points = [(at - timedelta(minutes=35) - (24 - n) * HOUR, Decimal(800) + Decimal("0.040") * n)
                  for n in range(25)]
        await metered_account(hub, m, points)
        status, answer = await sim.push(push_doc(sim, 6, at, points[-1][1] + Decimal("0.030")))
        assert status == 200

        async def valve_closed() -> bool:
            state = await scalar(hub, select(meter.c.valve_state).where(meter.c.id == m))
            return state == "closed" and stack.valves.valves.get(m) == "closed"

        await eventually(valve_closed, what="the valve closed and the meter's state recorded")
        await eventually(lambda: len(stack.sms.sent) == 1, what="the leak SMS")
        assert (stack.sms.sent[0]["template"], stack.sms.sent[0]["params"]["rule"]) == ("SMS_ALARM", "leak")

        flow = {"vendor-readings", "alarms", "valve-commands", "valve-states", "sms-send", "reading-exceptions"}

        async def whole_flow() -> bool:
            return flow <= delivered(await trace(stack, hub, answer["message_id"]))

        await eventually(whole_flow, what="every hop of the flow")
        found = await trace(stack, hub, answer["message_id"])
        assert {"alarm.raised", "valve.command", "valve.state", "notification.requested"} <= {
            x["type"] for x in found["messages"]}
        assert {x["correlation_id"] for x in found["messages"]} == {answer["message_id"]}
        (raised,) = [x for x in found["messages"] if x["type"] == "alarm.raised"]
        assert raised["causation_id"] == answer["message_id"]
        assert raised["body"]["data"]["kind"] == "leak"
    finally:
        await sim.aclose()
