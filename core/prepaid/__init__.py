"""Prepaid accounts (domain issue item 5): each accepted reading of a prepaid meter is priced with the
tariff in force and deducted from its balance; the holder hears when the balance runs low; the
valve closes at zero and reopens only after an on-site check (:mod:`core.valves`)."""

from core.prepaid.deduction import AcceptedReading, PhoneLookup, PrepaidMeters
from core.prepaid.pricing import CycleUse, PricedLine, PricedUse, Pricer
from core.prepaid.settings import DEFAULT_PREPAID, PrepaidSettings

__all__ = [
    "DEFAULT_PREPAID",
    "AcceptedReading",
    "CycleUse",
    "PhoneLookup",
    "PrepaidMeters",
    "PrepaidSettings",
    "PricedLine",
    "PricedUse",
    "Pricer",
]
