"""What a billing run reports: totals, the bills it issued and the accounts it skipped, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum


class SkipReason(StrEnum):
    NO_OPENING_READING = "no_opening_reading"
    NO_CLOSING_READING = "no_closing_reading"
    NEGATIVE_CONSUMPTION = "negative_consumption"
    UNKNOWN_CATEGORY = "unknown_category"
    NO_TARIFF = "no_tariff"
    READING_HELD = "reading_held"
    """The period's latest reading is held from billing (negative, clock, capacity): no bill until an
    operator resolves its exception."""
    NO_ESTIMATE = "no_estimate"
    """The period's latest reading is to be replaced by an estimate, and there is no history to
    estimate from."""


@dataclass(frozen=True, slots=True)
class SkippedAccount:
    account_id: str
    meter_id: str | None
    reason: SkipReason
    detail: str = ""


@dataclass(slots=True)
class BillingRunResult:
    """What a run did; ``progress`` receives it after every batch, totals so far."""

    period_start: date
    period_end: date
    accounts_seen: int = 0
    bills_issued: int = 0
    already_billed: int = 0
    total_billed: Decimal = Decimal("0.00")
    bill_ids: list[str] = field(default_factory=list)
    estimated_bill_ids: list[str] = field(default_factory=list)
    """The bills among ``bill_ids`` whose volume is an estimate (the period's reading was held)."""
    skipped: list[SkippedAccount] = field(default_factory=list)
    batches: int = 0
