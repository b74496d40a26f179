"""``core:record_reading`` against a real database, on SQLite and on PostgreSQL (migrated with
Alembic): each rule's path through the stored history, the order of a batch, quality flags, and the
events written to the outbox (flagged readings, alarms, notifications), once per reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from ulid import ULID

from core.accounts import CustomerIn, PremisesIn, Privacy, id_check_digit, open_account
from core.catalogue.messages import (
    AlarmRaised,
    MeterReading,
    ReadingFlagged,
    ReadingSource,
    ValveState,
    ValveStateReported,
)
from core.db.tables import alarm, outbox, reading, reading_exception
from core.db.tables_billing import meter
from core.errors import Conflict
from core.handlers import CoreConfig, build_handlers
from core.handlers.alarms import record_alarm
from core.handlers.reading_exceptions import record_reading_exception
from core.handlers.readings import record_reading
from core.handlers.valves import record_valve_state
from core.messages import Incoming
from core.privacy import KeyRing, generate_key
from core.readings import ReadingsSettings, RuleId, ValidationSettings

T0 = datetime(2026, 6, 1, 16, tzinfo=UTC)  # local midnight, 2 June
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
DAILY = Decimal("1.200")
PHONE = "13812345678"
HOLDER = CustomerIn(name="王五", phone=PHONE, id_number="33060219900101123" + id_check_digit("33060219900101123"))
HOME = PremisesIn(address="绍兴市越城区解放北路88号3幢201室", district="yuecheng", lat=30.00, lon=120.58)


@pytest.fixture
def privacy() -> Privacy:
    return Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))


# ---- the world ---------------------------------------------------------------------------------


async def account_with_meters(eng: AsyncEngine, privacy: Privacy, *meters: tuple[str, str]) -> str:
    """An active residential account holding ``(meter id, valve state)`` meters, model G2.5."""
    async with eng.begin() as conn:
        view = await open_account(conn, privacy, f"req-{ULID()}", HOLDER, HOME, "residential", "postpaid",
                                  opened_at=T0 - 400 * DAY)
        for meter_id, valve in meters:
            await conn.execute(insert(meter).values(id=meter_id, account_id=view.account_id, model="G2.5",
                                                    installed_at=date(2025, 1, 1), valve_state=valve))
    return view.account_id


async def spare_meter(eng: AsyncEngine, meter_id: str) -> None:
    async with eng.begin() as conn:
        await conn.execute(insert(meter).values(id=meter_id, account_id=None, model="G4",
                                                installed_at=date(2025, 1, 1), valve_state="unknown"))


async def history(eng: AsyncEngine, meter_id: str, points: Sequence[tuple[datetime, Decimal | str]],
                  quality: str = "valid") -> None:
    async with eng.begin() as conn:
        await conn.execute(insert(reading), [
            {"id": str(ULID()), "meter_id": meter_id, "read_at": at, "volume_m3": Decimal(v), "source": "ctwing",
             "quality": quality, "message_id": f"seed-{ULID()}"}
            for at, v in points
        ])


def daily(start_volume: Decimal, days: int, end: datetime = T0) -> list[tuple[datetime, Decimal]]:
    """``days`` daily readings using ``DAILY`` a day, the last at ``end``."""
    return [(end - (days - 1 - n) * DAY, start_volume + n * DAILY) for n in range(days)]


def incoming(meter_id: str, at: datetime, volume: Decimal | str, *, message_id: str | None = None,
             valve: ValveState | None = None) -> Incoming:
    mid = message_id or str(ULID())
    data = MeterReading(meter_id=meter_id, read_at=at, volume_m3=Decimal(volume), source=ReadingSource.CTWING,
                        valve=valve)
    return Incoming(mid, "meter.reading", meter_id, f"corr-{mid}", data)


async def handle(eng: AsyncEngine, *items: Incoming, settings: ReadingsSettings | None = None,
                 privacy: Privacy | None = None, now: datetime | None = None) -> None:
    latest = max(i.data.read_at for i in items if isinstance(i.data, MeterReading))
    async with eng.begin() as conn:
        await record_reading(conn, items, settings=settings or ReadingsSettings(), privacy=privacy,
                             now=now or latest + timedelta(minutes=5))


@dataclass(frozen=True)
class Out:
    type: str
    lane: str
    correlation_id: str
    causation_id: str | None
    subject: str | None
    data: dict[str, Any]


async def outbox_rows(eng: AsyncEngine) -> list[Out]:
    async with eng.connect() as conn:
        rows = await conn.execute(select(outbox).order_by(outbox.c.seq))
        return [Out(r.type, r.lane, r.correlation_id, r.causation_id, r.subject, orjson.loads(r.data)) for r in rows]


async def qualities(eng: AsyncEngine, meter_id: str) -> dict[datetime, str]:
    async with eng.connect() as conn:
        rows = await conn.execute(select(reading.c.read_at, reading.c.quality).where(reading.c.meter_id == meter_id))
        return {r.read_at: r.quality for r in rows}


def rules_of(out: Out) -> list[str]:
    return [f["rule"] for f in out.data["findings"]]


# ---- the rules through the database --------------------------------------------------------------


async def test_a_plausible_reading_is_stored_valid_and_emits_nothing(engine: AsyncEngine, privacy: Privacy) -> None:
    await account_with_meters(engine, privacy, ("M1", "open"))
    await history(engine, "M1", daily(Decimal(100), 40))
    await handle(engine, incoming("M1", T0 + DAY, Decimal(100) + 40 * DAILY + Decimal("0.300")), privacy=privacy)
    assert (await qualities(engine, "M1"))[T0 + DAY] == "valid"
    assert await outbox_rows(engine) == []


async def test_a_spike_is_stored_suspect_flagged_and_told_to_the_holder(engine: AsyncEngine,
                                                                       privacy: Privacy) -> None:
    account_id = await account_with_meters(engine, privacy, ("M1", "open"))
    await history(engine, "M1", daily(Decimal(100), 40))
    last = Decimal(100) + 39 * DAILY
    item = incoming("M1", T0 + DAY, last + Decimal("6.100"))  # 5 × 1.2 = 6.0 m³ a day is the limit
    await handle(engine, item, privacy=privacy)

    # Held from billing; an estimate is billed in its place ("exception, then estimate").
    assert (await qualities(engine, "M1"))[T0 + DAY] == "suspect,held,estimate_due"
    notification, flagged = await outbox_rows(engine)
    assert (notification.type, notification.lane) == ("notification.requested", "normal")
    assert notification.data["notification_id"] == f"spike-{item.message_id}"
    assert notification.data["phone"] == PHONE
    assert (notification.data["kind"], notification.data["safety"]) == ("reading", False)
    assert notification.data["params"]["use_m3"] == "6.100"
    assert flagged.type == "reading.flagged"
    assert flagged.data["reading_id"] == item.message_id
    assert flagged.data["account_id"] == account_id
    assert (rules_of(flagged), flagged.data["billable"], flagged.data["quality"]) == (
        ["spike"], False, ["suspect", "held", "estimate_due"])
    assert flagged.data["consumption_m3"] == "6.100"
    for out in (notification, flagged):
        assert (out.correlation_id, out.causation_id, out.subject) == (item.correlation_id, item.message_id, "M1")

    # The exceptions list takes the flagged reading, once.
    event = Incoming("flag-1", "reading.flagged", "M1", item.correlation_id,
                     ReadingFlagged.model_validate(flagged.data))
    for _ in range(2):
        async with engine.begin() as conn:
            await record_reading_exception(conn, [event])
    async with engine.connect() as conn:
        rows = (await conn.execute(select(reading_exception))).all()
    assert [(r.id, r.meter_id, r.rules, r.billable, r.status) for r in rows] == [
        (item.message_id, "M1", "spike", False, "open")]
    assert orjson.loads(rows[0].findings)[0]["action"] == "estimate"


async def test_the_average_needs_a_week_of_history(engine: AsyncEngine, privacy: Privacy) -> None:
    await account_with_meters(engine, privacy, ("M1", "open"))
    await history(engine, "M1", daily(Decimal(100), 6))  # five days between first and last
    await handle(engine, incoming("M1", T0 + DAY, Decimal(100) + 5 * DAILY + Decimal(50)), privacy=privacy)
    assert (await qualities(engine, "M1"))[T0 + DAY] == "valid"


async def test_a_meter_read_every_other_month_has_an_average_too(engine: AsyncEngine, privacy: Privacy) -> None:
    await account_with_meters(engine, privacy, ("M1", "open"), ("M2", "open"))
    for m in ("M1", "M2"):  # 1 m³ a day, read every 60 days
        await history(engine, m, [(T0 - 120 * DAY, Decimal(100)), (T0 - 60 * DAY, Decimal(160)), (T0, Decimal(220))])
    over = incoming("M1", T0 + 60 * DAY, Decimal(220) + Decimal("300.001"))  # the limit: 5 × 1 m³ × 60 days
    await handle(engine, over, incoming("M2", T0 + 60 * DAY, Decimal(220) + Decimal("300.000")), privacy=privacy)
    (flagged,) = [o for o in await outbox_rows(engine) if o.type == "reading.flagged"]
    assert (flagged.data["reading_id"], rules_of(flagged)) == (over.message_id, ["spike"])


async def test_a_batch_is_checked_in_time_order_each_reading_against_the_earlier_ones(
    engine: AsyncEngine, privacy: Privacy
) -> None:
    await account_with_meters(engine, privacy, ("M1", "open"))
    await history(engine, "M1", daily(Decimal(100), 40))
    last = Decimal(100) + 39 * DAILY
    later = incoming("M1", T0 + 2 * DAY, last + Decimal("1.000"))
    earlier = incoming("M1", T0 + DAY, last + Decimal("3.000"))
    await handle(engine, later, earlier)  # the later one first, as a broker may deliver them

    stored = await qualities(engine, "M1")
    # Against the stored reading alone the later one looks fine (+1 m³ in two days); after the earlier
    # one of the batch, its register went back.
    assert (stored[T0 + DAY], stored[T0 + 2 * DAY]) == ("valid", "suspect,held")
    (flagged,) = await outbox_rows(engine)
    assert (flagged.data["reading_id"], rules_of(flagged)) == (later.message_id, ["negative"])
    assert flagged.data["quality"] == ["suspect", "held"]
    assert flagged.data["consumption_m3"] == "-2.000"


async def test_the_baseline_is_the_previous_accepted_reading_not_a_suspect_one(
    engine: AsyncEngine, privacy: Privacy
) -> None:
    await account_with_meters(engine, privacy, ("M1", "open"))
    await history(engine, "M1", daily(Decimal(100), 40))
    last = Decimal(100) + 39 * DAILY
    await history(engine, "M1", [(T0 + DAY, last + 50)], quality="suspect")  # a misread, flagged earlier
    await handle(engine, incoming("M1", T0 + 2 * DAY, last + Decimal("2.500")))
    assert (await qualities(engine, "M1"))[T0 + 2 * DAY] == "valid"
    assert await outbox_rows(engine) == []


async def test_use_while_the_valve_is_closed_raises_a_valve_fault_alarm(engine: AsyncEngine,
                                                                       privacy: Privacy) -> None:
    await account_with_meters(engine, privacy, ("SHUT", "closed"), ("LATE", "open"))
    for m in ("SHUT", "LATE"):
        await history(engine, m, daily(Decimal(100), 40))
    last = Decimal(100) + 39 * DAILY
    # LATE's valve closed after its last reading: what it used before that is no fault.
    async with engine.begin() as conn:
        await record_valve_state(conn, [Incoming("v1", "valve.state", "LATE", "v1", ValveStateReported(
            meter_id="LATE", state=ValveState.CLOSED, observed_at=T0 + 12 * HOUR))])
    shut = incoming("SHUT", T0 + DAY, last + Decimal("0.500"))
    await handle(engine, shut, incoming("LATE", T0 + DAY, last + Decimal("0.500")), privacy=privacy)

    out = await outbox_rows(engine)
    assert [o.type for o in out] == ["alarm.raised", "reading.flagged"]
    raised, flagged = out
    assert raised.lane == "safety"
    assert raised.data["kind"] == "valve_fault"
    assert raised.data["alarm_id"] == f"use_while_closed-{shut.message_id}"
    assert (raised.data["meter_id"], raised.data["severity"]) == ("SHUT", 5)
    assert (flagged.data["meter_id"], rules_of(flagged)) == ("SHUT", ["use_while_closed"])
    stored = {m: (await qualities(engine, m))[T0 + DAY] for m in ("SHUT", "LATE")}
    assert stored == {"SHUT": "suspect", "LATE": "valid"}

    # From then on LATE is closed throughout: its next use is a fault too.
    await handle(engine, incoming("LATE", T0 + 2 * DAY, last + Decimal("0.900")))
    assert [o.data.get("meter_id") for o in (await outbox_rows(engine))[2:]] == ["LATE", "LATE"]


async def test_valve_reports_keep_the_meter_state_and_an_older_one_does_not_win(engine: AsyncEngine,
                                                                               privacy: Privacy) -> None:
    await account_with_meters(engine, privacy, ("V1", "open"))

    def report(n: int, state: ValveState, at: datetime) -> Incoming:
        return Incoming(f"v{n}", "valve.state", "V1", f"v{n}", ValveStateReported(meter_id="V1", state=state,
                                                                               observed_at=at))

    async def state() -> str:
        async with engine.connect() as conn:
            return str(await conn.scalar(select(meter.c.valve_state).where(meter.c.id == "V1")))

    async with engine.begin() as conn:
        await record_valve_state(conn, [report(1, ValveState.CLOSED, T0), report(2, ValveState.OPEN, T0 - HOUR)])
    assert await state() == "closed"
    async with engine.begin() as conn:
        await record_valve_state(conn, [report(3, ValveState.OPEN, T0 - 2 * HOUR)])
    assert await state() == "closed"
    async with engine.begin() as conn:
        await record_valve_state(conn, [report(4, ValveState.OPEN, T0 + HOUR)])
    assert await state() == "open"


def hourly(start: datetime, hours: int, volume: Decimal, use: Sequence[Decimal]) -> list[tuple[datetime, Decimal]]:
    points = [(start, volume)]
    for n in range(hours):
        volume += use[n % len(use)]
        points.append((start + (n + 1) * HOUR, volume))
    return points


async def test_a_day_of_continuous_flow_raises_one_leak_alarm_and_tells_the_holder(
    engine: AsyncEngine, privacy: Privacy
) -> None:
    await account_with_meters(engine, privacy, ("M1", "open"))
    flow = [Decimal("0.020")]
    points = hourly(T0 - 23 * HOUR, 24, Decimal(500), flow)  # 23 flowing hours stored, one to come
    await history(engine, "M1", points[:-1])
    at, volume = points[-1]
    first = incoming("M1", at, volume)
    await handle(engine, first, privacy=privacy)

    raised, told, flagged = await outbox_rows(engine)
    assert (raised.type, raised.lane, raised.data["kind"]) == ("alarm.raised", "safety", "leak")
    assert raised.data["alarm_id"] == f"leak-{first.message_id}"
    assert raised.data["user_notified"] is True  # told here: the alarm policy sends no second SMS
    assert "24 hours" in raised.data["detail"]
    assert (told.type, told.data["kind"], told.data["safety"]) == ("notification.requested", "alarm", True)
    assert told.data["notification_id"] == f"leak-{first.message_id}"
    assert rules_of(flagged) == ["leak"]
    assert flagged.data["billable"] is True  # the reading itself is fine: gas did flow
    assert (await qualities(engine, "M1"))[at] == "valid"

    # core:record_alarm takes the alarm (the route "alarms") and closes the valve.
    alarm_in = Incoming("out-1", "alarm.raised", "M1", first.correlation_id,
                        AlarmRaised.model_validate(raised.data))
    async with engine.begin() as conn:
        await record_alarm(conn, [alarm_in])
    commands = [o for o in await outbox_rows(engine) if o.type == "valve.command"]
    assert [(c.data["meter_id"], c.data["action"], c.correlation_id) for c in commands] == [
        ("M1", "close", first.correlation_id)]

    # The gas still flows an hour later, but the alarm is open: no second alarm, no second message.
    second = incoming("M1", at + HOUR, volume + flow[0])
    await handle(engine, second, privacy=privacy)
    later = (await outbox_rows(engine))[4:]
    assert [(o.type, o.data["reading_id"]) for o in later] == [("reading.flagged", second.message_id)]
    async with engine.connect() as conn:
        assert (await conn.execute(select(alarm.c.kind, alarm.c.status))).all() == [("leak", "open")]


async def test_a_day_of_flow_in_one_batch_raises_the_alarm_once(engine: AsyncEngine, privacy: Privacy) -> None:
    await account_with_meters(engine, privacy, ("M1", "open"))
    points = hourly(T0, 26, Decimal(500), [Decimal("0.030"), Decimal("0.010")])
    items = [incoming("M1", t, v) for t, v in points]
    await handle(engine, *reversed(items), privacy=privacy)
    out = await outbox_rows(engine)
    assert [o.type for o in out] == ["alarm.raised", "notification.requested", "reading.flagged",
                                     "reading.flagged", "reading.flagged"]
    # Hour 24 is the first that ends a day of flow (the reading at T0 starts it).
    assert out[0].data["alarm_id"] == f"leak-{items[24].message_id}"
    assert [o.data["reading_id"] for o in out[2:]] == [i.message_id for i in items[24:]]


async def test_an_hour_without_gas_or_without_data_breaks_the_run(engine: AsyncEngine, privacy: Privacy) -> None:
    await account_with_meters(engine, privacy, ("NIGHT", "open"), ("GAP", "open"))
    night = hourly(T0, 26, Decimal(500), [Decimal("0.020")] * 10 + [Decimal(0)] + [Decimal("0.020")] * 15)
    gap = [p for n, p in enumerate(hourly(T0, 26, Decimal(500), [Decimal("0.020")])) if n != 12]
    await handle(engine, *(incoming("NIGHT", t, v) for t, v in night), *(incoming("GAP", t, v) for t, v in gap),
                 privacy=privacy)
    assert await outbox_rows(engine) == []


async def test_a_reading_delivered_again_emits_nothing_more(engine: AsyncEngine, privacy: Privacy) -> None:
    await account_with_meters(engine, privacy, ("M1", "open"))
    await history(engine, "M1", daily(Decimal(100), 40))
    spike = Decimal(100) + 39 * DAILY + Decimal(20)
    item = incoming("M1", T0 + DAY, spike)
    await handle(engine, item, privacy=privacy)
    assert len(await outbox_rows(engine)) == 2

    # The same message again (redelivered after a crash), and the same reading in another message
    # (the vendor pushed it twice), alone and beside a copy of itself in one batch.
    await handle(engine, item, privacy=privacy)
    await handle(engine, incoming("M1", T0 + DAY, spike), privacy=privacy)
    normal = Decimal(100) + 39 * DAILY + Decimal("2.400")
    await handle(engine, incoming("M1", T0 + 2 * DAY, normal), incoming("M1", T0 + 2 * DAY, normal),
                 privacy=privacy)
    out = await outbox_rows(engine)
    assert len(out) == 2
    assert len(await qualities(engine, "M1")) == 42

    # Another value for a stored time is a conflict, and nothing of its batch is kept.
    with pytest.raises(Conflict, match="already has"):
        await handle(engine, incoming("M1", T0 + 3 * DAY, normal + 1), incoming("M1", T0 + DAY, spike + 1),
                     privacy=privacy)
    assert len(await qualities(engine, "M1")) == 42
    assert len(await outbox_rows(engine)) == 2


async def test_every_rule_and_every_event_follows_the_settings(engine: AsyncEngine, privacy: Privacy) -> None:
    await account_with_meters(engine, privacy, ("A", "open"), ("B", "open"), ("C", "open"), ("D", "open"))
    for m in "ABCD":
        await history(engine, m, daily(Decimal(100), 40))
    use = Decimal(100) + 39 * DAILY + Decimal(10)  # 10 m³ in a day: a spike at the default factor 5

    quiet = ReadingsSettings(rules=ValidationSettings(disabled_rules=frozenset({RuleId.SPIKE})))
    await handle(engine, incoming("A", T0 + DAY, use), settings=quiet, privacy=privacy)
    lenient = ReadingsSettings(rules=ValidationSettings(spike_factors={"residential": Decimal(10)}))
    await handle(engine, incoming("B", T0 + DAY, use), settings=lenient, privacy=privacy)
    assert await outbox_rows(engine) == []
    assert {m: (await qualities(engine, m))[T0 + DAY] for m in "AB"} == {"A": "valid", "B": "valid"}

    await handle(engine, incoming("C", T0 + DAY, use), settings=ReadingsSettings(notify=frozenset()), privacy=privacy)
    assert [o.type for o in await outbox_rows(engine)] == ["reading.flagged"]
    await handle(engine, incoming("D", T0 + DAY, use), settings=ReadingsSettings(flag_events=False), privacy=privacy)
    assert [o.type for o in await outbox_rows(engine)] == ["reading.flagged", "notification.requested"]
    assert (await qualities(engine, "D"))[T0 + DAY] == "suspect,held,estimate_due"

    # Without the personal-data keys nobody can be told; the reading is still flagged.
    await handle(engine, incoming("A", T0 + 2 * DAY, use + 20))
    assert [o.type for o in await outbox_rows(engine)][2:] == ["reading.flagged"]


async def test_the_stored_context_rules(engine: AsyncEngine, privacy: Privacy) -> None:
    """A meter in stock registering gas, a month without use, more than the meter can pass, a
    register that rolled over, a meter the core does not know."""
    await account_with_meters(engine, privacy, ("IDLE", "open"), ("BIG", "open"), ("WRAP", "open"))
    await spare_meter(engine, "STOCK")
    await history(engine, "STOCK", [(T0, Decimal(5))])
    await history(engine, "IDLE", [(T0 - 31 * DAY, Decimal(300)), (T0, Decimal(300))])
    await history(engine, "BIG", daily(Decimal(100), 40))
    await history(engine, "WRAP", daily(Decimal("999952.200"), 40))  # the last at 999999.000
    await history(engine, "NEW", [(T0, Decimal(7))])
    wrap_at = Decimal("0.100")  # 1.100 m³ later, past 999999.999
    await handle(engine, incoming("STOCK", T0 + DAY, Decimal("5.500")), incoming("IDLE", T0 + DAY, Decimal(300)),
                 incoming("BIG", T0 + DAY, Decimal(100) + 39 * DAILY + 100), incoming("WRAP", T0 + DAY, wrap_at),
                 incoming("NEW", T0 + DAY, Decimal(900)), privacy=privacy)

    flagged = {o.data["meter_id"]: o for o in await outbox_rows(engine) if o.type == "reading.flagged"}
    assert set(flagged) == {"STOCK", "IDLE", "BIG"}
    assert rules_of(flagged["STOCK"]) == ["use_while_closed"]
    assert flagged["STOCK"].data["findings"][0]["work_order"] == "theft_inspection"
    assert rules_of(flagged["IDLE"]) == ["zero_use"]
    assert flagged["IDLE"].data["findings"][0]["work_order"] == "zero_use_check"
    assert sorted(rules_of(flagged["BIG"])) == ["over_capacity", "spike"]  # G2.5: 4 m³/h at most
    assert (await qualities(engine, "WRAP"))[T0 + DAY] == "valid,derived"
    assert (await qualities(engine, "NEW"))[T0 + DAY] == "valid"  # no average: nothing to compare with


async def test_build_handlers_passes_the_settings_and_keys_to_record_reading(engine: AsyncEngine,
                                                                            privacy: Privacy) -> None:
    await account_with_meters(engine, privacy, ("M1", "open"))
    today = datetime.now(UTC).replace(microsecond=0)
    await history(engine, "M1", daily(Decimal(100), 40, end=today - DAY))
    settings = ReadingsSettings(flag_events=False)
    handler = build_handlers(CoreConfig(readings=settings, privacy=privacy))["record_reading"]
    assert handler.emits == ("alarm.raised", "notification.requested")
    async with engine.begin() as conn:
        await handler.fn(conn, [incoming("M1", today - HOUR, Decimal(100) + 39 * DAILY + 40)])
    assert [(o.type, o.data["phone"]) for o in await outbox_rows(engine)] == [("notification.requested", PHONE)]
