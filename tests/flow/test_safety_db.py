"""The safety loop in the core against a real database, on SQLite and on PostgreSQL: ``core:record_alarm``
acting by the alarm policy (valve, SMS, work order with its SLA deadline), once however often an alarm is
delivered, all in the alarm's flow; work orders moving through the loop, refused moves, reopening, the
SLA clock stopping and running late."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from ulid import ULID

from core.accounts import CustomerIn, PremisesIn, Privacy, id_check_digit, open_account
from core.alarms import AlarmPolicy
from core.catalogue.messages import AlarmKind, AlarmRaised, MeterReading, ReadingSource, WorkOrderRequested
from core.db.tables import alarm, outbox, reading
from core.db.tables_billing import meter
from core.db.tables_valves import valve_closure
from core.db.tables_workorders import work_order, work_order_event
from core.errors import DomainRejected
from core.handlers.alarms import AlarmHandler
from core.handlers.readings import record_reading
from core.handlers.work_orders import WorkOrderRequests
from core.messages import Incoming
from core.privacy import KeyRing, generate_key
from core.readings import ReadingsSettings
from core.valves import valve_status
from core.workorders import (
    Priority,
    WorkOrderFlag,
    WorkOrderSettings,
    WorkOrderStatus,
    get_work_order,
    history,
    list_overdue,
    mark_overdue,
    set_flag,
    transition,
)

NOW = datetime(2026, 9, 30, 2, 0, tzinfo=UTC)  # Wednesday 10:00 in Shaoxing, the day before National Day
PHONE = "13812345678"
HOLDER = CustomerIn(name="王五", phone=PHONE, id_number="33060219900101123" + id_check_digit("33060219900101123"))
HOME = PremisesIn(address="绍兴市越城区解放北路88号3幢201室", district="yuecheng", lat=30.00, lon=120.58)
CALENDAR = WorkOrderSettings(holidays=frozenset(date(2026, 10, d) for d in range(1, 8)),
                             extra_working_days=frozenset({date(2026, 10, 10)}))
S = WorkOrderStatus


@pytest.fixture
def privacy() -> Privacy:
    return Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))


@dataclass(frozen=True)
class Out:
    type: str
    lane: str
    correlation_id: str
    causation_id: str | None
    data: dict[str, Any]


async def account_with_meter(eng: AsyncEngine, privacy: Privacy, meter_id: str = "M1") -> str:
    async with eng.begin() as conn:
        view = await open_account(conn, privacy, f"req-{ULID()}", HOLDER, HOME, "residential", "postpaid",
                                  opened_at=NOW - timedelta(days=400))
        await conn.execute(insert(meter).values(id=meter_id, account_id=view.account_id, model="G2.5",
                                                installed_at=date(2025, 1, 1), valve_state="open"))
    return view.account_id


def raised(alarm_id: str, kind: AlarmKind, meter_id: str = "M1", severity: int = 1) -> Incoming:
    return Incoming(f"msg-{alarm_id}", "alarm.raised", meter_id, f"corr-{alarm_id}", AlarmRaised(
        alarm_id=alarm_id, kind=kind, meter_id=meter_id, detected_at=NOW - timedelta(seconds=5), severity=severity))


async def deliver(eng: AsyncEngine, *items: Incoming, privacy: Privacy | None = None,
                  policy: AlarmPolicy | None = None) -> None:
    handler = AlarmHandler(policy or AlarmPolicy(), CALENDAR, privacy, clock=lambda: NOW)
    async with eng.begin() as conn:
        await handler.record_alarm(conn, items)


async def outbox_rows(eng: AsyncEngine) -> list[Out]:
    async with eng.connect() as conn:
        rows = await conn.execute(select(outbox).order_by(outbox.c.seq))
        return [Out(r.type, r.lane, r.correlation_id, r.causation_id, orjson.loads(r.data)) for r in rows]


async def orders(eng: AsyncEngine) -> list[Any]:
    async with eng.connect() as conn:
        return list((await conn.execute(select(work_order).order_by(work_order.c.opened_at, work_order.c.id))).all())


async def count(eng: AsyncEngine, table: Any) -> int:
    async with eng.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def test_a_leak_closes_the_valve_tells_the_holder_and_opens_an_emergency_order_in_one_flow(
        engine: AsyncEngine, privacy: Privacy) -> None:
    account_id = await account_with_meter(engine, privacy)
    await deliver(engine, raised("L1", AlarmKind.LEAK, severity=3), privacy=privacy)

    close, sms = await outbox_rows(engine)
    assert (close.type, close.lane, close.data["action"], close.data["meter_id"]) == (
        "valve.command", "safety", "close", "M1")
    assert (sms.type, sms.data["kind"], sms.data["phone"], sms.data["account_id"], sms.data["safety"]) == (
        "notification.requested", "alarm", PHONE, account_id, True)
    assert sms.data["notification_id"] == "alarm-L1"
    assert {(o.correlation_id, o.causation_id) for o in (close, sms)} == {("corr-L1", "msg-L1")}

    (order,) = await orders(engine)
    assert (order.source, order.category, order.priority, order.status) == (
        "alarm:L1", "emergency_repair", "emergency", "accepted")
    assert (order.account_id, order.meter_id, order.alarm_id, order.correlation_id) == (
        account_id, "M1", "L1", "corr-L1")
    assert order.due_at == NOW + timedelta(minutes=30)  # on site within 30 minutes, around the clock
    assert order.clock_until == "on_site"
    assert PHONE not in order.summary
    assert "王" not in order.summary
    async with engine.connect() as conn:
        stored = (await conn.execute(select(alarm))).one()
        closure = (await conn.execute(select(valve_closure))).one()
    assert (stored.severity, stored.status, stored.correlation_id) == (5, "open", "corr-L1")  # the policy's floor
    assert (closure.id, closure.reason, closure.reference, closure.message_id) == (
        "close-L1", "safety", "L1", (await _ids(engine))[0])


async def _ids(eng: AsyncEngine) -> list[str]:
    async with eng.connect() as conn:
        return list((await conn.execute(select(outbox.c.id).order_by(outbox.c.seq))).scalars())


async def test_low_battery_asks_for_a_reminder_and_an_ordinary_order_on_working_days_without_closing(
        engine: AsyncEngine, privacy: Privacy) -> None:
    await account_with_meter(engine, privacy)
    await deliver(engine, raised("B1", AlarmKind.LOW_BATTERY), privacy=privacy)
    (sms,) = await outbox_rows(engine)
    assert (sms.type, sms.data["kind"], sms.data["safety"]) == ("notification.requested", "reminder", False)
    assert await count(engine, valve_closure) == 0
    (order,) = await orders(engine)
    assert (order.category, order.priority, order.clock_until) == ("maintenance", "normal", "handled")
    # 5 working days from Wed 30 Sep: 1-7 Oct are holidays, Sat 10 Oct is a working day:
    # Thu 8, Fri 9, Sat 10, Mon 12, Tue 13 → the end of Tue 13 Oct in Shaoxing = 16:00 UTC that day.
    assert order.due_at == datetime(2026, 10, 13, 16, 0, tzinfo=UTC)


async def test_tamper_opens_an_inspection_order_only(engine: AsyncEngine, privacy: Privacy) -> None:
    await account_with_meter(engine, privacy)
    await deliver(engine, raised("T1", AlarmKind.TAMPER), privacy=privacy)
    assert await outbox_rows(engine) == []
    (order,) = await orders(engine)
    assert (order.category, order.priority) == ("inspection", "high")


async def test_the_policy_is_configuration(engine: AsyncEngine, privacy: Privacy) -> None:
    await account_with_meter(engine, privacy)
    policy = AlarmPolicy.model_validate({"low_battery": {"close_valve": True, "work_order": None}})
    await deliver(engine, raised("B2", AlarmKind.LOW_BATTERY), privacy=privacy, policy=policy)
    assert [o.type for o in await outbox_rows(engine)] == ["valve.command", "notification.requested"]
    assert await orders(engine) == []


async def test_an_alarm_delivered_twice_acts_once(engine: AsyncEngine, privacy: Privacy) -> None:
    await account_with_meter(engine, privacy)
    first = raised("L2", AlarmKind.LEAK)
    again = Incoming("msg-L2-redelivered", first.type, first.subject, first.correlation_id, first.data)
    await deliver(engine, first, again, privacy=privacy)  # twice in one batch
    await deliver(engine, again, privacy=privacy)  # and once more later
    assert [o.type for o in await outbox_rows(engine)] == ["valve.command", "notification.requested"]
    assert len(await orders(engine)) == 1
    assert await count(engine, alarm) == 1
    assert await count(engine, valve_closure) == 1
    assert await count(engine, work_order_event) == 1


async def test_without_keys_the_valve_and_the_order_do_not_wait_for_the_sms(engine: AsyncEngine,
                                                                            privacy: Privacy) -> None:
    await account_with_meter(engine, privacy)
    await deliver(engine, raised("L3", AlarmKind.LEAK), privacy=None)
    assert [o.type for o in await outbox_rows(engine)] == ["valve.command"]
    assert len(await orders(engine)) == 1


async def test_a_meter_on_no_account_still_closes_and_gets_an_order(engine: AsyncEngine) -> None:
    await deliver(engine, raised("L4", AlarmKind.LEAK, meter_id="SPARE"))
    assert [o.type for o in await outbox_rows(engine)] == ["valve.command"]
    (order,) = await orders(engine)
    assert (order.meter_id, order.account_id) == ("SPARE", None)


async def test_an_order_moves_through_the_loop_and_refuses_other_moves(engine: AsyncEngine) -> None:
    await deliver(engine, raised("L5", AlarmKind.LEAK))
    (row,) = await orders(engine)
    oid = row.id
    at = NOW
    async with engine.begin() as conn:
        with pytest.raises(DomainRejected, match="accepted: it cannot move to handled \\(allowed: dispatched\\)"):
            await transition(conn, oid, S.HANDLED, CALENDAR, by="disp-1", note="", now=at)
    steps = [S.DISPATCHED, S.SIGNED, S.ON_SITE, S.HANDLED, S.CLOSED, S.VISITED, S.ARCHIVED]
    for n, to in enumerate(steps, 1):
        async with engine.begin() as conn:
            order, changed = await transition(conn, oid, to, CALENDAR, by="eng-7", note=f"step {n}",
                                              now=at + timedelta(minutes=n))
        assert changed
        assert order.status is to
        if to is S.ON_SITE:  # the emergency's clock stops when someone is there (3 min < 30 min)
            assert order.clock_stopped_at == at + timedelta(minutes=3)
    async with engine.begin() as conn:
        same, changed = await transition(conn, oid, S.ARCHIVED, CALENDAR, by="eng-7", note="", now=at)
        assert (same.status, changed) == (S.ARCHIVED, False)  # a retried request changes nothing
        with pytest.raises(DomainRejected, match="allowed: none"):
            await transition(conn, oid, S.ACCEPTED, CALENDAR, by="eng-7", note="", now=at)
    async with engine.connect() as conn:
        events = await history(conn, oid)
    assert [(e["action"], e["from_status"], e["to_status"]) for e in events] == [
        ("open", None, "accepted"), *[("status", a.value, b.value) for a, b in zip(
            [S.ACCEPTED, *steps[:-1]], steps, strict=True)]]
    assert [e["by"] for e in events] == ["core.safety"] + ["eng-7"] * len(steps)
    assert events[3]["note"] == "step 3"


async def test_a_dissatisfied_visit_reopens_with_a_new_clock(engine: AsyncEngine) -> None:
    await deliver(engine, raised("B3", AlarmKind.LOW_BATTERY))
    (row,) = await orders(engine)
    later = datetime(2026, 10, 16, 1, 0, tzinfo=UTC)  # Friday 16 Oct, 09:00 local
    async with engine.begin() as conn:
        for to in (S.DISPATCHED, S.SIGNED, S.ON_SITE, S.HANDLED, S.CLOSED, S.VISITED):
            await transition(conn, row.id, to, CALENDAR, by="eng-7", note="", now=NOW + timedelta(hours=1))
        order, _ = await transition(conn, row.id, S.ACCEPTED, CALENDAR, by="visitor", note="dissatisfied", now=later)
    assert order.status is S.ACCEPTED
    assert WorkOrderFlag.REOPENED in order.flags
    assert order.clock_stopped_at is None
    # 5 working days from Fri 16 Oct: Mon 19 … Fri 23 → the end of Fri 23 Oct local.
    assert order.due_at == datetime(2026, 10, 23, 16, 0, tzinfo=UTC)


async def test_orders_past_their_deadline_are_listed_and_marked_overdue_once(engine: AsyncEngine) -> None:
    await deliver(engine, raised("L6", AlarmKind.LEAK), raised("L7", AlarmKind.LEAK, meter_id="M2"),
                  raised("T2", AlarmKind.TAMPER))
    rows = {r.alarm_id: r for r in await orders(engine)}
    async with engine.begin() as conn:  # L7's engineer is on site in time: its clock stopped
        for to in (S.DISPATCHED, S.SIGNED, S.ON_SITE):
            await transition(conn, rows["L7"].id, to, CALENDAR, by="eng-7", note="", now=NOW + timedelta(minutes=20))
    late = NOW + timedelta(minutes=31)
    async with engine.begin() as conn:
        assert [o.alarm_id for o in await list_overdue(conn, late)] == ["L6"]
        assert await mark_overdue(conn, late) == [rows["L6"].id]
        assert await mark_overdue(conn, late) == []
        assert WorkOrderFlag.OVERDUE in (await get_work_order(conn, rows["L6"].id)).flags
        order, changed = await set_flag(conn, rows["L6"].id, WorkOrderFlag.SUPERVISED, by="chief", note="chase",
                                        now=late)
        assert changed
        assert order.flags == {WorkOrderFlag.OVERDUE, WorkOrderFlag.SUPERVISED}
        with pytest.raises(DomainRejected, match="not set by hand"):
            await set_flag(conn, rows["L6"].id, WorkOrderFlag.OVERDUE, by="chief", note="", now=late)
    assert rows["T2"].priority == Priority.HIGH.value


async def test_an_open_alarm_that_closed_the_valve_keeps_it_closed_whatever_its_kind(engine: AsyncEngine,
                                                                                     privacy: Privacy) -> None:
    await account_with_meter(engine, privacy)
    policy = AlarmPolicy.model_validate({"tamper": {"close_valve": True}})
    await deliver(engine, raised("T3", AlarmKind.TAMPER), raised("B4", AlarmKind.LOW_BATTERY), policy=policy)
    async with engine.connect() as conn:
        status = await valve_status(conn, "M1")
    assert status.open_alarms == ("T3",)  # the low battery did not close it, so it does not keep it closed
    assert not status.reopen_allowed
    async with engine.begin() as conn:
        await conn.execute(update(alarm).where(alarm.c.id == "T3").values(status="acknowledged"))
        status = await valve_status(conn, "M1")
    assert status.open_alarms == ()
    assert [c.reference for c in status.closures] == ["T3"]


async def test_an_alarm_whose_holder_was_told_already_gets_no_second_sms(engine: AsyncEngine,
                                                                          privacy: Privacy) -> None:
    await account_with_meter(engine, privacy)
    told = raised("L8", AlarmKind.LEAK)
    assert isinstance(told.data, AlarmRaised)
    told = Incoming(told.message_id, told.type, told.subject, told.correlation_id,
                    told.data.model_copy(update={"user_notified": True}))
    await deliver(engine, told, privacy=privacy)
    assert [o.type for o in await outbox_rows(engine)] == ["valve.command"]
    assert len(await orders(engine)) == 1


async def test_a_leak_found_in_readings_tells_the_holder_once(engine: AsyncEngine, privacy: Privacy) -> None:
    """The reading validation tells of the leak it finds and raises the alarm; the alarm closes the valve
    and opens the order, and asks for no second SMS."""
    await account_with_meter(engine, privacy)
    start = NOW - timedelta(hours=24)
    async with engine.begin() as conn:
        await conn.execute(insert(reading), [
            {"id": str(ULID()), "meter_id": "M1", "read_at": start + timedelta(hours=h),
             "volume_m3": Decimal(500) + Decimal("0.020") * h, "source": "ctwing", "quality": "valid",
             "message_id": f"seed-{h}"} for h in range(24)])
    item = Incoming("reading-1", "meter.reading", "M1", "corr-reading-1", MeterReading(
        meter_id="M1", read_at=NOW, volume_m3=Decimal(500) + Decimal("0.020") * 24, source=ReadingSource.CTWING))
    async with engine.begin() as conn:
        await record_reading(conn, [item], settings=ReadingsSettings(), privacy=privacy)
    alarm_row = next(o for o in await outbox_rows(engine) if o.type == "alarm.raised")
    await deliver(engine, Incoming("alarm-msg", "alarm.raised", "M1", alarm_row.correlation_id,
                                   AlarmRaised.model_validate(alarm_row.data)), privacy=privacy)
    types = [o.type for o in await outbox_rows(engine)]
    assert types.count("notification.requested") == 1
    assert types.count("valve.command") == 1
    assert len(await orders(engine)) == 1


async def test_the_work_a_validation_rule_asks_for_opens_one_order(engine: AsyncEngine) -> None:
    def request(message_id: str, kind: str = "inspection", severity: str = "error") -> Incoming:
        return Incoming(message_id, "work_order.requested", "M1", "corr-tamper", WorkOrderRequested(
            work_order_id="wo-inspection-R1", kind=kind, rule="tamper", severity=severity, meter_id="M1",
            detected_at=NOW, reason="cover opened", reading_id="R1"))

    handler = WorkOrderRequests(CALENDAR, clock=lambda: NOW)
    async with engine.begin() as conn:
        await handler.open_work_order(conn, [request("m1"), request("m2")])  # sent twice
        await handler.open_work_order(conn, [request("m3")])
    (order,) = await orders(engine)
    assert (order.source, order.category, order.priority, order.meter_id, order.correlation_id) == (
        "request:wo-inspection-R1", "inspection", "high", "M1", "corr-tamper")
    # 3 working days from Wed 30 Sep: Thu 8, Fri 9, Sat 10 Oct (a working day) → the end of Sat 10 Oct local.
    assert order.due_at == datetime(2026, 10, 10, 16, 0, tzinfo=UTC)
    assert "cover opened" in order.summary
    async with engine.begin() as conn:
        with pytest.raises(DomainRejected, match="no category 'meter_swap'"):
            await handler.open_work_order(conn, [Incoming("m4", "work_order.requested", "M1", "c", WorkOrderRequested(
                work_order_id="wo-x", kind="meter_swap", rule="tamper", severity="error", detected_at=NOW,
                reason="x"))])
