"""The rules of the VEE table, one function each. Pure: they read their inputs and return findings.

Rules about the reading alone take the reading; rules about consumption take a ``Check`` that also
holds the baseline and the (rollover-corrected) consumption. The engine (``validation``) decides
which run; the single-subject helpers (``stale_finding``, ``zero_use_finding``,
``actual_read_finding``) are shared with the periodic checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from core.catalogue.messages import AlarmKind, ValveState
from core.readings.model import Finding, MeterContext, PreviousReading, ReadingInput
from core.readings.register import (
    SECONDS_PER_DAY,
    SECONDS_PER_HOUR,
    Consumption,
    days_text,
    fmt,
    hours_text,
    seconds,
    unchanged_since,
)
from core.readings.settings import ValidationSettings
from core.readings.vocabulary import Action, RuleId, Severity, WorkOrderKind


@dataclass(frozen=True, slots=True)
class Check:
    """Everything a consumption rule needs."""

    reading: ReadingInput
    context: MeterContext
    settings: ValidationSettings
    base: PreviousReading
    use: Consumption

    @property
    def interval(self) -> timedelta:
        return self.reading.read_at - self.base.read_at

    @property
    def meter_id(self) -> str:
        return self.reading.meter_id


# ---- the reading alone -------------------------------------------------------------------------


def duplicate(reading: ReadingInput, context: MeterContext) -> Finding | None:
    """Same meter and time as a stored reading of the same kind: the same value is dropped, another
    value is a conflict. An actual read at the time of an estimate is no duplicate: it replaces it."""
    same_time = [p for p in context.previous
                 if p.read_at == reading.read_at and p.is_estimate == reading.is_estimate]
    if not same_time:
        return None
    stored = same_time[0]
    at = reading.read_at.isoformat()
    if stored.volume_m3 == reading.volume_m3:
        return Finding(rule=RuleId.DUPLICATE, severity=Severity.INFO, action=Action.DROP_DUPLICATE,
                       meter_id=reading.meter_id,
                       message=f"meter {reading.meter_id} already has {fmt(stored.volume_m3)} m³ at {at}: "
                               "duplicate dropped")
    return Finding(rule=RuleId.DUPLICATE, severity=Severity.ERROR, action=Action.FLAG_CONFLICT,
                   meter_id=reading.meter_id, suspect=True,
                   message=f"meter {reading.meter_id} already has {fmt(stored.volume_m3)} m³ at {at}; "
                           f"this reading says {fmt(reading.volume_m3)} m³: conflict")


def clock(reading: ReadingInput, now: datetime, settings: ValidationSettings) -> Finding | None:
    """A read time in the future (beyond the tolerance), else one drifting from the receive time."""
    ahead = reading.read_at - now
    if ahead > settings.clock_future_tolerance:
        return _clock_finding(reading, f"read time {reading.read_at.isoformat()} is {_minutes(ahead)} min "
                                       f"in the future (tolerance {_minutes(settings.clock_future_tolerance)} min)")
    if reading.received_at is None:
        return None
    drift = abs(reading.read_at - reading.received_at)
    if drift > settings.clock_max_drift:
        return _clock_finding(reading, f"meter clock differs from the receive time "
                                       f"{reading.received_at.isoformat()} by {_minutes(drift)} min "
                                       f"(limit {_minutes(settings.clock_max_drift)} min)")
    return None


def _clock_finding(reading: ReadingInput, message: str) -> Finding:
    return Finding(rule=RuleId.CLOCK, severity=Severity.ERROR, action=Action.HOLD_BILLING,
                   meter_id=reading.meter_id, suspect=True, message=message)


def _minutes(delta: timedelta) -> str:
    return fmt(seconds(delta) / 60, 1)


def tamper(reading: ReadingInput, settings: ValidationSettings) -> list[Finding]:
    """One inspection order per tamper, magnet or cover-open event reported with the reading."""
    return [
        Finding(rule=RuleId.TAMPER, severity=Severity.WARNING, action=Action.OPEN_WORK_ORDER,
                work_order=WorkOrderKind.INSPECTION, meter_id=reading.meter_id, suspect=True,
                message=f"meter {reading.meter_id} reported a {event.value.replace('_', '-')} event: "
                        "inspection needed")
        for event in sorted(reading.events & settings.inspection_events)
    ]


def silent_link(
    reading: ReadingInput, context: MeterContext, now: datetime, settings: ValidationSettings
) -> Finding | None:
    """A reading that did not come over the meter's own link (a manual read, an estimate) while that
    link has been silent too long: the communication order is still needed."""
    if context.last_contact_at is None or reading.source in settings.iot_sources:
        return None
    return stale_finding(reading.meter_id, context.last_contact_at, now, settings)


def stale_finding(
    meter_id: str, last_contact_at: datetime, now: datetime, settings: ValidationSettings
) -> Finding | None:
    """A communication order when the meter has been silent for more than ``stale_after``."""
    silent = now - last_contact_at
    if silent <= settings.stale_after:
        return None
    return Finding(rule=RuleId.STALE, severity=Severity.WARNING, action=Action.OPEN_WORK_ORDER,
                   work_order=WorkOrderKind.COMMUNICATION, meter_id=meter_id,
                   message=f"meter {meter_id} silent for {hours_text(silent)} h since "
                           f"{last_contact_at.isoformat()} (limit {hours_text(settings.stale_after)} h)")


# ---- the register ------------------------------------------------------------------------------


def register(reading: ReadingInput, base: PreviousReading, use: Consumption, digits: int) -> Finding | None:
    """A rollover (informational: corrected) or a negative consumption (hold billing)."""
    if not use.rolled_over and use.value_m3 >= 0:
        return None
    prev, cur = fmt(base.volume_m3), fmt(reading.volume_m3)
    if use.rolled_over:
        return Finding(rule=RuleId.ROLLOVER, severity=Severity.INFO, action=Action.ACCEPT,
                       meter_id=reading.meter_id,
                       message=f"register rolled over ({digits} digits): {prev} → {cur} m³, "
                               f"consumption {cur} + {fmt(use.register_span, 0)} − {prev} = "
                               f"{fmt(use.value_m3)} m³")
    if use.value_m3 < 0:
        return Finding(rule=RuleId.NEGATIVE, severity=Severity.ERROR, action=Action.HOLD_BILLING,
                       meter_id=reading.meter_id, suspect=True,
                       message=f"register went back from {prev} to {cur} m³ ({fmt(use.value_m3)} m³), "
                               "not a rollover: billing held")
    return None


# ---- consumption -------------------------------------------------------------------------------


def spike(check: Check) -> Finding | None:
    """Consumption above factor × average daily use × days (at least ``spike_min_interval``)."""
    avg = check.context.avg_daily_use_m3
    if avg is None or avg <= 0:
        return None
    factor = check.settings.spike_factor(check.context.category)
    span = max(seconds(check.interval), seconds(check.settings.spike_min_interval))
    if check.use.value_m3 * SECONDS_PER_DAY <= factor * avg * span:
        return None
    limit = factor * avg * span / SECONDS_PER_DAY
    return Finding(rule=RuleId.SPIKE, severity=Severity.ERROR, action=Action.ESTIMATE,
                   meter_id=check.meter_id, suspect=True,
                   message=f"consumption {fmt(check.use.value_m3)} m³ over {days_text(check.interval)} days "
                           f"exceeds {fmt(factor, 1)} × average daily use {fmt(avg)} m³ "
                           f"({check.context.category.value}; limit {fmt(limit)} m³): estimate instead")


def over_capacity(check: Check) -> Finding | None:
    """Consumption above Qmax × hours: more than the meter can pass."""
    qmax = check.context.qmax_m3_per_h
    if qmax is None and check.context.meter_model is not None:
        qmax = check.settings.qmax_by_model.get(check.context.meter_model)
    if qmax is None:
        return None
    if check.use.value_m3 * SECONDS_PER_HOUR <= qmax * seconds(check.interval):
        return None
    model = check.context.meter_model or "meter"
    limit = qmax * seconds(check.interval) / SECONDS_PER_HOUR
    return Finding(rule=RuleId.OVER_CAPACITY, severity=Severity.ERROR, action=Action.HOLD_BILLING,
                   meter_id=check.meter_id, suspect=True,
                   message=f"consumption {fmt(check.use.value_m3)} m³ in {hours_text(check.interval)} h exceeds "
                           f"{model} capacity {fmt(qmax, 1)} m³/h × hours = {fmt(limit)} m³")


def use_while_closed(check: Check) -> list[Finding]:
    """Use above the tolerance with the valve closed (alarm) or on an inactive account (theft check).

    The valve counts as closed when the context says so, or when both the baseline and this reading
    report it closed."""
    tolerance = check.settings.closed_use_tolerance_m3
    if check.use.value_m3 <= tolerance:
        return []
    used = fmt(check.use.value_m3)
    findings = []
    closed = check.context.valve_closed or (
        check.reading.valve is ValveState.CLOSED and check.base.valve is ValveState.CLOSED
    )
    if closed:
        findings.append(Finding(
            rule=RuleId.USE_WHILE_CLOSED, severity=Severity.CRITICAL, action=Action.RAISE_ALARM,
            alarm=AlarmKind.VALVE_FAULT, meter_id=check.meter_id, suspect=True,
            message=f"{used} m³ used while the valve was closed (tolerance {fmt(tolerance)} m³): "
                    "valve fault or theft suspected"))
    if not check.context.account_active:
        findings.append(Finding(
            rule=RuleId.USE_WHILE_CLOSED, severity=Severity.ERROR, action=Action.OPEN_WORK_ORDER,
            work_order=WorkOrderKind.THEFT_INSPECTION, meter_id=check.meter_id, suspect=True,
            message=f"{used} m³ used on an inactive account (tolerance {fmt(tolerance)} m³): theft suspected"))
    return findings


def zero_use(check: Check) -> Finding | None:
    """No use for at least ``zero_use_period`` on an active account with an open valve."""
    if check.use.value_m3 != 0 or not check.context.account_active or check.context.valve_closed:
        return None
    since = unchanged_since(check.context.previous, check.base)
    return zero_use_finding(check.meter_id, since, check.reading.read_at, check.settings)


def zero_use_finding(
    meter_id: str | None,
    since: datetime,
    at: datetime,
    settings: ValidationSettings,
    *,
    account_id: str | None = None,
) -> Finding | None:
    """A vacancy / stuck-meter order when nothing was used from ``since`` to ``at`` for long enough."""
    idle = at - since
    if idle < settings.zero_use_period:
        return None
    who = f"account {account_id}" if account_id else f"meter {meter_id}"
    return Finding(rule=RuleId.ZERO_USE, severity=Severity.WARNING, action=Action.OPEN_WORK_ORDER,
                   work_order=WorkOrderKind.ZERO_USE_CHECK, meter_id=meter_id, account_id=account_id,
                   suspect=True,
                   message=f"{who}: no use for {days_text(idle)} days since {since.isoformat()} on an active "
                           f"account (limit {days_text(settings.zero_use_period)} days): vacancy or stuck meter")


# ---- history -----------------------------------------------------------------------------------


def leak(meter_id: str, context: MeterContext, settings: ValidationSettings) -> Finding | None:
    """Flow above ``leak_min_hourly_m3`` in every hour of the last ``leak_window_hours``, nights
    included. A missing hour breaks the run."""
    window = context.hourly_use_m3[-settings.leak_window_hours:]
    if len(window) < settings.leak_window_hours:
        return None
    flows: list[Decimal] = []
    for hour in window:
        if hour is None or hour <= settings.leak_min_hourly_m3:
            return None
        flows.append(hour)
    return Finding(rule=RuleId.LEAK, severity=Severity.CRITICAL, action=Action.RAISE_ALARM,
                   alarm=AlarmKind.LEAK, meter_id=meter_id,
                   message=f"gas flowed in each of the last {settings.leak_window_hours} hours "
                           f"(lowest {fmt(min(flows))} m³/h, total {fmt(sum(flows, Decimal(0)))} m³): "
                           "leak suspected")


def actual_read_finding(
    meter_id: str | None, consecutive_estimated_bills: int, settings: ValidationSettings
) -> Finding | None:
    """A mandatory actual-read order after ``estimated_bills_limit`` estimated bills in a row."""
    if consecutive_estimated_bills < settings.estimated_bills_limit:
        return None
    return Finding(rule=RuleId.PROLONGED_ESTIMATION, severity=Severity.WARNING, action=Action.OPEN_WORK_ORDER,
                   work_order=WorkOrderKind.ACTUAL_READ, meter_id=meter_id,
                   message=f"{consecutive_estimated_bills} estimated bills in a row "
                           f"(limit {settings.estimated_bills_limit}): actual read required")
