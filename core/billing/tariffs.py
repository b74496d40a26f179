"""Tariffs as data: versioned by effective date, one book per company.

Residential gas is priced in tiers of annual cumulative volume (阶梯气价); non-residential categories
pay a flat price per m³. Every price includes VAT (9 % on piped gas by default). A
:class:`TariffBook` holds every version and answers which one is in force on a day and where the
price changes inside a period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from core.billing.base import BillingModel
from core.billing.cycles import CycleStart
from core.billing.household import Household
from core.billing.money import VOLUME_PLACES, has_at_most

Price = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
"""Yuan per m³, VAT included."""
VatRate = Annotated[Decimal, Field(ge=0, lt=1, allow_inf_nan=False)]
DEFAULT_VAT_RATE = Decimal("0.09")


class TariffCategory(StrEnum):
    RESIDENTIAL = "residential"
    INDUSTRIAL = "industrial"
    COMMERCIAL = "commercial"
    """Commercial and catering."""
    HEATING = "heating"


class TariffNotFound(LookupError):
    """No tariff version of the category is in force on the day asked."""


class HouseholdUplift(BillingModel):
    """Every threshold rises by ``per_person_m3`` for each resident above ``above_residents``."""

    above_residents: int = Field(default=4, ge=1)
    per_person_m3: Decimal = Field(gt=0, allow_inf_nan=False)

    @field_validator("per_person_m3")
    @classmethod
    def _volume_precision(cls, value: Decimal) -> Decimal:
        if not has_at_most(value, VOLUME_PLACES):
            raise ValueError("per_person_m3 has more than 3 decimal places")
        return value

    def extra_m3(self, residents: int) -> Decimal:
        return self.per_person_m3 * max(0, residents - self.above_residents)


class _TariffVersion(BillingModel):
    version: str = Field(min_length=1, max_length=64)
    """A label printed on bill lines, e.g. ``RES-2024``."""
    effective_from: date
    vat_rate: VatRate = DEFAULT_VAT_RATE


class ResidentialTariff(_TariffVersion):
    """Tiered residential prices: ``prices[i]`` applies to cumulative volume up to ``thresholds_m3[i]``.

    Example: thresholds ``(300, 600)`` and prices ``(3.00, 3.60, 4.50)`` bill the first 300 m³ of a
    cycle at 3.00, the next 300 at 3.60 and the rest at 4.50. Thresholds rise strictly; prices never
    fall from one tier to the next.
    """

    category: Literal[TariffCategory.RESIDENTIAL] = TariffCategory.RESIDENTIAL
    cycle_start: CycleStart = CycleStart()
    thresholds_m3: tuple[Decimal, ...] = Field(min_length=1)
    prices: tuple[Price, ...]
    uplift: HouseholdUplift | None = None

    @model_validator(mode="after")
    def _tiers_are_consistent(self) -> ResidentialTariff:
        where = f"tariff {self.version}"
        if len(self.prices) != len(self.thresholds_m3) + 1:
            raise ValueError(
                f"{where}: {len(self.thresholds_m3)} thresholds need {len(self.thresholds_m3) + 1} prices, "
                f"got {len(self.prices)}"
            )
        previous = Decimal(0)
        for threshold in self.thresholds_m3:
            if not has_at_most(threshold, VOLUME_PLACES) or threshold <= previous:
                raise ValueError(f"{where}: thresholds must be finite, positive and strictly rising (0.001 m³)")
            previous = threshold
        if any(later < earlier for earlier, later in pairwise(self.prices)):
            raise ValueError(f"{where}: a higher tier cannot be cheaper than a lower one")
        return self

    def thresholds_for(self, household: Household | None, day: date) -> tuple[Decimal, ...]:
        """The thresholds on ``day``, raised by the uplift when the household's approval covers it."""
        if self.uplift is None or household is None or not household.uplift_approved_on(day):
            return self.thresholds_m3
        extra = self.uplift.extra_m3(household.residents)
        return tuple(threshold + extra for threshold in self.thresholds_m3)


class FlatTariff(_TariffVersion):
    """One price per m³ for a non-residential category."""

    category: Literal[TariffCategory.INDUSTRIAL, TariffCategory.COMMERCIAL, TariffCategory.HEATING]
    price: Price


Tariff = Annotated[ResidentialTariff | FlatTariff, Field(discriminator="category")]


@dataclass(frozen=True, slots=True)
class TariffSpan:
    """A tariff version in force over ``[start, end)``."""

    start: date
    end: date
    tariff: ResidentialTariff | FlatTariff


class TariffBook(BillingModel):
    """Every tariff version of every category, kept in effective-date order.

    Within a category, effective dates and version labels are unique. All residential versions share
    one cycle start: moving the cycle start is a migration of the cumulative, not a new price list.
    """

    versions: tuple[Tariff, ...]

    @field_validator("versions")
    @classmethod
    def _in_date_order(
        cls, versions: tuple[ResidentialTariff | FlatTariff, ...]
    ) -> tuple[ResidentialTariff | FlatTariff, ...]:
        return tuple(sorted(versions, key=lambda tariff: (tariff.category, tariff.effective_from)))

    @model_validator(mode="after")
    def _unambiguous(self) -> TariffBook:
        dates: set[tuple[TariffCategory, date]] = set()
        labels: set[tuple[TariffCategory, str]] = set()
        cycle_starts: set[CycleStart] = set()
        for tariff in self.versions:
            if (tariff.category, tariff.effective_from) in dates:
                raise ValueError(f"two {tariff.category} tariffs take effect on {tariff.effective_from}")
            if (tariff.category, tariff.version) in labels:
                raise ValueError(f"two {tariff.category} tariffs are labelled {tariff.version}")
            dates.add((tariff.category, tariff.effective_from))
            labels.add((tariff.category, tariff.version))
            if isinstance(tariff, ResidentialTariff):
                cycle_starts.add(tariff.cycle_start)
        if len(cycle_starts) > 1:
            raise ValueError("residential tariff versions disagree on the cycle start")
        return self

    def of(self, category: TariffCategory) -> tuple[ResidentialTariff | FlatTariff, ...]:
        """The category's versions, oldest first."""
        return tuple(tariff for tariff in self.versions if tariff.category == category)

    def in_force(self, category: TariffCategory, on: date) -> ResidentialTariff | FlatTariff:
        """The version in force on ``on``: the latest one whose ``effective_from`` is not after it."""
        current: ResidentialTariff | FlatTariff | None = None
        for tariff in self.of(category):
            if tariff.effective_from > on:
                break
            current = tariff
        if current is None:
            raise TariffNotFound(f"no {category} tariff is in force on {on.isoformat()}")
        return current

    def changes(self, category: TariffCategory, start: date, end: date) -> tuple[ResidentialTariff | FlatTariff, ...]:
        """The versions taking effect on a day of ``[start, end)``, oldest first."""
        return tuple(tariff for tariff in self.of(category) if start <= tariff.effective_from < end)

    def spans(self, category: TariffCategory, start: date, end: date) -> tuple[TariffSpan, ...]:
        """The versions in force over ``[start, end)``, cut where the price changes; they tile the period."""
        if end <= start:
            raise ValueError(f"empty period {start.isoformat()}..{end.isoformat()} (end is exclusive)")
        cuts: Sequence[date] = [tariff.effective_from for tariff in self.changes(category, start, end)]
        bounds = sorted({start, *cuts, end})
        return tuple(TariffSpan(lo, hi, self.in_force(category, lo)) for lo, hi in pairwise(bounds))
