"""The billing run's calculator (``core.billing_run.pricing``) equals the reference ``bill_period``.

Property tests over random tariff books (several versions, tiers, VAT rates, cycle starts), periods
of a day to over two years (cycle crossings, price changes inside the period), volumes and carried
cumulatives; the worked examples of domain.md; and the same refusals.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.billing import (
    CycleStart,
    FlatTariff,
    ResidentialTariff,
    TariffBook,
    TariffCategory,
    TariffNotFound,
    bill_period,
)
from core.billing_run.batch import RunPlan, price_batch
from core.billing_run.periods import period_boundary
from core.billing_run.pricing import PeriodPricer
from core.catalogue.messages import BillIssued

D = Decimal
NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
RES = TariffCategory.RESIDENTIAL
BOOK = TariffBook(versions=(ResidentialTariff(
    version="RES", effective_from=date(2020, 1, 1), thresholds_m3=(D(300), D(600)),
    prices=(D("3.00"), D("3.60"), D("4.50"))),))

prices = st.decimals(min_value="0.01", max_value="20", places=4)
volumes = st.decimals(min_value=0, max_value=50_000, places=3)
vat_rates = st.sampled_from([D("0.09"), D("0.10"), D("0.13"), D("0.06"), D("0")])
cycle_starts = st.sampled_from([CycleStart(), CycleStart(month=4, day=1), CycleStart(month=10, day=15),
                                CycleStart(month=12, day=31)])


@st.composite
def residential_books(draw: st.DrawFn) -> TariffBook:
    cycle = draw(cycle_starts)
    days = sorted(draw(st.lists(st.dates(date(2020, 1, 2), date(2028, 12, 31)), max_size=3, unique=True)))
    versions = []
    for n, day in enumerate([date(2020, 1, 1), *days]):
        count = draw(st.integers(min_value=1, max_value=3))
        thresholds = sorted(draw(st.lists(st.decimals(min_value="0.001", max_value=2000, places=3),
                                          min_size=count, max_size=count, unique=True)))
        tier_prices = sorted(draw(st.lists(prices, min_size=count + 1, max_size=count + 1)))
        versions.append(ResidentialTariff(version=f"R{n}", effective_from=day, cycle_start=cycle,
                                          thresholds_m3=tuple(thresholds), prices=tuple(tier_prices),
                                          vat_rate=draw(vat_rates)))
    return TariffBook(versions=tuple(versions))


@st.composite
def flat_books(draw: st.DrawFn) -> tuple[TariffBook, TariffCategory]:
    category = draw(st.sampled_from([TariffCategory.INDUSTRIAL, TariffCategory.COMMERCIAL, TariffCategory.HEATING]))
    days = sorted(draw(st.lists(st.dates(date(2020, 1, 2), date(2028, 12, 31)), max_size=3, unique=True)))
    versions = tuple(FlatTariff(version=f"F{n}", effective_from=day, category=category, price=draw(prices),
                                vat_rate=draw(vat_rates)) for n, day in enumerate([date(2020, 1, 1), *days]))
    return TariffBook(versions=versions), category


def assert_same(book: TariffBook, category: TariffCategory, start: date, end: date, volume: Decimal,
                cumulative: Decimal) -> None:
    expected = bill_period(book, category, start, end, volume, cumulative_before=cumulative)
    got = PeriodPricer(book, category, start, end).bill(volume, cumulative)
    assert got.as_bill() == expected
    assert (got.total, got.net_total, got.tax_total, got.cumulative_after, got.volume_m3) == (
        expected.total, expected.net_total, expected.tax_total, expected.cumulative_after, expected.volume_m3)
    # what the run stores and publishes, digit for digit
    assert [(str(line.volume_m3), str(line.amount)) for line in got.lines] == [
        (str(line.volume_m3.quantize(D("0.001"))), str(line.amount)) for line in expected.lines]
    assert (str(got.total), str(got.net_total), str(got.tax_total), str(got.volume_m3)) == (
        str(expected.total), str(expected.net_total), str(expected.tax_total), str(expected.volume_m3))


@settings(max_examples=400, deadline=None)
@given(book=residential_books(), start=st.dates(date(2020, 1, 1), date(2029, 6, 30)),
       days=st.integers(min_value=1, max_value=800), volume=volumes, cumulative=volumes)
@example(book=BOOK, start=date(2024, 12, 10), days=31, volume=D(62), cumulative=D(280))  # rule 3
def test_residential_bills_equal_the_reference(
    book: TariffBook, start: date, days: int, volume: Decimal, cumulative: Decimal
) -> None:
    first = book.versions[0]
    assert isinstance(first, ResidentialTariff)
    if first.cycle_start.cycle_of(start) == start:
        cumulative = D(0)
    assert_same(book, RES, start, start + timedelta(days=days), volume, cumulative)


@settings(max_examples=200, deadline=None)
@given(book=flat_books(), start=st.dates(date(2020, 1, 1), date(2029, 6, 30)),
       days=st.integers(min_value=1, max_value=800), volume=volumes, cumulative=volumes)
def test_flat_bills_equal_the_reference(
    book: tuple[TariffBook, TariffCategory], start: date, days: int, volume: Decimal, cumulative: Decimal
) -> None:
    assert_same(book[0], book[1], start, start + timedelta(days=days), volume, cumulative)


def test_the_worked_examples() -> None:
    bill = PeriodPricer(BOOK, RES, date(2024, 5, 1), date(2024, 6, 1)).bill(D(50), D(280))
    assert [(line.tier, line.volume_m3, line.amount) for line in bill.lines] == [
        (1, D(20), D("60.00")), (2, D(30), D("108.00"))]
    assert (bill.total, bill.tax_total, bill.cumulative_after) == (D("168.00"), D("13.87"), D(330))
    crossing = PeriodPricer(BOOK, RES, date(2024, 12, 10), date(2025, 1, 10)).bill(D(62), D(280))
    assert [(line.cycle_start, line.tier, line.volume_m3) for line in crossing.lines] == [
        (date(2024, 1, 1), 1, D(20)), (date(2024, 1, 1), 2, D(24)), (date(2025, 1, 1), 1, D(18))]
    assert crossing.cumulative_after == D(18)
    assert_same(BOOK, RES, date(2024, 12, 10), date(2025, 1, 10), D(62), D(280))
    assert_same(BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D(0), D(280))  # no lines, zero total
    assert_same(BOOK, RES, date(2024, 5, 1), date(2024, 6, 1), D("0.001"), D(300))  # the next tier's first litre


def test_the_same_refusals_as_the_reference() -> None:
    pricer = PeriodPricer(BOOK, RES, date(2025, 1, 1), date(2025, 2, 1))
    with pytest.raises(ValueError, match="starts the cycle"):
        pricer.bill(D(20), D(590))
    with pytest.raises(ValueError, match="more than 3 decimal places"):
        pricer.bill(D("1.0001"), D(0))
    with pytest.raises(ValueError, match="must not be negative"):
        pricer.bill(D(-1), D(0))
    with pytest.raises(TypeError, match="Decimal"):
        pricer.bill(1.5, D(0))  # type: ignore[arg-type]
    with pytest.raises(TariffNotFound):
        PeriodPricer(BOOK, RES, date(2019, 12, 1), date(2020, 2, 1))
    with pytest.raises(TariffNotFound):
        PeriodPricer(BOOK, TariffCategory.COMMERCIAL, date(2024, 1, 1), date(2024, 2, 1))
    with pytest.raises(ValueError, match="empty period"):
        PeriodPricer(BOOK, RES, date(2024, 1, 1), date(2024, 1, 1))


@given(book=residential_books(), start=st.dates(date(2020, 1, 1), date(2029, 6, 30)),
       days=st.integers(1, 120), opening=volumes, volume=volumes, chained=st.one_of(st.none(), volumes))
@settings(max_examples=150, deadline=None)
def test_a_priced_batchs_bill_issued_events_are_what_validation_would_make(
        book: TariffBook, start: date, days: int, opening: Decimal, volume: Decimal, chained: Decimal | None) -> None:
    """``price_batch`` builds its ``bill.issued`` data with ``model_construct`` (no validation, for
    speed): the data must pass the catalogue's validation and serialize to the same JSON as a
    validated model would."""
    end = start + timedelta(days=days)
    plan = RunPlan(book, start, end, period_boundary(start), period_boundary(end), NOW)
    row = ("A1", "residential", None, "M1", 1, opening, opening + volume, None, None, None, chained, "valid",
           None, None)
    priced = price_batch(plan, [row])
    assert len(priced.events) == 1
    data = priced.events[0][0].data
    assert isinstance(data, BillIssued)
    validated = BillIssued.model_validate(data.model_dump())
    assert validated.model_dump_json() == data.model_dump_json()
