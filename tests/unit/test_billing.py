"""The tariff and billing engine: the tiered-pricing rules of domain.md, with their worked examples.

Periods are half-open ``[start, end)`` throughout: "10 Dec–9 Jan" is ``start=12-10, end=01-10``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from core.billing import (
    Bill,
    CycleStart,
    FlatTariff,
    Household,
    HouseholdUplift,
    IntervalVolume,
    ResidentialTariff,
    TariffBook,
    TariffCategory,
    TariffNotFound,
    UpliftApproval,
    allocate,
    bill_period,
    vat_split,
)
from core.billing.money import round_half_up

D = Decimal
RES = TariffCategory.RESIDENTIAL


def residential(
    version: str = "RES-2020",
    effective_from: date = date(2020, 1, 1),
    thresholds: tuple[str, ...] = ("300", "600"),
    prices: tuple[str, ...] = ("3.00", "3.60", "4.50"),
    **extra: object,
) -> ResidentialTariff:
    return ResidentialTariff.model_validate(
        {
            "version": version,
            "effective_from": effective_from,
            "thresholds_m3": [D(t) for t in thresholds],
            "prices": [D(p) for p in prices],
            **extra,
        }
    )


BOOK = TariffBook(versions=(residential(),))


def tier_volumes(bill: Bill) -> dict[tuple[date | None, int], Decimal]:
    volumes: dict[tuple[date | None, int], Decimal] = defaultdict(lambda: D("0.000"))
    for line in bill.lines:
        volumes[(line.cycle_start, line.tier)] += line.volume_m3
    return dict(volumes)


def summary(bill: Bill) -> list[tuple[date | None, int, Decimal, Decimal, Decimal]]:
    return [(line.cycle_start, line.tier, line.volume_m3, line.unit_price, line.amount) for line in bill.lines]


# --- Rule 1: an annual cycle on a configurable date; the cumulative resets at the cycle start ---------------


def test_rule1_cumulative_resets_at_the_cycle_start_when_periods_chain() -> None:
    december = bill_period(BOOK, RES, date(2024, 12, 1), date(2025, 1, 1), D(20), cumulative_before=D(590))
    assert summary(december) == [
        (date(2024, 1, 1), 2, D("10.000"), D("3.60"), D("36.00")),
        (date(2024, 1, 1), 3, D("10.000"), D("4.50"), D("45.00")),
    ]
    assert december.cumulative_after == D(0)  # 1 January starts the next cycle

    january = bill_period(
        BOOK, RES, date(2025, 1, 1), date(2025, 2, 1), D(20), cumulative_before=december.cumulative_after
    )
    assert summary(january) == [(date(2025, 1, 1), 1, D("20.000"), D("3.00"), D("60.00"))]
    assert january.cumulative_after == D(20)


def test_rule1_the_cycle_start_is_configurable() -> None:
    book = TariffBook(versions=(residential(cycle_start=CycleStart(month=4, day=1)),))
    # [15 Mar, 15 Apr): 17 days in the cycle that began 1 Apr 2024, 14 days in the new one.
    bill = bill_period(book, RES, date(2025, 3, 15), date(2025, 4, 15), D(31), cumulative_before=D(599))
    assert summary(bill) == [
        (date(2024, 4, 1), 2, D("1.000"), D("3.60"), D("3.60")),
        (date(2024, 4, 1), 3, D("16.000"), D("4.50"), D("72.00")),
        (date(2025, 4, 1), 1, D("14.000"), D("3.00"), D("42.00")),
    ]
    assert bill.cumulative_after == D(14)


def test_rule1_a_period_starting_the_cycle_refuses_a_carried_cumulative() -> None:
    with pytest.raises(ValueError, match="resets to 0"):
        bill_period(BOOK, RES, date(2025, 1, 1), date(2025, 2, 1), D(20), cumulative_before=D(590))


def test_rule1_cycle_start_on_29_february_is_refused() -> None:
    with pytest.raises(ValidationError, match="cannot start"):
        CycleStart(month=2, day=29)


# --- Rule 2: a period's volume splits at the cumulative thresholds ---------------------------------------------


def test_rule2_worked_example_280_plus_50_is_168_yuan() -> None:
    """Tiers 300/600 at 3.00/3.60/4.50: year-to-date 280 m³, 50 m³ this period → 20 × 3.00 + 30 × 3.60 = 168.00."""
    bill = bill_period(BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D(50), cumulative_before=D(280))
    assert summary(bill) == [
        (date(2024, 1, 1), 1, D("20.000"), D("3.00"), D("60.00")),
        (date(2024, 1, 1), 2, D("30.000"), D("3.60"), D("108.00")),
    ]
    assert bill.total == D("168.00")
    assert str(bill.total) == "168.00"
    assert bill.cumulative_after == D(330)
    assert {line.tariff_version for line in bill.lines} == {"RES-2020"}


def test_rule2_hangzhou_example_tariff_over_a_whole_year() -> None:
    """0–480 at 2.40, 481–960 at 2.88, above 960 at 3.60 yuan/m³."""
    book = TariffBook(versions=(residential(thresholds=("480", "960"), prices=("2.40", "2.88", "3.60")),))
    bill = bill_period(book, RES, date(2024, 1, 1), date(2025, 1, 1), D(1000))
    assert [(line.tier, line.volume_m3, line.amount) for line in bill.lines] == [
        (1, D("480.000"), D("1152.00")),
        (2, D("480.000"), D("1382.40")),
        (3, D("40.000"), D("144.00")),
    ]
    assert bill.total == D("2678.40")


def test_rule2_the_threshold_itself_belongs_to_the_lower_tier() -> None:
    to_300 = bill_period(BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D(20), cumulative_before=D(280))
    assert [line.tier for line in to_300.lines] == [1]
    just_past = bill_period(BOOK, RES, date(2024, 6, 1), date(2024, 7, 1), D("0.001"), cumulative_before=D(300))
    assert [line.tier for line in just_past.lines] == [2]


# --- Rule 3: a period crossing the cycle start splits by days (or interval data); so does a price change -----


def test_rule3_worked_example_10_dec_to_9_jan_62_m3_is_44_old_and_18_new() -> None:
    """10 Dec–9 Jan (31 days), 62 m³ → 44.0 m³ in the old cycle, 18.0 m³ in the new (cycle starting 1 Jan)."""
    start, end = date(2024, 12, 10), date(2025, 1, 10)  # "9 Jan" inclusive is end=10 Jan exclusive
    assert (end - start).days == 31
    bill = bill_period(BOOK, RES, start, end, D(62), cumulative_before=D(280))
    volumes = tier_volumes(bill)
    assert sum(v for (cycle, _), v in volumes.items() if cycle == date(2024, 1, 1)) == D("44.0")
    assert sum(v for (cycle, _), v in volumes.items() if cycle == date(2025, 1, 1)) == D("18.0")
    # The old-cycle part continues the old cumulative (280 → 324); the new part starts from 0.
    assert summary(bill) == [
        (date(2024, 1, 1), 1, D("20.000"), D("3.00"), D("60.00")),
        (date(2024, 1, 1), 2, D("24.000"), D("3.60"), D("86.40")),
        (date(2025, 1, 1), 1, D("18.000"), D("3.00"), D("54.00")),
    ]
    assert bill.total == D("200.40")
    assert bill.cumulative_after == D(18)
    assert [(line.start, line.end) for line in bill.lines] == [
        (date(2024, 12, 10), date(2025, 1, 1)),
        (date(2024, 12, 10), date(2025, 1, 1)),
        (date(2025, 1, 1), date(2025, 1, 10)),
    ]


def test_rule3_the_cycle_split_can_follow_interval_data() -> None:
    start, end = date(2024, 12, 10), date(2025, 1, 10)
    intervals = [
        IntervalVolume(start=start, end=date(2024, 12, 20), volume_m3=D("10.5")),
        IntervalVolume(start=date(2024, 12, 20), end=date(2025, 1, 1), volume_m3=D("21.5")),
        IntervalVolume(start=date(2025, 1, 1), end=end, volume_m3=D(30)),
    ]
    bill = bill_period(BOOK, RES, start, end, D(62), cumulative_before=D(0), intervals=intervals)
    volumes = tier_volumes(bill)
    assert volumes == {(date(2024, 1, 1), 1): D("32.000"), (date(2025, 1, 1), 1): D("30.000")}


def test_rule3_an_interval_straddling_a_cut_is_shared_by_days_and_intervals_are_weights() -> None:
    start, end = date(2024, 12, 22), date(2025, 1, 11)
    # One 20-day interval straddling 1 Jan (10 days each side), then nothing measured; the register says 40 m³
    # while the intervals sum to 20: the intervals only shape the split, the register volume is billed.
    intervals = [
        IntervalVolume(start=start, end=date(2025, 1, 11), volume_m3=D(20)),
    ]
    bill = bill_period(BOOK, RES, start, end, D(40), intervals=intervals, cumulative_before=D(10))
    assert tier_volumes(bill) == {(date(2024, 1, 1), 1): D("20.000"), (date(2025, 1, 1), 1): D("20.000")}


@pytest.mark.parametrize(
    ("intervals", "message"),
    [
        ([], "empty"),
        ([IntervalVolume(start=date(2024, 12, 11), end=date(2025, 1, 10), volume_m3=D(1))], "not the period"),
        (
            [
                IntervalVolume(start=date(2024, 12, 10), end=date(2024, 12, 20), volume_m3=D(1)),
                IntervalVolume(start=date(2024, 12, 21), end=date(2025, 1, 10), volume_m3=D(1)),
            ],
            "gap or an overlap",
        ),
        ([IntervalVolume(start=date(2024, 12, 10), end=date(2025, 1, 10), volume_m3=D(0))], "zero weight"),
    ],
)
def test_rule3_inconsistent_interval_data_is_refused(intervals: list[IntervalVolume], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bill_period(BOOK, RES, date(2024, 12, 10), date(2025, 1, 10), D(62), intervals=intervals)


def test_rule3_a_price_change_inside_a_period_prorates_by_days_and_keeps_the_cumulative() -> None:
    book = TariffBook(
        versions=(
            residential(),
            residential(version="RES-2024-06", effective_from=date(2024, 6, 16), prices=("3.20", "3.84", "4.80")),
        )
    )
    assert book.changes(RES, date(2024, 6, 1), date(2024, 7, 1)) == (book.versions[1],)
    # 30 days, 15 under each version; the cumulative (290) carries across the change within the cycle.
    bill = bill_period(book, RES, date(2024, 6, 1), date(2024, 7, 1), D(30), cumulative_before=D(290))
    assert [(line.tariff_version, line.tier, line.volume_m3, line.unit_price, line.amount) for line in bill.lines] == [
        ("RES-2020", 1, D("10.000"), D("3.00"), D("30.00")),
        ("RES-2020", 2, D("5.000"), D("3.60"), D("18.00")),
        ("RES-2024-06", 2, D("15.000"), D("3.84"), D("57.60")),
    ]
    assert bill.total == D("105.60")
    assert bill.cumulative_after == D(320)


def test_rule3_a_price_change_can_prorate_by_interval_data() -> None:
    book = TariffBook(
        versions=(
            residential(),
            residential(version="RES-2024-06", effective_from=date(2024, 6, 16), prices=("3.20", "3.84", "4.80")),
        )
    )
    daily = [
        IntervalVolume(
            start=date(2024, 6, 1) + timedelta(days=i), end=date(2024, 6, 2) + timedelta(days=i), volume_m3=v
        )
        for i, v in enumerate([D("0.5")] * 15 + [D("1.5")] * 15)
    ]
    bill = bill_period(book, RES, date(2024, 6, 1), date(2024, 7, 1), D(30), intervals=daily)
    assert [(line.tariff_version, line.volume_m3, line.amount) for line in bill.lines] == [
        ("RES-2020", D("7.500"), D("22.50")),
        ("RES-2024-06", D("22.500"), D("72.00")),
    ]


# --- Rule 4: larger households get higher thresholds, with an approval and a validity period -----------------

UPLIFT_BOOK = TariffBook(versions=(residential(uplift=HouseholdUplift(above_residents=4, per_person_m3=D(60))),))
APPROVED_2024 = UpliftApproval(reference="HH-2024-001", valid_from=date(2024, 1, 1), valid_until=date(2025, 1, 1))


def test_rule4_household_uplift_raises_every_threshold() -> None:
    six = Household(residents=6, approval=APPROVED_2024)  # +2 × 60 m³: thresholds 420/720
    bill = bill_period(
        UPLIFT_BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D(50), cumulative_before=D(280), household=six
    )
    assert summary(bill) == [(date(2024, 1, 1), 1, D("50.000"), D("3.00"), D("150.00"))]
    high = bill_period(
        UPLIFT_BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D(400), cumulative_before=D(280), household=six
    )
    assert [(line.tier, line.volume_m3) for line in high.lines] == [(1, D("140.000")), (2, D("260.000"))]


def test_rule4_upper_threshold_is_raised_too() -> None:
    six = Household(residents=6, approval=APPROVED_2024)
    bill = bill_period(
        UPLIFT_BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D(500), cumulative_before=D(280), household=six
    )
    assert [(line.tier, line.volume_m3) for line in bill.lines] == [
        (1, D("140.000")),  # up to 420
        (2, D("300.000")),  # 420 → 720
        (3, D("60.000")),
    ]


@pytest.mark.parametrize(
    "household",
    [
        None,
        Household(residents=6),  # no approval
        Household(residents=4, approval=APPROVED_2024),  # not above 4 residents
        Household(
            residents=6,
            approval=UpliftApproval(reference="HH-2023", valid_from=date(2023, 1, 1), valid_until=date(2024, 1, 1)),
        ),  # expired
    ],
)
def test_rule4_no_uplift_without_a_valid_approval_above_the_base_size(household: Household | None) -> None:
    bill = bill_period(
        UPLIFT_BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D(50), cumulative_before=D(280), household=household
    )
    assert bill.total == D("168.00")


def test_rule4_an_approval_starting_inside_the_period_cuts_it() -> None:
    six = Household(residents=6, approval=UpliftApproval(reference="HH-7", valid_from=date(2024, 5, 16)))
    # [1 May, 31 May): 15 days before the approval, 15 after; 30 m³ each.
    bill = bill_period(
        UPLIFT_BOOK, RES, date(2024, 5, 1), date(2024, 5, 31), D(60), cumulative_before=D(290), household=six
    )
    assert [(line.start, line.tier, line.volume_m3) for line in bill.lines] == [
        (date(2024, 5, 1), 1, D("10.000")),
        (date(2024, 5, 1), 2, D("20.000")),
        (date(2024, 5, 16), 1, D("30.000")),  # cumulative 320 < 420: back in tier 1 once approved
    ]


def test_rule4_an_approval_must_end_after_it_starts() -> None:
    with pytest.raises(ValidationError, match="valid_until"):
        UpliftApproval(reference="X", valid_from=date(2024, 1, 1), valid_until=date(2024, 1, 1))


# --- Rule 5: non-residential users pay a flat price per category ---------------------------------------------

FLAT_BOOK = TariffBook(
    versions=(
        residential(),
        FlatTariff(
            category=TariffCategory.INDUSTRIAL, version="IND-1", effective_from=date(2020, 1, 1), price=D("3.20")
        ),
        FlatTariff(
            category=TariffCategory.COMMERCIAL, version="COM-1", effective_from=date(2020, 1, 1), price=D("3.85")
        ),
        FlatTariff(category=TariffCategory.HEATING, version="HEAT-1", effective_from=date(2020, 1, 1), price=D("2.95")),
        FlatTariff(
            category=TariffCategory.HEATING, version="HEAT-2", effective_from=date(2024, 11, 16), price=D("3.10")
        ),
    )
)


@pytest.mark.parametrize(
    ("category", "price", "amount"),
    [
        (TariffCategory.INDUSTRIAL, D("3.20"), D("3200.00")),
        (TariffCategory.COMMERCIAL, D("3.85"), D("3850.00")),
    ],
)
def test_rule5_non_residential_pays_a_flat_price_whatever_the_cumulative(
    category: TariffCategory, price: Decimal, amount: Decimal
) -> None:
    bill = bill_period(FLAT_BOOK, category, date(2024, 12, 10), date(2025, 1, 10), D(1000), cumulative_before=D(99999))
    assert [(line.tier, line.volume_m3, line.unit_price, line.amount, line.cycle_start) for line in bill.lines] == [
        (1, D("1000.000"), price, amount, None)
    ]
    assert bill.total == amount
    assert bill.cumulative_after is None


def test_rule5_a_flat_price_change_prorates_by_days() -> None:
    bill = bill_period(FLAT_BOOK, TariffCategory.HEATING, date(2024, 11, 1), date(2024, 12, 1), D(300))
    assert [(line.tariff_version, line.volume_m3, line.amount) for line in bill.lines] == [
        ("HEAT-1", D("150.000"), D("442.50")),
        ("HEAT-2", D("150.000"), D("465.00")),
    ]
    assert bill.total == D("907.50")


# --- Rule 6: Decimal arithmetic, half-up to 0.01 yuan per line -------------------------------------------------


def test_rule6_each_line_rounds_half_up_on_its_own_and_the_total_is_their_sum() -> None:
    book = TariffBook(versions=(residential(thresholds=("0.5",), prices=("3.01", "3.01")),))
    bill = bill_period(book, RES, date(2024, 5, 1), date(2024, 6, 1), D("1.000"))
    assert [line.amount for line in bill.lines] == [D("1.51"), D("1.51")]  # 1.505 each, half-up (not half-even)
    assert bill.total == D("3.02")  # the sum of the lines, not round(1.000 × 3.01) = 3.01


def test_rule6_amounts_are_decimal_with_two_places_and_tiny_volumes_round_to_zero() -> None:
    bill = bill_period(BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D("0.001"))
    assert bill.lines[0].amount == D("0.00")
    assert str(bill.total) == "0.00"
    assert all(isinstance(line.amount, Decimal) and line.amount.as_tuple().exponent == -2 for line in bill.lines)


def test_rule6_the_result_does_not_depend_on_the_callers_decimal_context() -> None:
    expected = bill_period(BOOK, RES, date(2024, 12, 10), date(2025, 1, 10), D("62.345"), cumulative_before=D("280.5"))
    with localcontext(prec=3, rounding=ROUND_HALF_EVEN):
        again = bill_period(BOOK, RES, date(2024, 12, 10), date(2025, 1, 10), D("62.345"), cumulative_before=D("280.5"))
    assert again == expected


# --- VAT ------------------------------------------------------------------------------------------------------


def test_vat_is_taken_out_of_the_vat_inclusive_total() -> None:
    bill = bill_period(BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D(50), cumulative_before=D(280))
    assert [(v.rate, v.gross, v.net, v.tax) for v in bill.vat] == [(D("0.09"), D("168.00"), D("154.13"), D("13.87"))]
    assert (bill.net_total, bill.tax_total) == (D("154.13"), D("13.87"))
    assert bill.net_total + bill.tax_total == bill.total


def test_vat_is_split_per_rate_when_the_rate_changes_inside_the_period() -> None:
    book = TariffBook(
        versions=(
            residential(version="RES-2018", effective_from=date(2018, 1, 1), vat_rate=D("0.10")),
            residential(version="RES-2019-04", effective_from=date(2019, 4, 1), vat_rate=D("0.09")),
        )
    )
    bill = bill_period(book, RES, date(2019, 3, 17), date(2019, 4, 16), D(30))  # 15 days each side
    assert [(v.rate, v.gross, v.tax, v.net) for v in bill.vat] == [
        (D("0.09"), D("45.00"), D("3.72"), D("41.28")),
        (D("0.10"), D("45.00"), D("4.09"), D("40.91")),
    ]
    assert bill.tax_total == D("7.81")


def test_vat_split_rounds_half_up() -> None:
    assert vat_split(D("0.11"), D("0.10")).tax == D("0.01")  # 0.01 exactly
    assert vat_split(D("1.09"), D("0.09")).tax == D("0.09")
    assert vat_split(D("0.00"), D("0.09")).tax == D("0.00")


# --- Edges: zero, negative, precision, empty periods, missing tariffs ---------------------------------------


def test_zero_volume_bills_no_lines_and_zero_total() -> None:
    bill = bill_period(BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D(0), cumulative_before=D(280))
    assert bill.lines == ()
    assert bill.vat == ()
    assert str(bill.total) == "0.00"
    assert bill.cumulative_after == D(280)


def test_negative_volume_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match=r"volume must not be negative, got -1 m³"):
        bill_period(BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D(-1))
    with pytest.raises(ValueError, match="cumulative_before must not be negative"):
        bill_period(BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D(1), cumulative_before=D(-1))


def test_volumes_with_more_than_three_decimals_are_refused_not_rounded() -> None:
    with pytest.raises(ValueError, match="more than 3 decimal places"):
        bill_period(BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D("1.0005"))
    # Trailing zeros are not precision: 1.2300 is 1.230.
    assert bill_period(BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D("1.2300")).volume_m3 == D("1.230")


@pytest.mark.parametrize("volume", [D("NaN"), D("Infinity")])
def test_non_finite_volumes_are_refused(volume: Decimal) -> None:
    with pytest.raises(ValueError, match="finite"):
        bill_period(BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), volume)


def test_float_volumes_are_refused() -> None:
    with pytest.raises(TypeError, match="Decimal"):
        bill_period(BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), 1.5)  # type: ignore[arg-type]


def test_an_empty_period_is_refused() -> None:
    with pytest.raises(ValueError, match="end must be after start"):
        bill_period(BOOK, RES, date(2024, 5, 1), date(2024, 5, 1), D(1))


def test_no_tariff_in_force_raises_tariff_not_found() -> None:
    with pytest.raises(TariffNotFound, match="no residential tariff is in force on 2019-12-31"):
        bill_period(BOOK, RES, date(2019, 12, 31), date(2020, 1, 2), D(1))
    with pytest.raises(TariffNotFound, match="industrial"):
        bill_period(BOOK, TariffCategory.INDUSTRIAL, date(2024, 1, 1), date(2024, 2, 1), D(1))


# --- Tariffs and the book -------------------------------------------------------------------------------------


def test_book_answers_which_version_is_in_force_and_where_prices_change() -> None:
    book = TariffBook(
        versions=(
            residential(version="C", effective_from=date(2024, 7, 1)),
            residential(version="A", effective_from=date(2020, 1, 1)),
            residential(version="B", effective_from=date(2023, 1, 1)),
        )
    )
    assert [t.version for t in book.of(RES)] == ["A", "B", "C"]
    assert book.in_force(RES, date(2022, 12, 31)).version == "A"
    assert book.in_force(RES, date(2023, 1, 1)).version == "B"
    assert book.in_force(RES, date(2030, 1, 1)).version == "C"
    assert [t.version for t in book.changes(RES, date(2023, 1, 1), date(2024, 7, 1))] == ["B"]
    assert [t.version for t in book.changes(RES, date(2022, 1, 1), date(2024, 7, 2))] == ["B", "C"]
    assert [(s.start, s.end, s.tariff.version) for s in book.spans(RES, date(2022, 6, 1), date(2024, 8, 1))] == [
        (date(2022, 6, 1), date(2023, 1, 1), "A"),
        (date(2023, 1, 1), date(2024, 7, 1), "B"),
        (date(2024, 7, 1), date(2024, 8, 1), "C"),
    ]


def test_book_loads_from_plain_data() -> None:
    book = TariffBook.model_validate(
        {
            "versions": [
                {
                    "category": "residential",
                    "version": "R",
                    "effective_from": "2020-01-01",
                    "thresholds_m3": ["300", "600"],
                    "prices": ["3.00", "3.60", "4.50"],
                    "uplift": {"above_residents": 5, "per_person_m3": "50"},
                },
                {"category": "commercial", "version": "C", "effective_from": "2020-01-01", "price": "3.85"},
            ]
        }
    )
    assert isinstance(book.in_force(RES, date(2024, 1, 1)), ResidentialTariff)
    assert isinstance(book.in_force(TariffCategory.COMMERCIAL, date(2024, 1, 1)), FlatTariff)
    assert book.versions[0].vat_rate == D("0.09")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prices": ("3.00", "3.60")}, "need 3 prices"),
        ({"prices": ("3.00", "4.50", "3.60")}, "cheaper"),
        ({"thresholds": ("600", "300")}, "strictly rising"),
        ({"thresholds": ("0", "300")}, "positive"),
        ({"thresholds": ("300.0001", "600")}, "0.001"),
        ({"prices": ("-1", "3.60", "4.50")}, "greater than or equal"),
        ({"vat_rate": D("1.0")}, "less than 1"),
    ],
)
def test_inconsistent_tariffs_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        residential(**fields)  # type: ignore[arg-type]


def test_a_book_refuses_ambiguous_versions() -> None:
    with pytest.raises(ValidationError, match="take effect on"):
        TariffBook(versions=(residential(version="A"), residential(version="B")))
    with pytest.raises(ValidationError, match="labelled"):
        TariffBook(versions=(residential(version="A"), residential(version="A", effective_from=date(2021, 1, 1))))
    with pytest.raises(ValidationError, match="cycle start"):
        TariffBook(
            versions=(
                residential(version="A"),
                residential(version="B", effective_from=date(2021, 1, 1), cycle_start=CycleStart(month=7, day=1)),
            )
        )


# --- Splitting volumes by days: nothing lost, nothing created ---------------------------------------------------


def test_allocate_the_worked_example_by_days() -> None:
    assert allocate(D(62), [Fraction(22), Fraction(9)]) == (D("44.000"), D("18.000"))


def test_allocate_gives_the_rounding_remainder_to_the_last_part() -> None:
    assert allocate(D(10), [Fraction(1), Fraction(1), Fraction(1)]) == (D("3.333"), D("3.334"), D("3.333"))
    assert allocate(D(10), [Fraction(2), Fraction(1)]) == (D("6.667"), D("3.333"))
    # Rounding each part on its own would bill 0.004 m³ out of 0.003; running-total rounding never does.
    parts = allocate(D("0.003"), [Fraction(1)] * 5)
    assert sum(parts) == D("0.003")
    assert min(parts) >= 0


@settings(max_examples=300)
@given(
    volume=st.decimals(min_value=0, max_value=100_000, places=3),
    weights=st.lists(st.integers(min_value=0, max_value=400).map(Fraction), min_size=1, max_size=12).filter(
        lambda ws: sum(ws) > 0
    ),
)
def test_allocate_never_loses_or_creates_volume(volume: Decimal, weights: list[Fraction]) -> None:
    parts = allocate(volume, weights)
    assert sum(parts, D(0)) == volume
    total = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        assert part >= 0
        assert part.as_tuple().exponent == -3
        assert abs(Fraction(part) - Fraction(volume) * weight / total) <= Fraction(1, 1000)


# --- Properties of whole bills ---------------------------------------------------------------------------------

money_prices = st.decimals(min_value=0, max_value=20, places=2)


@st.composite
def tariffs(draw: st.DrawFn, version: str = "P", effective_from: date = date(2015, 1, 1)) -> ResidentialTariff:
    count = draw(st.integers(min_value=1, max_value=4))
    thresholds = sorted(
        draw(
            st.lists(
                st.decimals(min_value="0.001", max_value=3000, places=3), min_size=count, max_size=count, unique=True
            )
        )
    )
    prices = sorted(draw(st.lists(money_prices, min_size=count + 1, max_size=count + 1)))
    uplift = draw(
        st.none()
        | st.builds(
            HouseholdUplift,
            above_residents=st.integers(min_value=1, max_value=6),
            per_person_m3=st.decimals(min_value="0.001", max_value=200, places=3),
        )
    )
    return ResidentialTariff(
        version=version,
        effective_from=effective_from,
        cycle_start=draw(st.sampled_from([CycleStart(), CycleStart(month=4, day=1), CycleStart(month=10, day=15)])),
        thresholds_m3=tuple(thresholds),
        prices=tuple(prices),
        uplift=uplift,
        vat_rate=draw(st.sampled_from([D("0.09"), D("0.10"), D("0.13")])),
    )


@st.composite
def books(draw: st.DrawFn) -> TariffBook:
    first = draw(tariffs())
    later_dates = draw(st.lists(st.dates(date(2019, 1, 2), date(2031, 1, 1)), max_size=3, unique=True))
    versions = [first] + [
        draw(tariffs(version=f"P{i}", effective_from=day)).model_copy(update={"cycle_start": first.cycle_start})
        for i, day in enumerate(later_dates)
    ]
    return TariffBook(versions=tuple(versions))


households = st.none() | st.builds(
    Household,
    residents=st.integers(min_value=1, max_value=9),
    approval=st.none()
    | st.builds(
        UpliftApproval,
        reference=st.just("HH"),
        valid_from=st.dates(date(2018, 1, 1), date(2031, 1, 1)),
        valid_until=st.none() | st.dates(date(2032, 1, 1), date(2033, 1, 1)),
    ),
)
volumes = st.decimals(min_value=0, max_value=20_000, places=3)


def steady(household: Household | None) -> Household | None:
    """The same household with an approval (if any) valid for ever: no approval boundary cuts a period."""
    if household is None or household.approval is None:
        return household
    return household.model_copy(update={"approval": UpliftApproval(reference="HH", valid_from=date(2000, 1, 1))})


def marginal_price(book: TariffBook, day: date, cumulative: Decimal, household: Household | None) -> Decimal:
    bill = bill_period(
        book, RES, day, day + timedelta(days=1), D("0.001"), cumulative_before=cumulative, household=household
    )
    assert len(bill.lines) == 1
    return bill.lines[0].unit_price


def cycle_safe(book: TariffBook, start: date, cumulative: Decimal) -> Decimal:
    first = book.versions[0]
    assert isinstance(first, ResidentialTariff)
    return D(0) if first.cycle_start.cycle_of(start) == start else cumulative


@settings(max_examples=200, deadline=None)
@given(
    book=books(),
    start=st.dates(date(2019, 1, 1), date(2031, 12, 31)),
    days=st.integers(min_value=1, max_value=800),
    volume=volumes,
    cumulative=volumes,
    household=households,
)
def test_property_bills_conserve_volume_and_add_up(
    book: TariffBook, start: date, days: int, volume: Decimal, cumulative: Decimal, household: Household | None
) -> None:
    """Across cycle starts, price changes and approvals: line volumes sum to the input, totals add up."""
    cumulative = cycle_safe(book, start, cumulative)
    bill = bill_period(
        book, RES, start, start + timedelta(days=days), volume, cumulative_before=cumulative, household=household
    )
    assert sum((line.volume_m3 for line in bill.lines), D(0)) == volume
    assert bill.total >= 0
    assert bill.total == sum((line.amount for line in bill.lines), D("0.00"))
    assert bill.net_total + bill.tax_total == bill.total
    assert sum((v.gross for v in bill.vat), D("0.00")) == bill.total
    for line in bill.lines:
        assert line.volume_m3 > 0
        assert line.amount == round_half_up(Fraction(line.volume_m3) * Fraction(line.unit_price), 2)
        assert line.start <= line.end
    assert bill.total.as_tuple().exponent == -2


@settings(max_examples=300, deadline=None)
@given(
    tariff=tariffs(),
    cumulative=volumes,
    first=volumes,
    second=volumes,
    household=households,
)
def test_property_billing_in_two_steps_matches_billing_at_once(
    tariff: ResidentialTariff, cumulative: Decimal, first: Decimal, second: Decimal, household: Household | None
) -> None:
    """One tariff version, one cycle, one set of thresholds: split V1 + V2 with the cumulative carried.

    Guaranteed exactly: identical per-tier volumes; every tier's line amount is identical except at most
    one tier (the one the split point falls strictly inside); hence the totals differ by at most 0.01
    (three roundings of at most 0.005 each, and the difference is a whole number of cents).
    """
    book = TariffBook(versions=(tariff,))
    cycle = tariff.cycle_start.cycle_of(date(2024, 6, 1))
    # Three periods strictly inside the cycle that holds June 2024: no cut anywhere.
    start, middle, end = cycle + timedelta(days=1), cycle + timedelta(days=100), cycle + timedelta(days=200)
    household = steady(household)
    whole = bill_period(book, RES, start, end, first + second, cumulative_before=cumulative, household=household)
    part_1 = bill_period(book, RES, start, middle, first, cumulative_before=cumulative, household=household)
    assert part_1.cumulative_after == cumulative + first
    part_2 = bill_period(book, RES, middle, end, second, cumulative_before=part_1.cumulative_after, household=household)

    def by_tier(*bills: Bill) -> dict[int, tuple[Decimal, Decimal]]:
        acc: dict[int, tuple[Decimal, Decimal]] = {}
        for bill in bills:
            for line in bill.lines:
                volume, amount = acc.get(line.tier, (D(0), D(0)))
                acc[line.tier] = (volume + line.volume_m3, amount + line.amount)
        return acc

    split, at_once = by_tier(part_1, part_2), by_tier(whole)
    assert {tier: v for tier, (v, _) in split.items()} == {tier: v for tier, (v, _) in at_once.items()}
    differing = [tier for tier in at_once if split[tier][1] != at_once[tier][1]]
    assert len(differing) <= 1
    assert abs((part_1.total + part_2.total) - whole.total) <= D("0.01")
    assert whole.cumulative_after == part_2.cumulative_after == cumulative + first + second


@settings(max_examples=200, deadline=None)
@given(tariff=tariffs(), low=volumes, extra=volumes, household=households)
def test_property_the_marginal_price_never_falls_as_the_cumulative_grows(
    tariff: ResidentialTariff, low: Decimal, extra: Decimal, household: Household | None
) -> None:
    book = TariffBook(versions=(tariff,))
    day = tariff.cycle_start.cycle_of(date(2024, 6, 1)) + timedelta(days=10)
    assert marginal_price(book, day, low, household) <= marginal_price(book, day, low + extra, household)


@settings(max_examples=200, deadline=None)
@given(tariff=tariffs(), cumulative=volumes, volume=volumes, household=households)
def test_property_within_one_part_tiers_rise_and_prices_never_fall(
    tariff: ResidentialTariff, cumulative: Decimal, volume: Decimal, household: Household | None
) -> None:
    book = TariffBook(versions=(tariff,))
    household = steady(household)
    start = tariff.cycle_start.cycle_of(date(2024, 6, 1)) + timedelta(days=10)
    bill = bill_period(
        book, RES, start, start + timedelta(days=30), volume, cumulative_before=cumulative, household=household
    )
    tiers = [line.tier for line in bill.lines]
    prices = [line.unit_price for line in bill.lines]
    assert tiers == sorted(set(tiers))
    assert prices == sorted(prices)
    assert sum((line.volume_m3 for line in bill.lines), D(0)) == volume


@st.composite
def periods_with_intervals(draw: st.DrawFn) -> tuple[date, date, list[IntervalVolume]]:
    start = draw(st.dates(date(2019, 1, 1), date(2031, 12, 31)))
    days = draw(st.integers(min_value=1, max_value=400))
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=days - 1), max_size=12))) if days > 1 else []
    edges = [start, *(start + timedelta(days=cut) for cut in cuts), start + timedelta(days=days)]
    intervals = [
        IntervalVolume(start=lo, end=hi, volume_m3=draw(st.decimals(min_value=0, max_value=500, places=3)))
        for lo, hi in pairwise(edges)
    ]
    return start, edges[-1], intervals


@settings(max_examples=200, deadline=None)
@given(book=books(), period=periods_with_intervals(), cumulative=volumes, household=households, scale=st.booleans())
def test_property_interval_data_conserves_volume(
    book: TariffBook,
    period: tuple[date, date, list[IntervalVolume]],
    cumulative: Decimal,
    household: Household | None,
    scale: bool,
) -> None:
    """Interval data shapes the split; the billed volume is the register volume, to the 0.001 m³."""
    start, end, intervals = period
    measured = sum((interval.volume_m3 for interval in intervals), D("0.000"))
    volume = measured * 2 if scale else measured  # intervals are weights: a register volume twice as large scales
    cumulative = cycle_safe(book, start, cumulative)
    bill = bill_period(
        book, RES, start, end, volume, cumulative_before=cumulative, household=household, intervals=intervals
    )
    assert sum((line.volume_m3 for line in bill.lines), D(0)) == volume
    assert bill.total >= 0
