"""The safety loop through the whole hub, on both stacks: a leak ``alarm.raised`` closes the valve at
the valve platform, asks for the holder's SMS (the gateway receives it) and opens an emergency work
order, all in the alarm's flow: one correlation id in the ops trace and on the order; delivered again,
it acts once; the hub's scheduler marks orders past their deadline overdue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from core.catalogue import Lane
from core.db.tables import outbox
from core.db.tables_workorders import work_order
from core.privacy import generate_key
from core.workorders import NewWorkOrder, Priority, WorkOrderFlag, get_work_order, open_work_orders
from hub.envelope import Envelope
from hub.store.tables import hop
from tests.flow.conftest import Stack, eventually
from tests.flow.test_reading_flows import PHONE, delivered, metered_account, scalar, trace

METER = "SAFE-M1"


async def test_a_leak_closes_the_valve_tells_the_holder_and_opens_an_order_in_one_traced_flow(stack: Stack) -> None:
    hub = await stack.start_hub()
    now = datetime.now(UTC).replace(microsecond=0)
    await metered_account(hub, METER, [(now - timedelta(days=2), Decimal("10.000"))])
    leak = Envelope(type="alarm.raised", source="test", subject=METER, priority=Lane.SAFETY, data={
        "alarm_id": "leak-flow-1", "kind": "leak", "meter_id": METER, "severity": 4, "detected_at": now.isoformat()})
    await hub.publisher.publish([leak])

    await eventually(lambda: stack.valves.valves.get(METER) == "closed", what="the valve closed")
    await eventually(lambda: len(stack.sms.sent) == 1, what="the holder's SMS at the gateway")
    (sms,) = stack.sms.sent
    assert sms["phone"] == PHONE
    assert sms["template"] == "SMS_ALARM"
    assert sms["params"]["alarm_id"] == "leak-flow-1"

    async with hub.db.read() as conn:
        order = (await conn.execute(select(work_order).where(work_order.c.alarm_id == "leak-flow-1"))).one()
    assert (order.category, order.priority, order.status, order.meter_id) == (
        "emergency_repair", "emergency", "accepted", METER)
    assert timedelta(minutes=29) < order.due_at - now < timedelta(minutes=31)

    async def whole_flow() -> bool:
        found = await trace(stack, hub, leak.id)
        return {"alarms", "valve-commands", "valve-states", "sms-send", "sms-delivered"} <= delivered(found)

    await eventually(whole_flow, what="the whole response in the alarm's trace")
    found = await trace(stack, hub, leak.id)
    assert {m["type"] for m in found["messages"]} == {
        "alarm.raised", "valve.command", "valve.state", "notification.requested", "notification.delivered"}
    assert {m["correlation_id"] for m in found["messages"]} == {leak.correlation_id}
    assert order.correlation_id == leak.correlation_id

    # The same alarm again in another message (a vendor sending twice): it is stored once and acts once.
    events_before = await scalar(hub, select(func.count()).select_from(outbox))
    again = Envelope(type="alarm.raised", source="test", subject=METER, priority=Lane.SAFETY, data=leak.data)
    await hub.publisher.publish([again])

    async def handled_again() -> bool:
        n = await scalar(hub, select(func.count()).select_from(hop).where(hop.c.message_id == again.id,
                                                                           hop.c.outcome == "delivered"))
        return bool(n)

    await eventually(handled_again, what="the second alarm message handled")
    assert await scalar(hub, select(func.count()).select_from(outbox)) == events_before
    assert await scalar(hub, select(func.count()).select_from(work_order)) == 1
    assert len(stack.sms.sent) == 1


async def test_the_hub_marks_orders_past_their_deadline_overdue(stack: Stack) -> None:
    hub = await stack.start_hub(core={"keys": {"k1": generate_key()}, "work_orders": {"overdue_check_s": 1}})
    past = datetime.now(UTC) - timedelta(hours=2)
    async with hub.db.begin() as conn:
        opened = await open_work_orders(conn, [
            NewWorkOrder(source="test:late", category="emergency_repair", priority=Priority.EMERGENCY,
                         correlation_id="c-late"),
            NewWorkOrder(source="test:in-time", category="complaint", priority=Priority.NORMAL,
                         correlation_id="c-in-time")], hub.settings.core.work_orders, by="test", now=past)

    async def flagged() -> bool:
        async with hub.db.read() as conn:
            return WorkOrderFlag.OVERDUE in (await get_work_order(conn, opened["test:late"])).flags

    await eventually(flagged, timeout=10, what="the late order marked overdue by the scheduler")
    async with hub.db.read() as conn:
        assert (await get_work_order(conn, opened["test:in-time"])).flags == frozenset()
