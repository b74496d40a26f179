"""Deducting the gas prepaid meters use, reading by reading (domain issue item 5).

For each *accepted* reading (actual, not ``suspect``: the VEE rules found nothing that holds billing)
of a meter on a prepaid account that a ``record_reading`` batch really inserted:

1. **What was used.** Each prepaid meter remembers the last reading it was charged for
   (``core_meter.prepaid_read_at``/``prepaid_read_m3``); the use is the register's advance since then
   (rollover-corrected). Until a meter has one, the validation's baseline (the previous accepted
   reading) is the start. A reading older than the one last charged was paid for within a later
   interval and costs nothing; a suspect reading costs nothing now and its use is charged with the
   next accepted one (an interval always starts at the last reading charged).
2. **What it costs.** :class:`~core.prepaid.pricing.Pricer` prices it with the tariff in force: the
   residential tiers from the annual cycle's cumulative (``prepaid_cycle_start``/``prepaid_cycle_m3``),
   flat prices for the other categories. The deduction is that exact cost plus what the previous
   deductions left over (``prepaid_residue``), rounded half-up to 0.01 yuan: many small readings are
   charged what they used in total, never a fen more or less. No tariff in force: nothing is charged
   and the meter's last charged reading stays, so the use is charged once the tariff is there.
3. **The ledger.** ``core_meter.prepaid_balance`` goes down and a ``core_prepaid_entry`` row
   (``deduction``, the reading id unique) records the amount, the volume, the tier lines and the
   balance after.
4. **Low balance.** The first deduction that leaves the balance below the threshold
   (:class:`~core.prepaid.settings.PrepaidSettings`) asks for one ``notification.requested`` (kind
   ``low_balance``, ``stage = low``) to the holder; no other until a top-up (``record_payment``
   clears ``prepaid_low_notified``).
5. **Zero.** A deduction that leaves the balance at zero or below, on a meter with no prepaid closure
   pending, sends ``valve.command`` close on the safety lane (``command_id`` derived from the reading,
   ``requested_by = core.prepaid``), records the closure (``core_valve_closure``, reason ``prepaid``)
   and tells the holder (``stage = zero``, a safety notification: the supply stops now). A top-up
   does not reopen the valve: a field engineer does, on site (:func:`core.valves.reopen_valve`).
   With ``close_valve`` off (meters that close themselves) the holder is told when the balance
   crosses zero.

The meters' rows are locked (``SELECT … FOR UPDATE``, in id order, as ``record_payment`` locks them)
before their state is read, so batches of the same meter and payments to it take turns; a batch
waiting for the lock then reads the last reading charged by the batch before it. A reading delivered
again is not inserted again, so it is never charged twice (and ``reading_id`` is unique besides).
Per batch: nothing for batches without prepaid meters; otherwise one locking read, one update, one
insert, and only when a balance reaches zero one read of the pending closures and one insert.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from core.billing import Household, TariffBook, TariffCategory, TariffNotFound
from core.catalogue import Lane
from core.catalogue.messages import NotificationKind, NotificationRequested, ValveAction, ValveCommand
from core.db.bulk import insert_many
from core.db.tables_payments import prepaid_entry
from core.messages import Event, Incoming, derived_id
from core.outbox import emit
from core.prepaid.pricing import PricedUse, Pricer
from core.prepaid.settings import PrepaidSettings
from core.prepaid.store import RESIDUE, MeterState, lock_states, save_states
from core.readings.register import consumption
from core.readings.settings import ValidationSettings
from core.readings.vocabulary import RuleId
from core.valves import ClosedBy, Closure, open_closures, record_closures

log = logging.getLogger(__name__)

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
CENT = Decimal("0.01")
REQUESTED_BY = "core.prepaid"

PhoneLookup = Callable[[set[str]], Awaitable[dict[str, str]]]
"""The holders' mobile numbers of some meters, decrypted (meters without one are left out)."""


@dataclass(frozen=True, slots=True)
class AcceptedReading:
    """A reading of a prepaid meter that a batch stored as accepted, with what validation knew."""

    cause: Incoming
    """The ``meter.reading`` message: its id is the reading's id."""
    meter_id: str
    account_id: str
    category: TariffCategory
    read_at: datetime
    volume_m3: Decimal
    baseline_at: datetime | None
    """The previous accepted reading's time (``None``: the meter's first)."""
    consumption_m3: Decimal | None
    """Use since that reading, rollover-corrected."""
    avg_daily_use_m3: Decimal | None
    household: Household | None = None
    """The account's household, for the large-household uplift (``None``: the plain thresholds)."""

    @property
    def reading_id(self) -> str:
        return self.cause.message_id


