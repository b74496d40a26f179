"""Reading validation (VEE): each rule of the domain table at the edges of its threshold, settings,
disabled rules, several findings at once, estimation, the periodic checks, and properties."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from core.catalogue.messages import AlarmKind, MeterReading, ReadingSource, ValveState
from core.readings import (
    DEFAULT_SETTINGS,
    DEVICE_EVENT_BY_CIM,
    AccountUse,
    Action,
    CustomerCategory,
    DeviceEvent,
    EstimationMethod,
    Finding,
    MeterContext,
    PeriodUse,
    PreviousReading,
    QualityFlag,
    ReadingInput,
    ReadingsSettings,
    RuleId,
    Severity,
    ValidationResult,
    ValidationSettings,
    WorkOrderKind,
    actual_read_required,
    estimate_consumption,
    estimate_exceeds_actual,
    hour_floor,
    hourly_use,
    is_rollover,
    shift_months,
    stale_meters,
    validate_reading,
    zero_use_accounts,
)

D = Decimal
T0 = datetime(2025, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
METER = "GM-1"
SECOND = timedelta(seconds=1)


def reading(volume: str, at: datetime = T0 + DAY, source: ReadingSource = ReadingSource.CTWING,
            **kw: Any) -> ReadingInput:
    return ReadingInput(meter_id=METER, read_at=at, volume_m3=D(volume), source=source, **kw)


def prev(volume: str, at: datetime = T0, source: ReadingSource = ReadingSource.CTWING,
         **kw: Any) -> PreviousReading:
    return PreviousReading(read_at=at, volume_m3=D(volume), source=source, **kw)


def context(*previous: PreviousReading, **kw: Any) -> MeterContext:
    return MeterContext(meter_id=METER, previous=previous or (prev("100.000"),), **kw)


def run(r: ReadingInput, ctx: MeterContext, now: datetime | None = None,
        settings: ValidationSettings = DEFAULT_SETTINGS) -> ValidationResult:
    return validate_reading(r, ctx, now=now or r.read_at + timedelta(minutes=5), settings=settings)


def only(result: ValidationResult, rule: RuleId) -> Finding:
    found = result.by_rule(rule)
    assert len(found) == 1, result.findings
    return found[0]


def clean(result: ValidationResult) -> bool:
    return result.findings == () and result.quality == (QualityFlag.VALID,)


# ---- negative consumption ----------------------------------------------------------------------


def test_negative_consumption_holds_billing() -> None:
    result = run(reading("99.999"), context())
    finding = only(result, RuleId.NEGATIVE)
    assert finding.action is Action.HOLD_BILLING
    assert finding.severity is Severity.ERROR
    assert "100.000" in finding.message
    assert "99.999" in finding.message
    assert result.consumption_m3 == D("-0.001")
    assert result.quality == (QualityFlag.SUSPECT, QualityFlag.HELD)  # "exception; hold billing"
    assert not result.billable


def test_unchanged_register_is_not_negative() -> None:
    result = run(reading("100.000"), context())
    assert clean(result)
    assert result.consumption_m3 == 0


def test_drop_of_exactly_ninety_percent_is_negative_not_rollover() -> None:
    result = run(reading("0.000"), context(prev("900000.000")))
    assert result.rules == {RuleId.NEGATIVE}


# ---- rollover ----------------------------------------------------------------------------------


def test_rollover_is_corrected_and_derived() -> None:
    result = run(reading("0.250"), context(prev("99999.500"), register_digits=5))
    finding = only(result, RuleId.ROLLOVER)
    assert finding.action is Action.ACCEPT
    assert result.consumption_m3 == D("0.750")
    assert result.quality == (QualityFlag.VALID, QualityFlag.DERIVED)
    assert result.billable
    assert "0.250 + 100000 − 99999.500 = 0.750" in finding.message


def test_rollover_just_above_ninety_percent_uses_default_digits() -> None:
    result = run(reading("0.000"), context(prev("900000.001")))
    assert result.rules == {RuleId.ROLLOVER}
    assert result.consumption_m3 == D("99999.999")


def test_rollover_uses_the_settings_digits() -> None:
    eight = ValidationSettings(default_register_digits=8)
    assert run(reading("0.000"), context(prev("900000.001")), settings=eight).rules == {RuleId.NEGATIVE}
    result = run(reading("1.000"), context(prev("99999999.000")), settings=eight)
    assert result.consumption_m3 == D("2.000")


# ---- spike -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "edge", "above"),
    [
        (CustomerCategory.RESIDENTIAL, "110.000", "110.001"),
        (CustomerCategory.COMMERCIAL, "106.000", "106.001"),
    ],
)
def test_spike_at_the_category_factor(category: CustomerCategory, edge: str, above: str) -> None:
    ctx = context(avg_daily_use_m3=D("2.000"), category=category)
    assert clean(run(reading(edge), ctx))
    result = run(reading(above), ctx)
    finding = only(result, RuleId.SPIKE)
    assert finding.action is Action.ESTIMATE
    assert not result.billable
    assert result.quality == (QualityFlag.SUSPECT, QualityFlag.HELD, QualityFlag.ESTIMATE_DUE)
    assert "average daily use 2.000 m³" in finding.message


def test_spike_limit_scales_with_the_interval() -> None:
    ctx = context(avg_daily_use_m3=D("2.000"))
    assert clean(run(reading("120.000", at=T0 + 2 * DAY), ctx))
    assert run(reading("120.001", at=T0 + 2 * DAY), ctx).rules == {RuleId.SPIKE}


def test_short_interval_is_compared_with_a_day_of_use() -> None:
    ctx = context(avg_daily_use_m3=D("2.000"))
    assert clean(run(reading("110.000", at=T0 + HOUR), ctx))
    assert run(reading("110.001", at=T0 + HOUR), ctx).rules == {RuleId.SPIKE}


@pytest.mark.parametrize("avg", [None, D(0)])
def test_no_spike_without_an_average(avg: Decimal | None) -> None:
    assert clean(run(reading("900.000"), context(avg_daily_use_m3=avg)))


# ---- zero use ----------------------------------------------------------------------------------


def test_zero_use_for_thirty_days_opens_an_order() -> None:
    result = run(reading("100.000", at=T0 + 30 * DAY), context())
    finding = only(result, RuleId.ZERO_USE)
    assert finding.action is Action.OPEN_WORK_ORDER
    assert finding.work_order is WorkOrderKind.ZERO_USE_CHECK
    assert "30.00 days" in finding.message
    assert result.billable


def test_zero_use_just_under_thirty_days_is_fine() -> None:
    assert clean(run(reading("100.000", at=T0 + 30 * DAY - SECOND), context()))


def test_zero_use_counts_from_the_start_of_the_unchanged_run() -> None:
    run_of_three = context(prev("100.000", T0), prev("100.000", T0 + 10 * DAY), prev("100.000", T0 + 20 * DAY))
    assert run(reading("100.000", at=T0 + 30 * DAY), run_of_three).rules == {RuleId.ZERO_USE}
    changed = context(prev("99.000", T0), prev("100.000", T0 + 10 * DAY), prev("100.000", T0 + 20 * DAY))
    assert clean(run(reading("100.000", at=T0 + 30 * DAY), changed))


@pytest.mark.parametrize("kw", [{"account_active": False}, {"valve_closed": True}])
def test_zero_use_ignored_when_inactive_or_closed(kw: dict[str, Any]) -> None:
    assert run(reading("100.000", at=T0 + 40 * DAY), context(**kw)).findings == ()


# ---- use while the valve is closed or the account inactive ---------------------------------------


def test_use_through_a_closed_valve_raises_an_alarm() -> None:
    ctx = context(valve_closed=True)
    assert clean(run(reading("100.010"), ctx))
    finding = only(run(reading("100.011"), ctx), RuleId.USE_WHILE_CLOSED)
    assert finding.action is Action.RAISE_ALARM
    assert finding.alarm is AlarmKind.VALVE_FAULT
    assert "0.011 m³" in finding.message


def test_use_on_an_inactive_account_opens_a_theft_inspection() -> None:
    ctx = context(account_active=False)
    assert clean(run(reading("100.010"), ctx))
    finding = only(run(reading("100.011"), ctx), RuleId.USE_WHILE_CLOSED)
    assert finding.work_order is WorkOrderKind.THEFT_INSPECTION


def test_valve_reported_closed_at_both_ends_counts_as_closed() -> None:
    both = context(prev("100.000", valve=ValveState.CLOSED))
    assert run(reading("100.500", valve=ValveState.CLOSED), both).rules == {RuleId.USE_WHILE_CLOSED}
    only_now = context(prev("100.000", valve=ValveState.OPEN))
    assert clean(run(reading("100.500", valve=ValveState.CLOSED), only_now))


# ---- flow above meter capacity -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "hours", "edge", "above"),
    [("G2.5", 1, "104.000", "104.001"), ("G1.6", 2, "105.000", "105.001")],
)
def test_flow_above_qmax(model: str, hours: int, edge: str, above: str) -> None:
    ctx = context(meter_model=model)
    at = T0 + hours * HOUR
    assert clean(run(reading(edge, at=at), ctx))
    finding = only(run(reading(above, at=at), ctx), RuleId.OVER_CAPACITY)
    assert finding.action is Action.HOLD_BILLING
    assert model in finding.message


def test_capacity_from_the_context_or_settings_and_skipped_when_unknown() -> None:
    at = T0 + HOUR
    assert run(reading("101.001", at=at), context(qmax_m3_per_h=D(1))).rules == {RuleId.OVER_CAPACITY}
    assert clean(run(reading("150.000", at=at), context(meter_model="X-9")))
    custom = ValidationSettings(qmax_by_model={"X-9": D("40")})
    assert run(reading("140.001", at=at), context(meter_model="X-9"), settings=custom).rules == {
        RuleId.OVER_CAPACITY
    }


# ---- continuous small flow ---------------------------------------------------------------------


def test_flow_every_hour_for_a_day_raises_a_leak_alarm() -> None:
    result = run(reading("100.100"), context(hourly_use_m3=(D("0.001"),) * 24))
    finding = only(result, RuleId.LEAK)
    assert finding.alarm is AlarmKind.LEAK
    assert finding.severity is Severity.CRITICAL
    assert result.quality == (QualityFlag.VALID,)


@pytest.mark.parametrize(
    "hours",
    [
        (D("0.001"),) * 3 + (D(0),) + (D("0.001"),) * 20,
        (D("0.001"),) * 23,
        (D("0.001"),) * 12 + (None,) + (D("0.001"),) * 11,
    ],
    ids=["a-quiet-night-hour", "only-23-hours", "a-missing-hour"],
)
def test_no_leak_without_24_flowing_hours(hours: tuple[Decimal | None, ...]) -> None:
    assert clean(run(reading("100.100"), context(hourly_use_m3=hours)))


def test_leak_looks_at_the_latest_window_only() -> None:
    hours = (D(0),) + (D("0.002"),) * 24
    assert run(reading("100.100"), context(hourly_use_m3=hours)).rules == {RuleId.LEAK}


def test_leak_minimum_flow_setting() -> None:
    ctx = context(hourly_use_m3=(D("0.005"),) * 24)
    assert clean(run(reading("100.100"), ctx, settings=ValidationSettings(leak_min_hourly_m3=D("0.005"))))


# ---- stale -------------------------------------------------------------------------------------


def test_stale_meters_silent_over_72_hours() -> None:
    now = T0 + 10 * DAY
    findings = stale_meters({"B": now - 72 * HOUR - SECOND, "A": now - 72 * HOUR, "C": now - 100 * HOUR}, now)
    assert [f.meter_id for f in findings] == ["B", "C"]
    assert all(f.work_order is WorkOrderKind.COMMUNICATION for f in findings)
    assert "100.00 h" in findings[1].message


def test_manual_read_of_a_silent_iot_meter_still_needs_the_communication_order() -> None:
    at = T0 + DAY
    silent = context(last_contact_at=at - 72 * HOUR - SECOND)
    manual = reading("101.000", at=at, source=ReadingSource.MANUAL)
    assert only(run(manual, silent, now=at), RuleId.STALE).work_order is WorkOrderKind.COMMUNICATION
    assert clean(run(manual, context(last_contact_at=at - 72 * HOUR), now=at))
    assert clean(run(reading("101.000", at=at), silent, now=at))


# ---- duplicate ---------------------------------------------------------------------------------


def test_same_time_same_value_is_dropped() -> None:
    result = run(reading("100.0", at=T0), context(prev("100.000", T0)))
    finding = only(result, RuleId.DUPLICATE)
    assert finding.action is Action.DROP_DUPLICATE
    assert result.dropped
    assert not result.conflict
    assert result.consumption_m3 is None
    assert len(result.findings) == 1


def test_same_time_other_value_is_a_conflict() -> None:
    result = run(reading("100.001", at=T0, events={DeviceEvent.TAMPER}), context(prev("100.000", T0)))
    assert result.rules == {RuleId.DUPLICATE}
    assert result.conflict
    assert not result.billable
    assert result.quality == (QualityFlag.SUSPECT, QualityFlag.HELD)


def test_same_instant_in_another_timezone_is_a_duplicate() -> None:
    beijing = timezone(timedelta(hours=8))
    assert run(reading("100.000", at=T0.astimezone(beijing)), context()).dropped


def test_actual_read_at_the_time_of_an_estimate_is_no_duplicate() -> None:
    ctx = context(prev("90.000", T0 - DAY), prev("100.000", T0, source=ReadingSource.ESTIMATE))
    result = run(reading("100.000", at=T0), ctx)
    assert not result.dropped
    assert result.consumption_m3 == D("10.000")


# ---- clock -------------------------------------------------------------------------------------


def test_read_time_in_the_future() -> None:
    now = T0 + DAY
    assert clean(run(reading("101.000", at=now + timedelta(minutes=15)), context(), now=now))
    finding = only(run(reading("101.000", at=now + timedelta(minutes=15) + SECOND), context(), now=now),
                   RuleId.CLOCK)
    assert finding.action is Action.HOLD_BILLING
    assert "in the future" in finding.message


@pytest.mark.parametrize("sign", [1, -1])
def test_clock_drift_against_the_receive_time(sign: int) -> None:
    at = T0 + DAY
    ok = reading("101.000", at=at, received_at=at + sign * timedelta(minutes=15))
    assert clean(run(ok, context(), now=at + HOUR))
    bad = reading("101.000", at=at, received_at=at + sign * (timedelta(minutes=15) + SECOND))
    assert "15.0 min" in only(run(bad, context(), now=at + HOUR), RuleId.CLOCK).message


def test_no_drift_check_without_a_receive_time() -> None:
    assert clean(run(reading("101.000", source=ReadingSource.MANUAL), context(), now=T0 + 5 * DAY))


# ---- prolonged estimation ----------------------------------------------------------------------


def test_estimated_reading_after_two_estimated_bills_orders_an_actual_read() -> None:
    estimate = reading("101.000", source=ReadingSource.ESTIMATE)
    result = run(estimate, context(consecutive_estimated_bills=2))
    assert only(result, RuleId.PROLONGED_ESTIMATION).work_order is WorkOrderKind.ACTUAL_READ
    assert QualityFlag.ESTIMATED in result.quality
    assert run(estimate, context(consecutive_estimated_bills=1)).findings == ()


def test_a_billable_actual_read_ends_the_estimates() -> None:
    assert clean(run(reading("101.000"), context(consecutive_estimated_bills=5)))


def test_an_actual_read_that_will_be_estimated_again_orders_an_actual_read() -> None:
    ctx = context(avg_daily_use_m3=D(1), consecutive_estimated_bills=2)
    assert run(reading("106.000"), ctx).rules == {RuleId.SPIKE, RuleId.PROLONGED_ESTIMATION}


def test_actual_read_required_for_the_billing_run() -> None:
    assert actual_read_required(METER, 1) is None
    finding = actual_read_required(METER, 2)
    assert finding is not None
    assert "2 estimated bills" in finding.message
    assert actual_read_required(METER, 3, ValidationSettings(estimated_bills_limit=4)) is None


# ---- tamper / magnet / cover -------------------------------------------------------------------


def test_tamper_events_open_inspection_orders() -> None:
    result = run(reading("101.000", events={DeviceEvent.MAGNETIC, DeviceEvent.COVER_OPEN}), context())
    findings = result.by_rule(RuleId.TAMPER)
    assert {f.work_order for f in findings} == {WorkOrderKind.INSPECTION}
    assert ["cover-open" in findings[0].message, "magnetic" in findings[1].message] == [True, True]
    assert result.quality == (QualityFlag.SUSPECT,)


def test_other_device_events_open_nothing() -> None:
    assert clean(run(reading("101.000", events={DeviceEvent.LOW_BATTERY}), context()))


def test_cim_event_codes() -> None:
    assert DEVICE_EVENT_BY_CIM["0.12.66.242"] is DeviceEvent.MAGNETIC
    assert DEVICE_EVENT_BY_CIM["0.12.43.257"] is DeviceEvent.TAMPER


# ---- estimate above the actual read ------------------------------------------------------------


def test_actual_below_an_earlier_estimate_means_reverse_and_rebill() -> None:
    ctx = context(prev("100.000", T0), prev("130.000", T0 + 15 * DAY, source=ReadingSource.ESTIMATE))
    result = run(reading("120.000", at=T0 + 30 * DAY), ctx)
    finding = only(result, RuleId.ESTIMATE_ABOVE_ACTUAL)
    assert finding.action is Action.REVERSE_AND_REBILL
    assert "10.000 m³ below the estimate 130.000" in finding.message
    assert result.consumption_m3 == D("20.000")
    assert result.rules == {RuleId.ESTIMATE_ABOVE_ACTUAL}


def test_actual_at_or_above_the_estimate_needs_no_rebill() -> None:
    ctx = context(prev("100.000", T0), prev("130.000", T0 + 15 * DAY, source=ReadingSource.ESTIMATE))
    assert clean(run(reading("130.000", at=T0 + 30 * DAY), ctx))
    settled = context(prev("130.000", T0 - DAY, source=ReadingSource.ESTIMATE), prev("100.000", T0))
    assert clean(run(reading("120.000", at=T0 + 30 * DAY), settled))


def test_estimate_exceeds_actual_helper() -> None:
    estimate = prev("50.000", source=ReadingSource.ESTIMATE)
    assert estimate_exceeds_actual(METER, D("50.000"), estimate) is None
    finding = estimate_exceeds_actual(METER, D("49.999"), estimate)
    assert finding is not None
    assert "0.001 m³ below" in finding.message


# ---- settings, disabled rules, several findings --------------------------------------------------


def test_settings_override_changes_outcomes() -> None:
    ctx = context(avg_daily_use_m3=D("2.000"))
    strict = ValidationSettings(spike_factors={CustomerCategory.RESIDENTIAL: D(2)})
    assert clean(run(reading("104.000"), ctx))
    assert run(reading("104.001"), ctx, settings=strict).rules == {RuleId.SPIKE}
    week = ValidationSettings(zero_use_period=timedelta(days=7))
    assert run(reading("100.000", at=T0 + 7 * DAY), context(), settings=week).rules == {RuleId.ZERO_USE}
    tolerant = ValidationSettings(closed_use_tolerance_m3=D("1"))
    assert clean(run(reading("101.000"), context(valve_closed=True), settings=tolerant))
    assert stale_meters({"A": T0}, T0 + 25 * HOUR, ValidationSettings(stale_after=DAY)) != []


def test_settings_are_frozen_and_strict() -> None:
    with pytest.raises(ValidationError):
        DEFAULT_SETTINGS.stale_after = DAY  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ValidationSettings(spike_treshold=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ValidationSettings(rollover_fraction=D("1.5"))
    with pytest.raises(ValidationError):
        ValidationSettings(qmax_by_model={"G4": D(0)})


TRIGGERS: dict[RuleId, Callable[[], tuple[ReadingInput, MeterContext]]] = {
    RuleId.NEGATIVE: lambda: (reading("99.000"), context()),
    RuleId.ROLLOVER: lambda: (reading("1.000"), context(prev("999999.000"))),
    RuleId.SPIKE: lambda: (reading("120.000"), context(avg_daily_use_m3=D(1))),
    RuleId.ZERO_USE: lambda: (reading("100.000", at=T0 + 31 * DAY), context()),
    RuleId.USE_WHILE_CLOSED: lambda: (reading("101.000"), context(valve_closed=True)),
    RuleId.OVER_CAPACITY: lambda: (reading("110.000", at=T0 + HOUR), context(meter_model="G1.6")),
    RuleId.LEAK: lambda: (reading("101.000"), context(hourly_use_m3=(D("0.01"),) * 24)),
    RuleId.STALE: lambda: (reading("101.000", source=ReadingSource.MANUAL), context(last_contact_at=T0 - 9 * DAY)),
    RuleId.DUPLICATE: lambda: (reading("100.000", at=T0), context()),
    RuleId.CLOCK: lambda: (reading("101.000", received_at=T0 + 2 * DAY), context()),
    RuleId.PROLONGED_ESTIMATION: lambda: (
        reading("101.000", source=ReadingSource.ESTIMATE), context(consecutive_estimated_bills=2)
    ),
    RuleId.TAMPER: lambda: (reading("101.000", events={DeviceEvent.TAMPER}), context()),
    RuleId.ESTIMATE_ABOVE_ACTUAL: lambda: (
        reading("101.000"), context(prev("100.000"), prev("102.000", T0 + HOUR, source=ReadingSource.ESTIMATE))
    ),
}


def test_every_rule_has_a_trigger() -> None:
    assert set(TRIGGERS) == set(RuleId)


@pytest.mark.parametrize("rule", list(RuleId))
def test_each_trigger_fires_and_a_disabled_rule_does_not(rule: RuleId) -> None:
    r, ctx = TRIGGERS[rule]()
    assert rule in run(r, ctx).rules
    assert rule not in run(r, ctx, settings=ValidationSettings(disabled_rules=frozenset({rule}))).rules


def test_rollover_disabled_leaves_a_negative_and_negative_disabled_leaves_nothing() -> None:
    r, ctx = TRIGGERS[RuleId.ROLLOVER]()
    no_rollover = run(r, ctx, settings=ValidationSettings(disabled_rules=frozenset({RuleId.ROLLOVER})))
    assert no_rollover.rules == {RuleId.NEGATIVE}
    r, ctx = TRIGGERS[RuleId.NEGATIVE]()
    quiet = run(r, ctx, settings=ValidationSettings(disabled_rules=frozenset({RuleId.NEGATIVE})))
    assert quiet.findings == ()
    assert quiet.consumption_m3 == D("-1.000")


def test_periodic_checks_respect_disabled_rules() -> None:
    off = ValidationSettings(disabled_rules=frozenset(RuleId))
    assert stale_meters({"A": T0}, T0 + 9 * DAY, off) == []
    assert zero_use_accounts([AccountUse(account_id="A1", last_use_at=T0)], T0 + 99 * DAY, off) == []
    assert actual_read_required(METER, 9, off) is None


def test_all_rules_off_gives_a_clean_result() -> None:
    off = ValidationSettings(disabled_rules=frozenset(RuleId))
    for make in TRIGGERS.values():
        r, ctx = make()
        assert run(r, ctx, settings=off).findings == ()


def test_several_findings_at_once() -> None:
    at = T0 + HOUR
    r = reading("109.500", at=at, received_at=at + HOUR, events={DeviceEvent.MAGNETIC},
                valve=ValveState.CLOSED)
    ctx = context(avg_daily_use_m3=D("1.5"), meter_model="G2.5", valve_closed=True, account_active=False,
                  hourly_use_m3=(D("0.1"),) * 24, consecutive_estimated_bills=3)
    result = run(r, ctx, now=at + HOUR)
    assert [f.rule for f in result.findings] == [
        RuleId.CLOCK, RuleId.TAMPER, RuleId.SPIKE, RuleId.OVER_CAPACITY, RuleId.USE_WHILE_CLOSED,
        RuleId.USE_WHILE_CLOSED, RuleId.LEAK, RuleId.PROLONGED_ESTIMATION,
    ]
    assert result.actions == {Action.HOLD_BILLING, Action.OPEN_WORK_ORDER, Action.ESTIMATE, Action.RAISE_ALARM}
    assert result.quality == (QualityFlag.SUSPECT, QualityFlag.HELD)  # clock, capacity: hold, no estimate
    assert result.consumption_m3 == D("9.500")


def test_rollover_and_spike_together() -> None:
    result = run(reading("5.500"), context(prev("999990.000"), avg_daily_use_m3=D(2)))
    assert result.rules == {RuleId.ROLLOVER, RuleId.SPIKE}
    assert result.quality == (QualityFlag.SUSPECT, QualityFlag.DERIVED, QualityFlag.HELD, QualityFlag.ESTIMATE_DUE)
    assert result.consumption_m3 == D("15.500")


# ---- inputs and guards -------------------------------------------------------------------------


def test_first_reading_has_no_consumption() -> None:
    result = run(reading("5.000"), MeterContext(meter_id=METER))
    assert clean(result)
    assert result.consumption_m3 is None
    assert result.baseline is None


def test_out_of_order_reading_uses_the_reading_before_it() -> None:
    ctx = context(prev("100.000", T0), prev("120.000", T0 + 2 * DAY))
    result = run(reading("110.000", at=T0 + DAY), ctx)
    assert clean(result)
    assert result.consumption_m3 == D("10.000")


def test_guards() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_reading(reading("1"), context(), now=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="checked against meter"):
        run(reading("1"), MeterContext(meter_id="OTHER"))
    with pytest.raises(ValidationError):
        ReadingInput(meter_id=METER, read_at=datetime(2025, 1, 1), volume_m3=D(1),
                     source=ReadingSource.DTU)
    with pytest.raises(ValidationError):
        Finding(rule=RuleId.LEAK, severity=Severity.INFO, message="x", action=Action.RAISE_ALARM)


def test_from_message() -> None:
    message = MeterReading(meter_id=METER, read_at=T0, volume_m3=D("12.345"), source=ReadingSource.ONENET,
                           valve=ValveState.OPEN)
    r = ReadingInput.from_message(message, received_at=T0 + SECOND, events=[DeviceEvent.TAMPER])
    assert (r.volume_m3, r.valve, r.events, r.received_at) == (D("12.345"), ValveState.OPEN,
                                                              frozenset({DeviceEvent.TAMPER}), T0 + SECOND)


# ---- periodic zero use -------------------------------------------------------------------------


def test_zero_use_accounts() -> None:
    now = T0 + 60 * DAY
    accounts = [
        AccountUse(account_id="B", meter_id="M-B", last_use_at=now - 30 * DAY),
        AccountUse(account_id="A", last_use_at=now - 45 * DAY),
        AccountUse(account_id="C", last_use_at=now - 30 * DAY + SECOND),
        AccountUse(account_id="D", last_use_at=now - 90 * DAY, active=False),
        AccountUse(account_id="E", last_use_at=now - 90 * DAY, valve_closed=True),
    ]
    findings = zero_use_accounts(accounts, now)
    assert [(f.account_id, f.meter_id) for f in findings] == [("A", None), ("B", "M-B")]
    assert findings[0].message.startswith("account A: no use for 45.00 days")


# ---- estimation --------------------------------------------------------------------------------


def month(year: int, m: int) -> datetime:
    return datetime(year, m, 1, tzinfo=UTC)


def test_estimate_from_last_month_scaled_by_days() -> None:
    history = [PeriodUse(start=month(2025, 2), end=month(2025, 3), consumption_m3=D("28.000"))]
    estimate = estimate_consumption(month(2025, 3), month(2025, 4), history=history, avg_daily_use_m3=D(5))
    assert estimate is not None
    assert (estimate.method, estimate.consumption_m3) == (EstimationMethod.LAST_MONTH, D("31.000"))


def test_estimate_prorates_overlapping_periods() -> None:
    history = [
        PeriodUse(start=datetime(2025, 1, 21, tzinfo=UTC), end=datetime(2025, 2, 10, tzinfo=UTC),
                  consumption_m3=D("20")),
        PeriodUse(start=datetime(2025, 2, 10, tzinfo=UTC), end=datetime(2025, 3, 12, tzinfo=UTC),
                  consumption_m3=D("60")),
    ]
    estimate = estimate_consumption(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 11, tzinfo=UTC),
                                    history=history)
    # Window 1–11 Feb: 9 days at 1 m³/day (1–10 Feb) + 1 day at 2 m³/day (10–11 Feb) = 11 m³ in 10 days.
    assert estimate is not None
    assert estimate.consumption_m3 == D("11.000")


def test_estimate_falls_back_to_last_year_then_average() -> None:
    last_year = [PeriodUse(start=month(2024, 3), end=month(2024, 4), consumption_m3=D("62.000"))]
    estimate = estimate_consumption(month(2025, 3), month(2025, 4), history=last_year, avg_daily_use_m3=D(1))
    assert estimate is not None
    assert estimate.method is EstimationMethod.LAST_YEAR
    assert estimate.consumption_m3 == D("62.000")
    partial = [PeriodUse(start=datetime(2025, 2, 2, tzinfo=UTC), end=month(2025, 3), consumption_m3=D("9"))]
    estimate = estimate_consumption(month(2025, 3), month(2025, 4), history=partial,
                                    avg_daily_use_m3=D("1.5"))
    assert estimate is not None
    assert estimate.method is EstimationMethod.AVERAGE_DAILY
    assert estimate.consumption_m3 == D("46.500")
    assert "1.500 m³ × 31.00 days" in estimate.basis
    assert estimate_consumption(month(2025, 3), month(2025, 4)) is None


def test_estimation_order_is_a_setting() -> None:
    history = [PeriodUse(start=month(2025, 2), end=month(2025, 3), consumption_m3=D("28.000"))]
    average_first = ValidationSettings(estimation_order=(EstimationMethod.AVERAGE_DAILY,
                                                         EstimationMethod.LAST_MONTH))
    estimate = estimate_consumption(month(2025, 3), month(2025, 4), history=history, avg_daily_use_m3=D(2),
                                    settings=average_first)
    assert estimate is not None
    assert estimate.consumption_m3 == D("62.000")
    with pytest.raises(ValueError, match="end after"):
        estimate_consumption(month(2025, 4), month(2025, 3))


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (datetime(2025, 3, 31, tzinfo=UTC), -1, datetime(2025, 2, 28, tzinfo=UTC)),
        (datetime(2024, 2, 29, tzinfo=UTC), -12, datetime(2023, 2, 28, tzinfo=UTC)),
        (datetime(2025, 1, 15, tzinfo=UTC), -1, datetime(2024, 12, 15, tzinfo=UTC)),
    ],
)
def test_shift_months(start: datetime, months: int, expected: datetime) -> None:
    assert shift_months(start, months) == expected


# ---- properties --------------------------------------------------------------------------------

@st.composite
def normal_use(draw: st.DrawFn) -> tuple[Decimal, Decimal, list[tuple[int, Decimal]]]:
    """An average daily use, a start value and steps of (hours, use), use at most 2× the average.
    At most 14 steps of at most 48 h: even all-zero use stays under the 30-day zero-use limit."""
    average = D(draw(st.integers(min_value=100, max_value=5000))).scaleb(-3)
    start = D(draw(st.integers(min_value=0, max_value=900_000_000))).scaleb(-3)
    steps = draw(st.lists(st.tuples(st.integers(min_value=12, max_value=48), st.floats(min_value=0, max_value=2)),
                          min_size=1, max_size=14))
    return average, start, [
        (hours, (average * hours / 24 * D(repr(factor))).quantize(D("0.001"), rounding=ROUND_DOWN))
        for hours, factor in steps
    ]


@hyp_settings(max_examples=150, deadline=None)
@given(normal_use(), st.integers(min_value=0, max_value=600), st.integers(min_value=0, max_value=5))
def test_increasing_readings_with_normal_use_are_valid(
    case: tuple[Decimal, Decimal, list[tuple[int, Decimal]]], delay_s: int, estimated_bills: int
) -> None:
    average, volume, steps = case
    at = T0
    history = [PreviousReading(read_at=at, volume_m3=volume, source=ReadingSource.CTWING)]
    hourly = (D("0.050"),) * 3 + (D(0),) + (D("0.050"),) * 20
    for hours, use in steps:
        at += hours * HOUR
        volume += use
        received = at + timedelta(seconds=delay_s)
        r = ReadingInput(meter_id=METER, read_at=at, volume_m3=volume, source=ReadingSource.CTWING,
                         received_at=received, valve=ValveState.OPEN)
        ctx = MeterContext(meter_id=METER, previous=tuple(history), avg_daily_use_m3=average,
                           meter_model="G1.6", hourly_use_m3=hourly, last_contact_at=history[-1].read_at,
                           consecutive_estimated_bills=estimated_bills)
        result = validate_reading(r, ctx, now=received + SECOND)
        assert clean(result), result.findings
        assert result.consumption_m3 == use
        history.append(PreviousReading(read_at=at, volume_m3=volume, source=ReadingSource.CTWING))


@st.composite
def rollovers(draw: st.DrawFn) -> tuple[int, Decimal, Decimal, Decimal]:
    """Register digits, previous value, current value and the true use across the wrap."""
    digits = draw(st.integers(min_value=1, max_value=10))
    span_k = 10**digits * 1000
    use_k = draw(st.integers(min_value=1, max_value=span_k // 10 - 1))
    current_k = draw(st.integers(min_value=0, max_value=use_k - 1))
    previous_k = span_k - use_k + current_k
    return digits, D(previous_k).scaleb(-3), D(current_k).scaleb(-3), D(use_k).scaleb(-3)


@hyp_settings(max_examples=300, deadline=None)
@given(rollovers())
def test_rollover_correction_is_exact(case: tuple[int, Decimal, Decimal, Decimal]) -> None:
    digits, previous, current, use = case
    assert is_rollover(previous, current, digits, D("0.9"))
    ctx = MeterContext(meter_id=METER, previous=(PreviousReading(read_at=T0, volume_m3=previous),),
                       register_digits=digits)
    result = run(ReadingInput(meter_id=METER, read_at=T0 + DAY, volume_m3=current,
                              source=ReadingSource.DTU), ctx)
    assert result.consumption_m3 == use
    assert result.consumption_m3 == current + D(10) ** digits - previous
    assert result.rules == {RuleId.ROLLOVER}
    assert result.quality == (QualityFlag.VALID, QualityFlag.DERIVED)


# --- hourly use (the leak rule's input) ----------------------------------------------------------

H0 = datetime(2025, 3, 1, 9, tzinfo=UTC)


def test_hourly_use_of_readings_on_the_hour_is_each_interval() -> None:
    points = [(H0 + n * HOUR, D(10) + D("0.1") * n * n) for n in range(4)]
    assert hourly_use(points, end=H0 + 3 * HOUR, hours=3, max_gap=HOUR) == (D("0.1"), D("0.3"), D("0.5"))


def test_hourly_use_spreads_an_interval_over_the_hours_it_spans() -> None:
    half = HOUR / 2
    points = [(H0 + half, D(0)), (H0 + HOUR + half, D(1)), (H0 + 2 * HOUR + half, D(4))]
    # 09:30-10:30 used 1, 10:30-11:30 used 3: the hour 10-11 got half of each; 9-10 and 11-12 are
    # only half covered, so unknown.
    assert hourly_use(points, end=H0 + 3 * HOUR, hours=3, max_gap=HOUR) == (None, D(2), None)
    quarter = [(H0 + n * HOUR / 4, D(n % 2)) for n in range(5)]  # 1 then 0 back: the register went back
    assert hourly_use(quarter, end=H0 + HOUR, hours=1, max_gap=HOUR) == (None,)


def test_hourly_use_hours_of_a_long_interval_are_unknown_unless_nothing_was_used() -> None:
    used = [(H0, D(1)), (H0 + 3 * HOUR, D(2)), (H0 + 4 * HOUR, D(3))]
    assert hourly_use(used, end=H0 + 4 * HOUR, hours=4, max_gap=HOUR) == (None, None, None, D(1))
    assert hourly_use(used, end=H0 + 4 * HOUR, hours=4, max_gap=3 * HOUR) == (D(1) / 3, D(1) / 3, D(1) / 3, D(1))
    idle = [(H0, D(1)), (H0 + 3 * HOUR, D(1)), (H0 + 4 * HOUR, D(3))]
    assert hourly_use(idle, end=H0 + 4 * HOUR, hours=4, max_gap=HOUR) == (D(0), D(0), D(0), D(2))
    assert hourly_use(idle, end=H0 + 6 * HOUR, hours=6, max_gap=HOUR)[4:] == (None, None)  # no data yet


def test_hourly_use_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="on the hour"):
        hourly_use([], end=H0 + SECOND, hours=1, max_gap=HOUR)
    with pytest.raises(ValueError, match="time order"):
        hourly_use([(H0 + HOUR, D(1)), (H0, D(2))], end=H0 + 2 * HOUR, hours=2, max_gap=HOUR)
    assert hour_floor(datetime(2025, 3, 1, 17, 59, tzinfo=timezone(timedelta(hours=8)))) == H0


@hyp_settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=1, max_value=3600), st.integers(min_value=0, max_value=500)),
                min_size=1, max_size=40))
def test_hourly_use_adds_up_to_the_register_difference(steps: list[tuple[int, int]]) -> None:
    """Readings from one hour boundary to another, never more than an hour apart: every hour is
    known, none is negative, and they add up to what the register moved."""
    at, volume = H0, D(100)
    points = [(at, volume)]
    for gap_s, litres in steps:
        at += timedelta(seconds=gap_s)
        volume += D(litres).scaleb(-3)
        points.append((at, volume))
    end = hour_floor(at) + (HOUR if at != hour_floor(at) else timedelta(0))
    if end != at:
        points.append((end, volume + D("0.001")))
    hours = (end - H0) // HOUR
    result = hourly_use(points, end=end, hours=hours, max_gap=HOUR)
    assert all(h is not None and h >= 0 for h in result)
    assert abs(sum(h for h in result if h is not None) - (points[-1][1] - points[0][1])) < D("1e-20")


def test_the_leak_rule_reads_hourly_use_made_from_readings() -> None:
    flowing = [(H0 + n * HOUR, D(100) + D("0.015") * n) for n in range(25)]
    hours = hourly_use(flowing, end=H0 + 24 * HOUR, hours=24, max_gap=HOUR)
    r = reading(str(flowing[-1][1]), at=flowing[-1][0])
    ctx = MeterContext(meter_id=METER, previous=(prev(str(flowing[-2][1]), at=flowing[-2][0]),), hourly_use_m3=hours)
    assert only(run(r, ctx), RuleId.LEAK).alarm is AlarmKind.LEAK
    night = [(t, v - (D("0.015") if n >= 5 else 0)) for n, (t, v) in enumerate(flowing)]  # 04:00-05:00 idle
    hours = hourly_use(night, end=H0 + 24 * HOUR, hours=24, max_gap=HOUR)
    assert hours[4] == 0
    assert run(r, ctx.model_copy(update={"hourly_use_m3": hours})).by_rule(RuleId.LEAK) == ()


# --- what record_reading does with findings ------------------------------------------------------


def test_readings_settings_say_what_record_reading_may_emit() -> None:
    orders = "work_order.requested"
    assert ReadingsSettings().emits() == ("reading.flagged", "alarm.raised", "notification.requested")
    assert ReadingsSettings(flag_events=False, raise_alarms=False).emits() == ("notification.requested",)
    assert ReadingsSettings(notify=frozenset()).emits() == ("reading.flagged", "alarm.raised")
    both_off = ValidationSettings(disabled_rules=frozenset({RuleId.LEAK, RuleId.USE_WHILE_CLOSED, RuleId.SPIKE}))
    assert ReadingsSettings(rules=both_off).emits() == ("reading.flagged",)
    assert ReadingsSettings(rules=both_off, notify=frozenset({RuleId.ZERO_USE}), request_work_orders=True).emits() == (
        "reading.flagged", "notification.requested", orders)
    no_orders = ValidationSettings(disabled_rules=frozenset({RuleId.TAMPER, RuleId.ZERO_USE, RuleId.USE_WHILE_CLOSED,
                                                             RuleId.STALE, RuleId.PROLONGED_ESTIMATION}))
    assert orders not in ReadingsSettings(rules=no_orders, request_work_orders=True).emits()
    with pytest.raises(ValidationError, match="zero_use_period"):
        ReadingsSettings(history_window=timedelta(days=29))
    assert ReadingsSettings(history_window=timedelta(days=10),
                            rules=ValidationSettings(zero_use_period=timedelta(days=10))).history_window.days == 10
