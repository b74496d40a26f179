"""Tariffs and billing: a pure calculation engine (no database, no I/O).

Tariffs are versioned data (:class:`TariffBook`); :func:`bill_period` turns a period's volume into
bill lines (tier, cycle, tariff version, volume, unit price, amount), totals and the VAT inside them,
following the tiered-pricing rules of ``domain.md``. Money is ``Decimal`` yuan rounded half-up to
0.01 per line; volumes are ``Decimal`` m³ to 0.001; periods are ``[start, end)``.
"""

from core.billing.allocation import IntervalVolume, allocate
from core.billing.calculate import Bill, BillLine, bill_period
from core.billing.cycles import CycleStart
from core.billing.household import Household, UpliftApproval
from core.billing.tariffs import (
    DEFAULT_VAT_RATE,
    FlatTariff,
    HouseholdUplift,
    ResidentialTariff,
    Tariff,
    TariffBook,
    TariffCategory,
    TariffNotFound,
    TariffSpan,
)
from core.billing.vat import VatLine, vat_split

__all__ = [
    "DEFAULT_VAT_RATE",
    "Bill",
    "BillLine",
    "CycleStart",
    "FlatTariff",
    "Household",
    "HouseholdUplift",
    "IntervalVolume",
    "ResidentialTariff",
    "Tariff",
    "TariffBook",
    "TariffCategory",
    "TariffNotFound",
    "TariffSpan",
    "UpliftApproval",
    "VatLine",
    "allocate",
    "bill_period",
    "vat_split",
]