@dataclass(frozen=True, slots=True)
class _Zero:
    reading: AcceptedReading
    balance: Decimal
    crossed: bool
    """This reading took the balance from above zero to zero or below."""


@dataclass(frozen=True, slots=True)
class _Low:
    reading: AcceptedReading
    balance: Decimal
    threshold: Decimal


class PrepaidMeters:
    """Charges prepaid meters for what their accepted readings show (module notes)."""

    def __init__(self, settings: PrepaidSettings, book: TariffBook, rules: ValidationSettings) -> None:
        self.settings = settings
        self.pricer = Pricer(book, CHINA_TZ)
        self.rules = rules

    async def deduct(self, conn: AsyncConnection, readings: Sequence[AcceptedReading], *, phones: PhoneLookup,
                     now: datetime) -> None:
        """Charge ``readings`` (any order, any meters) in the caller's transaction and write what the
        balances call for to the outbox."""
        if not readings:
            return
        by_meter: dict[str, list[AcceptedReading]] = {}
        for r in readings:
            by_meter.setdefault(r.meter_id, []).append(r)
        states = await lock_states(conn, list(by_meter))
        entries: list[dict[str, Any]] = []
        changed: dict[str, MeterState] = {}
        low: list[_Low] = []
        zero: dict[str, _Zero] = {}
        for meter_id, state in states.items():
            new = self._charge(state, sorted(by_meter[meter_id], key=lambda r: r.read_at), entries, low, zero, now)
            if new is not state:
                changed[meter_id] = new
        await save_states(conn, changed)
        await insert_many(conn, prepaid_entry, entries)
        await self._tell(conn, low, zero, phones, now)

    def _charge(self, state: MeterState, readings: list[AcceptedReading], entries: list[dict[str, Any]],
                low: list[_Low], zero: dict[str, _Zero], now: datetime) -> MeterState:
        """Charge one meter's readings in time order; returns its new state (``state`` if unchanged)."""
        balance, residue, cycle, low_notified = state.balance, state.residue, state.cycle, state.low_notified
        read_at, read_m3 = state.read_at, state.read_m3
        changed = False
        for r in readings:
            if read_at is None or read_m3 is None:
                start, use = r.baseline_at, r.consumption_m3
            elif r.read_at <= read_at:
                continue  # paid for within the interval of a later reading
            else:
                start = read_at
                use = r.consumption_m3 if r.baseline_at == read_at else self._use(read_m3, r.volume_m3)
            if start is None or use is None or use < 0:
                if read_at is None:  # the meter's first reading: charging starts from here
                    read_at, read_m3, changed = r.read_at, r.volume_m3, True
                continue
            priced: PricedUse | None = None
            if use > 0:
                try:
                    priced = self.pricer.price(r.category, start, r.read_at, use, cycle, r.household)
                except TariffNotFound as exc:
                    log.warning("prepaid.no_tariff", extra={"meter_id": r.meter_id, "reason": str(exc)})
                    break  # the next readings start at the same reading: they cannot be priced either
            read_at, read_m3, changed = r.read_at, r.volume_m3, True
            if priced is None:
                continue
            cycle = priced.cycle
            owed = priced.cost + residue
            amount = owed.quantize(CENT, rounding=ROUND_HALF_UP)  # exact: owed has a handful of places
            residue = (owed - amount).quantize(RESIDUE)
            before, balance = balance, balance - amount
            entries.append({
                "id": str(ULID()), "meter_id": r.meter_id, "account_id": r.account_id, "payment_id": None,
                "refund_row_id": None, "reading_id": r.reading_id, "kind": "deduction", "amount": -amount,
                "balance_after": balance, "volume_m3": use, "detail": priced.detail(), "created_at": now})
            if balance <= 0:  # gas was used with nothing left to pay for it: close (once, see _tell)
                zero.setdefault(r.meter_id, _Zero(r, balance, before > 0))
                low_notified = True
                continue
            if low_notified:
                continue
            threshold = self._threshold(r, priced)
            if threshold is not None and balance < threshold:
                low.append(_Low(r, balance, threshold))
                low_notified = True
        if not changed:
            return state
        return MeterState(balance, read_at, read_m3, cycle, residue, low_notified)

    def _use(self, previous_m3: Decimal, current_m3: Decimal) -> Decimal:
        rules = self.rules
        return consumption(previous_m3, current_m3, digits=rules.default_register_digits,
                           fraction=rules.rollover_fraction, correct_rollover=rules.enabled(RuleId.ROLLOVER)).value_m3

    def _threshold(self, r: AcceptedReading, priced: PricedUse) -> Decimal | None:
        """The low-balance threshold at this reading: the higher of the yuan and the days figure."""
        s = self.settings
        candidates = [s.low_balance_yuan] if s.low_balance_yuan is not None else []
        price = priced.unit_price_now
        if s.low_balance_days is not None and r.avg_daily_use_m3 and price is not None:
            days = s.low_balance_days * r.avg_daily_use_m3 * price
            candidates.append(days.quantize(CENT, rounding=ROUND_HALF_UP))
        return max(candidates, default=None)

    async def _tell(self, conn: AsyncConnection, low: list[_Low], zero: dict[str, _Zero], phones: PhoneLookup,
                    now: datetime) -> None:
        """Close valves at zero (once per closure) and ask for the holders' notifications."""
        s = self.settings
        if zero and s.close_valve:
            pending = await open_closures(conn, zero)
            for meter_id, held in pending.items():
                if any(c.reason is ClosedBy.PREPAID for c in held):
                    del zero[meter_id]  # closed for the balance already: nothing new to do
        elif zero:  # no closure to go by: tell the holder when the balance crosses zero, not after
            zero = {m: z for m, z in zero.items() if z.crossed}
        commands: list[tuple[Event, Incoming]] = []
        closures: list[Closure] = []
        if s.close_valve:
            for z in zero.values():
                r = z.reading
                command = ValveCommand(
                    command_id=derived_id("prepaid-close", r.reading_id), meter_id=r.meter_id, action=ValveAction.CLOSE,
                    reason=f"prepaid balance {z.balance} after reading {r.reading_id}", requested_by=REQUESTED_BY)
                commands.append((Event("valve.command", command, subject=r.meter_id, lane=Lane.SAFETY), r.cause))
                closures.append(Closure(command.command_id, r.meter_id, ClosedBy.PREPAID, r.reading_id, now,
                                        r.cause.correlation_id, None))
        notices: list[tuple[Event, Incoming]] = []
        if s.notify:
            told: list[tuple[AcceptedReading, str, Decimal, Decimal | None]] = [
                (z.reading, "zero", z.balance, None) for z in zero.values()]
            told += [(x.reading, "low", x.balance, x.threshold) for x in low if x.reading.meter_id not in zero]
            found = await phones({r.meter_id for r, *_ in told}) if told else {}
            for r, stage, balance, threshold in told:
                self._notice(notices, found, r, stage, balance, threshold)
        ids = await emit(conn, commands + notices)
        sent = ids[: len(closures)]  # the commands come first
        await record_closures(conn, [replace(c, message_id=i) for c, i in zip(closures, sent, strict=True)])

    @staticmethod
    def _notice(events: list[tuple[Event, Incoming]], phones: dict[str, str], r: AcceptedReading, stage: str,
                balance: Decimal, threshold: Decimal | None) -> None:
        phone = phones.get(r.meter_id)
        if phone is None:
            log.info("prepaid.notification_skipped", extra={
                "meter_id": r.meter_id, "stage": stage,
                "reason": "no holder's phone (no personal-data keys, or the phone could not be read)"})
            return
        params = {"meter": r.meter_id, "stage": stage, "balance": f"{balance:.2f}",
                  "read_at": r.read_at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")}
        if threshold is not None:
            params["threshold"] = f"{threshold:.2f}"
        data = NotificationRequested(
            notification_id=derived_id("prepaid-" + stage, r.reading_id), kind=NotificationKind.LOW_BALANCE,
            account_id=r.account_id, phone=phone, params=params, safety=stage == "zero")
        events.append((Event("notification.requested", data, subject=r.meter_id), r.cause))
