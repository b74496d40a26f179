"""Prepaid meters against a real database, on SQLite and on PostgreSQL (migrated with Alembic):
``record_reading`` charges accepted readings (tier split, once per reading, suspect ones not until an
accepted one follows), tells the holder of a low balance once until a top-up, closes the valve once
at zero; a top-up does not reopen it; ``core.valves.reopen_valve`` reopens only with an on-site
confirmation, a balance above zero and no open leak alarm.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from ulid import ULID

from core.accounts import CustomerIn, PremisesIn, Privacy, id_check_digit, open_account
from core.billing import ResidentialTariff, TariffBook
from core.catalogue.messages import AlarmKind, AlarmRaised, MeterReading, PaymentChannel, PaymentReceived, ReadingSource
from core.config import CoreConfig
from core.db.tables import alarm, outbox, reading
from core.db.tables_billing import meter
from core.db.tables_payments import prepaid_entry
from core.db.tables_valves import valve_closure, valve_reopen
from core.errors import Conflict
from core.handlers import build_handlers
from core.handlers.alarms import record_alarm
from core.handlers.payments import PaymentHandlers
from core.handlers.readings import record_reading
from core.messages import Incoming
from core.prepaid import PrepaidMeters, PrepaidSettings
from core.privacy import KeyRing, generate_key
from core.readings import ReadingsSettings
from core.valves import Confirmation, MeterNotFound, ReopenRefused, reopen_valve
from tests.flow.conftest import fresh_postgres_database, migrated_engine

D = Decimal
T0 = datetime(2026, 6, 1, 16, tzinfo=UTC)  # local midnight, 2 June
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
DAILY = D("1.200")  # 3.60 yuan a day in tier 1
LAST = D(100) + 39 * DAILY  # the register at T0 after the history below
PHONE = "13812345678"
HOLDER = CustomerIn(name="王五", phone=PHONE, id_number="33060219900101123" + id_check_digit("33060219900101123"))
HOME = PremisesIn(address="绍兴市越城区解放北路88号3幢201室", district="yuecheng", lat=30.00, lon=120.58)
BOOK = TariffBook(versions=(ResidentialTariff(
    version="RES-2025", effective_from=date(2025, 1, 1), thresholds_m3=(D(300), D(600)),
    prices=(D("3.00"), D("3.60"), D("4.50"))),))
NO_REMINDER = PrepaidSettings(enabled=True, low_balance_yuan=None, low_balance_days=None)


@pytest.fixture
async def pg_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    url, drop = await fresh_postgres_database(postgres_url)
    async with migrated_engine(url, drop) as eng:
        yield eng


@pytest.fixture
def privacy() -> Privacy:
    return Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))


# ---- the world ---------------------------------------------------------------------------------


async def prepaid_meter(eng: AsyncEngine, privacy: Privacy, meter_id: str = "P1", *, balance: str,
                        cycle_m3: str | None = None) -> str:
    """A prepaid residential account with one meter (valve open) read daily for 40 days up to T0."""
    async with eng.begin() as conn:
        view = await open_account(conn, privacy, f"req-{ULID()}", HOLDER, HOME, "residential", "prepaid",
                                  opened_at=T0 - 400 * DAY)
        await conn.execute(insert(meter).values(
            id=meter_id, account_id=view.account_id, model="G2.5", installed_at=date(2025, 1, 1), valve_state="open",
            prepaid_balance=D(balance)))
        if cycle_m3 is not None:  # charged before: up to T0, with this much used in the 2026 cycle
            await conn.execute(update(meter).where(meter.c.id == meter_id).values(
                prepaid_read_at=T0, prepaid_read_m3=LAST, prepaid_cycle_start=date(2026, 1, 1),
                prepaid_cycle_m3=D(cycle_m3)))
        await conn.execute(insert(reading), [
            {"id": str(ULID()), "meter_id": meter_id, "read_at": T0 - (39 - n) * DAY, "volume_m3": D(100) + n * DAILY,
             "source": "ctwing", "quality": "valid", "message_id": f"seed-{ULID()}"}
            for n in range(40)])
    return view.account_id


def incoming(at: datetime, volume: Decimal | str, meter_id: str = "P1", message_id: str | None = None) -> Incoming:
    mid = message_id or str(ULID())
    data = MeterReading(meter_id=meter_id, read_at=at, volume_m3=D(volume), source=ReadingSource.CTWING)
    return Incoming(mid, "meter.reading", meter_id, f"corr-{mid}", data)


def day(n: int, extra: str = "0") -> Incoming:
    """The reading ``n`` days after T0, having used ``DAILY`` a day (plus ``extra``)."""
    return incoming(T0 + n * DAY, LAST + n * DAILY + D(extra))


async def handle(eng: AsyncEngine, *items: Incoming, prepaid: PrepaidSettings = NO_REMINDER,
                 privacy: Privacy | None = None) -> None:
    latest = max(i.data.read_at for i in items if isinstance(i.data, MeterReading))
    async with eng.begin() as conn:
        await record_reading(conn, items, settings=ReadingsSettings(), privacy=privacy,
                             prepaid=PrepaidMeters(prepaid, BOOK, ReadingsSettings().rules),
                             now=latest + timedelta(minutes=5))


async def top_up(eng: AsyncEngine, privacy: Privacy, account_id: str, amount: str) -> None:
    data = PaymentReceived(channel=PaymentChannel.WECHAT, transaction_id=str(ULID()), out_trade_no=str(ULID()),
                           account_id=account_id, amount=D(amount), paid_at=T0)
    item = Incoming(str(ULID()), "payment.received", account_id, "pay", data)
    async with eng.begin() as conn:
        await PaymentHandlers(CoreConfig(privacy=privacy)).record_payment(conn, [item])


@dataclass(frozen=True)
class Out:
    type: str
    lane: str
    correlation_id: str
    causation_id: str | None
    data: dict[str, Any]


async def events(eng: AsyncEngine, *types: str) -> list[Out]:
    async with eng.connect() as conn:
        rows = await conn.execute(select(outbox).order_by(outbox.c.seq))
        out = [Out(r.type, r.lane, r.correlation_id, r.causation_id, orjson.loads(r.data)) for r in rows]
    return [o for o in out if o.type in types] if types else out


async def entries(eng: AsyncEngine, meter_id: str = "P1") -> list[Any]:
    async with eng.connect() as conn:
        return list(await conn.execute(select(prepaid_entry).where(
            prepaid_entry.c.meter_id == meter_id, prepaid_entry.c.kind == "deduction").order_by(
            prepaid_entry.c.balance_after.desc())))


async def meter_row(eng: AsyncEngine, meter_id: str = "P1") -> Any:
    async with eng.connect() as conn:
        return (await conn.execute(select(meter).where(meter.c.id == meter_id))).one()


async def closures(eng: AsyncEngine) -> list[Any]:
    async with eng.connect() as conn:
        return list(await conn.execute(select(valve_closure).order_by(valve_closure.c.closed_at)))


def money(value: Any) -> Decimal:
    return D(value).quantize(D("0.01"))


# ---- charging --------------------------------------------------------------------------------------


async def test_an_accepted_reading_is_charged_once_with_its_tier_split(engine: AsyncEngine,
                                                                       privacy: Privacy) -> None:
    await prepaid_meter(engine, privacy, balance="100.00", cycle_m3="299.000")
    first = day(1)
    await handle(engine, first, privacy=privacy)

    (entry,) = await entries(engine)
    # 1.000 m³ left in tier 1 at 3.00, then 0.200 m³ at 3.60.
    assert (money(entry.amount), money(entry.balance_after), entry.volume_m3) == (D("-3.72"), D("96.28"), DAILY)
    assert (entry.reading_id, entry.payment_id, entry.kind) == (first.message_id, None, "deduction")
    assert entry.detail == "RES-2025 t1 1.000 m³ × 3.00; RES-2025 t2 0.200 m³ × 3.60"
    m = await meter_row(engine)
    assert (money(m.prepaid_balance), D(m.prepaid_cycle_m3), D(m.prepaid_read_m3)) == (
        D("96.28"), D("300.200"), LAST + DAILY)
    assert m.prepaid_read_at == T0 + DAY

    # The same message again, and another message with the same meter, time and value: nothing more.
    await handle(engine, first, privacy=privacy)
    await handle(engine, day(1), privacy=privacy)
    assert len(await entries(engine)) == 1
    assert money((await meter_row(engine)).prepaid_balance) == D("96.28")
    # The next day is charged in tier 2 from the reading charged last.
    await handle(engine, day(2), privacy=privacy)
    assert [money(e.amount) for e in await entries(engine)] == [D("-3.72"), D("-4.32")]
    assert await events(engine) == []  # 91.96 yuan left: nothing to say


async def test_suspect_readings_are_charged_only_with_the_next_accepted_one(engine: AsyncEngine,
                                                                             privacy: Privacy) -> None:
    await prepaid_meter(engine, privacy, balance="100.00")
    went_back = incoming(T0 + DAY, LAST - D("0.500"))  # negative consumption: suspect, billing held
    await handle(engine, went_back)
    assert await entries(engine) == []
    # The next accepted reading pays for everything since the last accepted one (T0), in the cycle
    # that starts empty (no charge before): 2.400 m³ at 3.00.
    await handle(engine, day(2))
    (entry,) = await entries(engine)
    assert (entry.volume_m3, money(entry.amount), money(entry.balance_after)) == (2 * DAILY, D("-7.20"), D("92.80"))


async def test_many_small_readings_are_charged_what_they_used_in_total(engine: AsyncEngine,
                                                                       privacy: Privacy) -> None:
    await prepaid_meter(engine, privacy, balance="10.00", cycle_m3="0.000")
    # Ten readings of 0.002 m³ each (0.006 yuan): rounded alone each would be 0.01, ten times 0.06.
    # The sub-fen remainder is carried, so the ten cost 0.06 exactly, never 0.00 or 0.10.
    items = [incoming(T0 + (n + 1) * HOUR, LAST + (n + 1) * D("0.002")) for n in range(10)]
    for item in items:
        await handle(engine, item)
    amounts = [money(e.amount) for e in await entries(engine)]
    assert sum(amounts) == D("-0.06")
    assert set(amounts) == {D("0.00"), D("-0.01")}
    m = await meter_row(engine)
    assert money(m.prepaid_balance) == D("9.94")
    assert D(m.prepaid_residue) == 0


async def test_a_late_reading_older_than_the_last_charged_costs_nothing(engine: AsyncEngine,
                                                                        privacy: Privacy) -> None:
    await prepaid_meter(engine, privacy, balance="100.00", cycle_m3="0.000")
    await handle(engine, day(2))
    await handle(engine, day(1))  # arrives late: its gas was charged with day 2
    assert [e.volume_m3 for e in await entries(engine)] == [2 * DAILY]
    assert (await meter_row(engine)).prepaid_read_at == T0 + 2 * DAY


async def test_postpaid_meters_and_readings_without_prepaid_settings_are_not_charged(
    engine: AsyncEngine, privacy: Privacy
) -> None:
    await prepaid_meter(engine, privacy, balance="50.00")
    async with engine.begin() as conn:
        await record_reading(conn, [day(1)], now=T0 + DAY + HOUR)  # the table built without [core.prepaid]
    assert await entries(engine) == []
    assert money((await meter_row(engine)).prepaid_balance) == D("50.00")


# ---- low balance and zero ---------------------------------------------------------------------------


async def test_a_low_balance_is_told_once_until_a_top_up(engine: AsyncEngine, privacy: Privacy) -> None:
    account_id = await prepaid_meter(engine, privacy, balance="25.00", cycle_m3="0.000")
    reminder = PrepaidSettings(enabled=True, low_balance_yuan=D("20.00"), low_balance_days=None)
    items = [day(n) for n in range(1, 4)]
    for item in items:  # 21.40, 17.80 (below 20: told), 14.20 (told already)
        await handle(engine, item, prepaid=reminder, privacy=privacy)
    (told,) = await events(engine, "notification.requested")
    assert told.data["notification_id"] == f"prepaid-low-{items[1].message_id}"
    assert (told.data["kind"], told.data["safety"], told.data["phone"]) == ("low_balance", False, PHONE)
    assert told.data["params"] == {"meter": "P1", "stage": "low", "balance": "17.80", "threshold": "20.00",
                                   "read_at": "2026-06-04 00:00"}
    assert (told.correlation_id, told.causation_id) == (items[1].correlation_id, items[1].message_id)

    await top_up(engine, privacy, account_id, "10.00")  # 24.20: above the threshold again
    assert (await meter_row(engine)).prepaid_low_notified is False
    later = [day(n) for n in range(4, 6)]
    for item in later:  # 20.60, then 17.00: told again
        await handle(engine, item, prepaid=reminder, privacy=privacy)
    told_again = (await events(engine, "notification.requested"))[1:]
    assert [t.data["notification_id"] for t in told_again] == [f"prepaid-low-{later[1].message_id}"]
    assert told_again[0].data["params"]["balance"] == "17.00"


async def test_the_days_threshold_follows_the_average_use(engine: AsyncEngine, privacy: Privacy) -> None:
    await prepaid_meter(engine, privacy, balance="40.00", cycle_m3="0.000")
    # 10 days of 1.2 m³ at 3.00 = 36.00 yuan: the threshold after the first reading (36.40 left).
    by_days = PrepaidSettings(enabled=True, low_balance_yuan=D("5.00"), low_balance_days=D(10))
    first = day(1)
    await handle(engine, first, prepaid=by_days, privacy=privacy)
    assert await events(engine, "notification.requested") == []
    second = day(2)
    await handle(engine, second, prepaid=by_days, privacy=privacy)  # 32.80 < 36.00
    (told,) = await events(engine, "notification.requested")
    assert told.data["params"]["threshold"] == "36.00"


async def test_without_keys_the_reminder_is_skipped_but_the_valve_still_closes(engine: AsyncEngine,
                                                                                privacy: Privacy) -> None:
    await prepaid_meter(engine, privacy, balance="2.00", cycle_m3="0.000")
    await handle(engine, day(1), prepaid=PrepaidSettings(enabled=True), privacy=None)
    assert [o.type for o in await events(engine)] == ["valve.command"]
    assert money((await meter_row(engine)).prepaid_balance) == D("-1.60")


async def test_the_valve_closes_once_at_zero_and_a_top_up_does_not_reopen_it(engine: AsyncEngine,
                                                                            privacy: Privacy) -> None:
    account_id = await prepaid_meter(engine, privacy, balance="5.00", cycle_m3="0.000")
    items = [day(n) for n in range(1, 4)]  # 1.40, -2.20 (close), -5.80 (closed already)
    for item in items:
        await handle(engine, item, privacy=privacy)

    command, told = await events(engine)
    assert (command.type, command.lane) == ("valve.command", "safety")
    assert command.data == {"command_id": f"prepaid-close-{items[1].message_id}", "meter_id": "P1",
                            "action": "close", "reason": f"prepaid balance -2.20 after reading {items[1].message_id}",
                            "requested_by": "core.prepaid", "on_site_confirmed": False}
    assert (command.correlation_id, command.causation_id) == (items[1].correlation_id, items[1].message_id)
    assert (told.type, told.data["kind"], told.data["safety"]) == ("notification.requested", "low_balance", True)
    assert told.data["params"]["stage"] == "zero"
    assert told.data["params"]["balance"] == "-2.20"
    (closure,) = await closures(engine)
    assert (closure.id, closure.reason, closure.reference, closure.reopen_id) == (
        command.data["command_id"], "prepaid", items[1].message_id, None)
    async with engine.connect() as conn:
        assert closure.message_id == await conn.scalar(select(outbox.c.id).where(outbox.c.type == "valve.command"))
    assert money((await meter_row(engine)).prepaid_balance) == D("-5.80")

    await top_up(engine, privacy, account_id, "100.00")
    assert money((await meter_row(engine)).prepaid_balance) == D("94.20")
    assert [o.data["action"] for o in await events(engine, "valve.command")] == ["close"]
    assert (await closures(engine))[0].reopen_id is None
    assert (await meter_row(engine)).valve_state == "open"  # as last reported: nothing was sent to open it


async def test_meters_that_close_themselves_get_one_zero_notice_and_no_command(engine: AsyncEngine,
                                                                              privacy: Privacy) -> None:
    await prepaid_meter(engine, privacy, balance="5.00", cycle_m3="0.000")
    meter_side = PrepaidSettings(enabled=True, low_balance_yuan=None, low_balance_days=None, close_valve=False)
    items = [day(n) for n in range(1, 5)]  # 1.40, -2.20 (crossed: told), -5.80, -9.40
    for item in items:
        await handle(engine, item, prepaid=meter_side, privacy=privacy)
    (told,) = await events(engine)
    assert (told.type, told.data["notification_id"]) == ("notification.requested",
                                                          f"prepaid-zero-{items[1].message_id}")
    assert await closures(engine) == []
    assert money((await meter_row(engine)).prepaid_balance) == D("-9.40")


# ---- reopening ------------------------------------------------------------------------------------


def confirmed(at: datetime, notes: str = "indoor pipes and appliances checked, no leak") -> Confirmation:
    return Confirmation(on_site_check_done=True, checked_by="engineer 0451", checked_at=at, notes=notes)


async def reopen(eng: AsyncEngine, request_id: str, confirmation: Confirmation, now: datetime,
                 meter_id: str = "P1") -> Any:
    async with eng.begin() as conn:
        return await reopen_valve(conn, meter_id, request_id, confirmation, user_id="U-FIELD", now=now)


async def leak_alarm(eng: AsyncEngine, alarm_id: str, at: datetime) -> Incoming:
    item = Incoming(f"m-{alarm_id}", "alarm.raised", "P1", f"corr-{alarm_id}", AlarmRaised(
        alarm_id=alarm_id, kind=AlarmKind.LEAK, meter_id="P1", detected_at=at, severity=5))
    async with eng.begin() as conn:
        await record_alarm(conn, [item])
    return item


async def test_a_valve_reopens_only_with_confirmation_money_and_no_open_leak(engine: AsyncEngine,
                                                                            privacy: Privacy) -> None:
    account_id = await prepaid_meter(engine, privacy, balance="5.00", cycle_m3="0.000")
    for n in (1, 2):
        await handle(engine, day(n), privacy=privacy)  # closed at -2.20
    now = datetime.now(UTC)

    with pytest.raises(ReopenRefused) as refused:
        await reopen(engine, "r-1", Confirmation(on_site_check_done=False, checked_by="engineer 0451",
                                                 checked_at=now, notes=""), now)
    assert any("not confirmed" in r for r in refused.value.reasons)
    with pytest.raises(ReopenRefused) as refused:
        await reopen(engine, "r-2", confirmed(now), now)
    assert refused.value.reasons == ("the prepaid balance is not above zero: the account must be topped up first",)

    await top_up(engine, privacy, account_id, "50.00")
    leak = await leak_alarm(engine, "leak-P1-1", now)  # the safety response closes the valve too
    now = datetime.now(UTC)
    with pytest.raises(ReopenRefused) as refused:
        await reopen(engine, "r-3", confirmed(now), now)
    assert refused.value.reasons == ("alarm leak-P1-1 is open: acknowledge or close it once the site is safe",)
    with pytest.raises(ReopenRefused, match="before the valve was closed"):
        await reopen(engine, "r-4", confirmed(now - HOUR), now)
    with pytest.raises(ReopenRefused, match="older than 24 hours"):
        await reopen(engine, "r-5", confirmed(now - 25 * HOUR), now)
    with pytest.raises(ReopenRefused, match="in the future"):
        await reopen(engine, "r-6", confirmed(now + HOUR), now)
    with pytest.raises(MeterNotFound):
        await reopen(engine, "r-7", confirmed(now), now, meter_id="NOPE")
    assert await events(engine, "valve.command") == (await events(engine, "valve.command"))[:2]  # no open yet

    async with engine.begin() as conn:
        await conn.execute(update(alarm).where(alarm.c.id == "leak-P1-1").values(status="acknowledged"))
    checked = now + timedelta(minutes=1)
    done = await reopen(engine, "r-8", confirmed(checked), checked)
    assert not done.replayed
    assert sorted(c.reason.value for c in done.closures) == ["prepaid", "safety"]
    close_prepaid, close_leak, opened = await events(engine, "valve.command")
    assert close_leak.data["command_id"] == "close-leak-P1-1"
    assert opened.lane == "safety"
    assert opened.data == {"command_id": done.command_id, "meter_id": "P1", "action": "open",
                           "reason": f"reopen {done.reopen_id} confirmed on site (closed: prepaid, safety)",
                           "requested_by": "field:U-FIELD", "on_site_confirmed": True}
    # The open command joins the flow of the latest closure (the leak's), caused by its close command.
    assert opened.correlation_id == leak.correlation_id
    assert {c.reopen_id for c in await closures(engine)} == {done.reopen_id}
    async with engine.connect() as conn:
        (stored,) = (await conn.execute(select(valve_reopen))).all()
        close_ids = dict((await conn.execute(select(valve_closure.c.id, valve_closure.c.message_id))).all())
    assert opened.causation_id == close_ids["close-leak-P1-1"]
    assert (stored.checked_by, stored.notes, stored.user_id, stored.command_id) == (
        "engineer 0451", "indoor pipes and appliances checked, no leak", "U-FIELD", done.command_id)
    assert close_prepaid.data["action"] == "close"

    # The same request again: the same answer, nothing sent. The same id for another reopen: refused.
    again = await reopen(engine, "r-8", confirmed(checked), checked + HOUR)
    assert (again.replayed, again.command_id, len(again.closures)) == (True, done.command_id, 2)
    assert len(await events(engine, "valve.command")) == 3
    with pytest.raises(Conflict):
        await reopen(engine, "r-8", confirmed(checked, notes="other notes"), checked + HOUR)


async def test_a_safety_closure_alone_reopens_once_the_alarm_is_closed(engine: AsyncEngine,
                                                                       privacy: Privacy) -> None:
    await prepaid_meter(engine, privacy, balance="80.00")
    await leak_alarm(engine, "leak-P1-2", datetime.now(UTC))
    now = datetime.now(UTC)
    (closure,) = await closures(engine)
    assert (closure.reason, closure.reference) == ("safety", "leak-P1-2")
    async with engine.begin() as conn:
        await conn.execute(update(alarm).where(alarm.c.id == "leak-P1-2").values(status="closed"))
    done = await reopen(engine, "r-1", confirmed(now), now)
    assert [c.id for c in done.closures] == ["close-leak-P1-2"]
    # Nothing pending any more and the meter reports its valve open: nothing to reopen.
    async with engine.begin() as conn:
        await conn.execute(update(meter).where(meter.c.id == "P1").values(valve_state="open"))
    with pytest.raises(ReopenRefused, match="nothing to reopen"):
        await reopen(engine, "r-2", confirmed(now), now)


async def test_the_hub_handler_table_charges_prepaid_meters_when_enabled(engine: AsyncEngine,
                                                                         privacy: Privacy) -> None:
    await prepaid_meter(engine, privacy, balance="3.00")
    handlers = build_handlers(CoreConfig(privacy=privacy, prepaid=PrepaidSettings(enabled=True), tariffs=BOOK))
    # The handler reads the clock itself: a reading of a minute ago, 2 m³ since the last one (T0).
    item = incoming(datetime.now(UTC) - timedelta(minutes=1), LAST + D("2.000"))
    async with engine.begin() as conn:
        await handlers["record_reading"].fn(conn, [item])
    (entry,) = await entries(engine)
    assert (money(entry.amount), money(entry.balance_after)) == (D("-6.00"), D("-3.00"))
    assert [o.type for o in await events(engine)] == ["valve.command", "notification.requested"]


# ---- concurrency ------------------------------------------------------------------------------------


async def test_concurrent_batches_of_one_meter_charge_each_m3_once(pg_engine: AsyncEngine,
                                                                   privacy: Privacy) -> None:
    """Two batches of the same meter at once (two consumers of the route): the second validates
    without the first's reading, but waits for the first to commit before it prices, and then prices
    from the reading the first charged."""
    await prepaid_meter(pg_engine, privacy, balance="100.00", cycle_m3="0.000")
    prepaid = PrepaidMeters(NO_REMINDER, BOOK, ReadingsSettings().rules)
    async with pg_engine.connect() as first, pg_engine.connect() as second:
        await first.begin()
        await record_reading(first, [day(1)], prepaid=prepaid, now=T0 + 3 * DAY)
        await second.begin()
        racing = asyncio.create_task(record_reading(second, [day(2)], prepaid=prepaid, now=T0 + 3 * DAY))
        await asyncio.sleep(0.5)
        assert not racing.done()  # waiting for the first batch's lock on the meter
        await first.commit()
        await racing
        await second.commit()
    charged = await entries(pg_engine)
    assert [(e.volume_m3, money(e.balance_after)) for e in charged] == [(DAILY, D("96.40")), (DAILY, D("92.80"))]
    assert money((await meter_row(pg_engine)).prepaid_balance) == D("92.80")
