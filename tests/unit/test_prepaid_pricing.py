"""Pricing the use between two readings for prepaid meters: the domain's worked examples, the same
lines as ``bill_period`` over whole days, time-weighted cuts inside days, and the settings' emits."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.billing import (
    FlatTariff,
    Household,
    HouseholdUplift,
    ResidentialTariff,
    TariffBook,
    TariffCategory,
    TariffNotFound,
    UpliftApproval,
    bill_period,
)
from core.billing.cycles import CycleStart
from core.billing.money import round_money
from core.config import CoreConfig
from core.handlers import build_handlers
from core.prepaid import CycleUse, PrepaidSettings, Pricer
from core.prepaid.pricing import CHINA_TZ

D = Decimal
RES = TariffCategory.RESIDENTIAL
BOOK = TariffBook(versions=(
    ResidentialTariff(version="RES-2025", effective_from=date(2025, 1, 1), thresholds_m3=(D(300), D(600)),
                      prices=(D("3.00"), D("3.60"), D("4.50"))),
    ResidentialTariff(version="RES-2026H2", effective_from=date(2026, 7, 1), thresholds_m3=(D(300), D(600)),
                      prices=(D("3.30"), D("3.96"), D("4.95"))),
    FlatTariff(version="COM-2025", category=TariffCategory.COMMERCIAL, effective_from=date(2025, 1, 1),
               price=D("3.85")),
))


def local(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=CHINA_TZ)


def test_a_use_splits_at_the_cycle_cumulative_as_in_the_domain_example() -> None:
    # Year to date 280 m³, 50 m³ now, tiers 300/600 at 3.00/3.60 → 20 × 3.00 + 30 × 3.60 = 168.00.
    priced = Pricer(BOOK).price(RES, local(date(2026, 5, 1)), local(date(2026, 5, 31)), D("50.000"),
                                CycleUse(date(2026, 1, 1), D("280.000")))
    assert [(ln.tier, ln.volume_m3, ln.unit_price) for ln in priced.lines] == [
        (1, D("20.000"), D("3.00")), (2, D("30.000"), D("3.60"))]
    assert priced.cost == D("168.00")
    assert priced.cycle == CycleUse(date(2026, 1, 1), D("330.000"))
    assert priced.unit_price_now == D("3.60")
    assert priced.detail() == "RES-2025 t1 20.000 m³ × 3.00; RES-2025 t2 30.000 m³ × 3.60"


def test_a_use_across_the_cycle_start_splits_by_time_and_restarts_the_tiers() -> None:
    # 10 Dec–9 Jan (31 days, midnight to midnight), 62 m³ → 44.0 m³ in the old cycle, 18.0 in the new.
    priced = Pricer(BOOK).price(RES, local(date(2025, 12, 10)), local(date(2026, 1, 10)), D("62.000"),
                                CycleUse(date(2025, 1, 1), D("290.000")))
    assert [(ln.tier, ln.volume_m3) for ln in priced.lines] == [(1, D("10.000")), (2, D("34.000")), (1, D("18.000"))]
    assert priced.cycle == CycleUse(date(2026, 1, 1), D("18.000"))
    assert priced.cost == D("10") * D("3.00") + D("34") * D("3.60") + D("18") * D("3.00")


def test_an_hour_of_use_costs_its_volume_at_the_tier_it_falls_in() -> None:
    priced = Pricer(BOOK).price(RES, local(date(2026, 3, 1), 8), local(date(2026, 3, 1), 9), D("0.037"),
                                CycleUse(date(2026, 1, 1), D("610.000")))
    assert [(ln.tier, ln.volume_m3) for ln in priced.lines] == [(3, D("0.037"))]
    assert priced.cost == D("0.16650")  # exact: rounding is the caller's, with the carried residue


def test_a_price_change_inside_the_interval_prorates_by_time() -> None:
    # 30 June 18:00 to 1 July 06:00: 6 hours at the old price, 6 at the new.
    priced = Pricer(BOOK).price(RES, local(date(2026, 6, 30), 18), local(date(2026, 7, 1), 6), D("1.000"),
                                CycleUse(date(2026, 1, 1), D("10.000")))
    assert [(ln.tariff_version, ln.volume_m3, ln.unit_price) for ln in priced.lines] == [
        ("RES-2025", D("0.500"), D("3.00")), ("RES-2026H2", D("0.500"), D("3.30"))]
    assert priced.cycle == CycleUse(date(2026, 1, 1), D("11.000"))


def test_a_use_ending_at_the_cycle_start_leaves_the_new_cycle_empty() -> None:
    priced = Pricer(BOOK).price(RES, local(date(2025, 12, 31), 12), local(date(2026, 1, 1)), D("2.000"),
                                CycleUse(date(2025, 1, 1), D("100.000")))
    assert [(ln.volume_m3, ln.tier) for ln in priced.lines] == [(D("2.000"), 1)]
    assert priced.cycle == CycleUse(date(2026, 1, 1), D("0.000"))


def test_flat_tariffs_ignore_the_cycle() -> None:
    cycle = CycleUse(None, D("0.000"))
    priced = Pricer(BOOK).price(TariffCategory.COMMERCIAL, local(date(2026, 2, 1)), local(date(2026, 2, 2)),
                                D("12.345"), cycle)
    assert [(ln.tier, ln.unit_price) for ln in priced.lines] == [(1, D("3.85"))]
    assert priced.cost == D("12.345") * D("3.85")
    assert priced.cycle == cycle


def test_no_tariff_in_force_and_empty_intervals_are_refused() -> None:
    pricer = Pricer(BOOK)
    with pytest.raises(TariffNotFound):
        pricer.price(RES, local(date(2024, 12, 30)), local(date(2025, 1, 2)), D("1.000"))
    with pytest.raises(TariffNotFound):
        pricer.price(TariffCategory.HEATING, local(date(2026, 1, 5)), local(date(2026, 1, 6)), D("1.000"))
    with pytest.raises(ValueError, match="empty interval"):
        pricer.price(RES, local(date(2026, 1, 5)), local(date(2026, 1, 5)), D("1.000"))


@settings(max_examples=200, deadline=None)
@given(
    start=st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 1)),
    days=st.integers(min_value=1, max_value=400),
    volume=st.integers(min_value=0, max_value=2_000_000).map(lambda n: D(n).scaleb(-3)),
    used=st.integers(min_value=0, max_value=900_000).map(lambda n: D(n).scaleb(-3)),
    cycle_month=st.sampled_from([1, 4, 10]),
)
def test_over_whole_days_it_prices_what_bill_period_bills(start: date, days: int, volume: Decimal, used: Decimal,
                                                           cycle_month: int) -> None:
    cycle_start = CycleStart(month=cycle_month, day=1)
    book = TariffBook(versions=tuple(
        v.model_copy(update={"cycle_start": cycle_start}) if isinstance(v, ResidentialTariff) else v
        for v in BOOK.versions))
    end = start + timedelta(days=days)
    used = D("0.000") if cycle_start.cycle_of(start) == start else used
    bill = bill_period(book, RES, start, end, volume, cumulative_before=used)
    priced = Pricer(book).price(RES, local(start), local(end), volume, CycleUse(cycle_start.cycle_of(start), used))
    assert [(ln.tariff_version, ln.tier, ln.volume_m3, ln.unit_price) for ln in priced.lines] == [
        (ln.tariff_version, ln.tier, ln.volume_m3, ln.unit_price) for ln in bill.lines]
    assert [round_money(ln.cost) for ln in priced.lines] == [ln.amount for ln in bill.lines]
    assert priced.cycle.used_m3 == bill.cumulative_after


def test_settings_say_what_charging_may_emit_and_need_tariffs() -> None:
    assert PrepaidSettings().emits() == ()
    on = PrepaidSettings(enabled=True)
    assert on.emits() == ("valve.command", "notification.requested")
    assert PrepaidSettings(enabled=True, notify=False).emits() == ("valve.command",)
    handlers = build_handlers(CoreConfig(prepaid=on, tariffs=BOOK))
    assert {"valve.command", "notification.requested"} <= set(handlers["record_reading"].emits)
    assert "valve.command" not in build_handlers(CoreConfig())["record_reading"].emits
    with pytest.raises(ValueError, match="no tariff book"):
        build_handlers(CoreConfig(prepaid=on))


# ---- rule 4: the large-household uplift, as on postpaid bills -----------------------------------

UPLIFT = HouseholdUplift(above_residents=4, per_person_m3=D(60))
UPLIFT_BOOK = TariffBook(versions=(
    ResidentialTariff(version="RES-2024", effective_from=date(2024, 1, 1), thresholds_m3=(D(300), D(600)),
                      prices=(D("3.00"), D("3.60"), D("4.50")), uplift=UPLIFT),
))
SIX = Household(residents=6, approval=UpliftApproval(reference="HH-2024-001", valid_from=date(2024, 1, 1),
                                                     valid_until=date(2024, 5, 16)))


def test_an_approved_large_household_gets_the_raised_thresholds() -> None:
    # 280 m³ so far, 50 m³ now; six residents: +2 × 60 m³, thresholds 420/720 → all tier 1: 150.00
    # (without the household 20 × 3.00 + 30 × 3.60 = 168.00).
    pricer, cycle = Pricer(UPLIFT_BOOK), CycleUse(date(2024, 1, 1), D("280.000"))
    start, end = local(date(2024, 4, 1)), local(date(2024, 5, 1))
    assert pricer.price(RES, start, end, D("50.000"), cycle, SIX).cost == D("150.00")
    assert pricer.price(RES, start, end, D("50.000"), cycle).cost == D("168.00")
    assert pricer.price(RES, start, end, D("50.000"), cycle, Household(residents=6)).cost == D("168.00")


def test_the_uplift_stops_with_its_approval_inside_an_interval_as_on_a_bill() -> None:
    # 1 May–1 June (31 days), 62 m³; the approval ends 16 May: 15 days (30.000 m³) at thresholds
    # 420/720 → tier 1, cumulative 310; 16 days (32.000 m³) at 300/600 → tier 2.
    # 30 × 3.00 + 32 × 3.60 = 90.00 + 115.20 = 205.20.
    priced = Pricer(UPLIFT_BOOK).price(RES, local(date(2024, 5, 1)), local(date(2024, 6, 1)), D("62.000"),
                                       CycleUse(date(2024, 1, 1), D("280.000")), SIX)
    assert [(ln.tier, ln.volume_m3) for ln in priced.lines] == [(1, D("30.000")), (2, D("32.000"))]
    assert priced.cost == D("205.20")
    bill = bill_period(UPLIFT_BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D(62), cumulative_before=D(280),
                       household=SIX)
    assert [(ln.tier, ln.volume_m3) for ln in bill.lines] == [(ln.tier, ln.volume_m3) for ln in priced.lines]
    assert bill.total == priced.cost
