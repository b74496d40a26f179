"""Where a payment's money goes, and where a refund takes it back from: pure rules, no database.

* **Settling** (:func:`settle`): funds are spent in the order given (the caller puts the account's
  unused credit first, oldest payment first, then new payments in the order they were paid) on the
  open bills **oldest first** (by period, then issue time, then id). What no bill needs is left
  over: the caller keeps it as credit.
* **Taking back** (:func:`take_back`): a refund first takes the payment's unused credit, then its
  money on bills, **newest bill first**, so the oldest debts stay paid the longest.

Every amount is ``Decimal`` yuan with at most two decimals; nothing here rounds, so shares always sum
exactly to what was spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from core.billing.money import MONEY_PLACES, ZERO_MONEY, has_at_most


def check_money(value: Decimal, what: str = "amount") -> Decimal:
    """A finite, non-negative ``Decimal`` with at most two decimals, returned with exactly two."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"{what} must be a Decimal in yuan, not {type(value).__name__}")
    amount = Decimal(value)
    if not has_at_most(amount, MONEY_PLACES) or amount < 0:
        raise ValueError(f"{what} must be a non-negative number of yuan with at most 2 decimals, got {amount}")
    return amount.quantize(ZERO_MONEY)


class Source(StrEnum):
    PAYMENT = "payment"
    """Money of a payment being credited now."""
    CREDIT = "credit"
    """A payment's overpayment, kept as credit and spent later."""


@dataclass(frozen=True, slots=True)
class Fund:
    payment_id: str
    amount: Decimal
    source: Source


@dataclass(frozen=True, slots=True)
class OpenBill:
    """A bill with money still owed on it."""

    bill_id: str
    period_start: date
    issued_at: datetime
    outstanding: Decimal

    @property
    def age(self) -> tuple[date, datetime, str]:
        return (self.period_start, self.issued_at, self.bill_id)


@dataclass(frozen=True, slots=True)
class Share:
    """``amount`` of ``payment_id``'s money (from ``source``) put on ``bill_id``."""

    payment_id: str
    bill_id: str
    amount: Decimal
    source: Source


@dataclass(frozen=True, slots=True)
class Settlement:
    shares: tuple[Share, ...]
    left: tuple[Fund, ...]
    """What each fund has left after the bills (only funds with something left)."""
    paid_off: tuple[str, ...]
    """Bills that owe nothing more, in the order they were paid off."""


def settle(funds: Sequence[Fund], bills: Sequence[OpenBill]) -> Settlement:
    """Spend ``funds`` (in their order) on ``bills`` (oldest first, whatever order they come in)."""
    owed = [(bill, check_money(bill.outstanding, f"bill {bill.bill_id} outstanding")) for bill in bills]
    owed.sort(key=lambda pair: pair[0].age)
    owed = [(bill, amount) for bill, amount in owed if amount > 0]
    shares: list[Share] = []
    left: list[Fund] = []
    paid_off: list[str] = []
    i = 0
    for fund in funds:
        available = check_money(fund.amount, f"payment {fund.payment_id} amount")
        while available > 0 and i < len(owed):
            bill, due = owed[i]
            part = min(available, due)
            shares.append(Share(fund.payment_id, bill.bill_id, part, fund.source))
            available -= part
            due -= part
            owed[i] = (bill, due)
            if due == 0:
                paid_off.append(bill.bill_id)
                i += 1
        if available > 0:
            left.append(Fund(fund.payment_id, available, fund.source))
    return Settlement(tuple(shares), tuple(left), tuple(paid_off))


@dataclass(frozen=True, slots=True)
class Placed:
    """A payment's net money on one bill (its shares minus what refunds already took back)."""

    bill_id: str
    period_start: date
    issued_at: datetime
    amount: Decimal

    @property
    def age(self) -> tuple[date, datetime, str]:
        return (self.period_start, self.issued_at, self.bill_id)


@dataclass(frozen=True, slots=True)
class TakeBack:
    from_credit: Decimal
    from_bills: tuple[tuple[str, Decimal], ...]
    """``(bill_id, amount)``, newest bill first."""

    @property
    def total(self) -> Decimal:
        return self.from_credit + sum((amount for _, amount in self.from_bills), ZERO_MONEY)


class NotEnoughToTakeBack(ValueError):
    """The payment holds less (credit plus bills) than the refund asks for."""


def take_back(amount: Decimal, unused_credit: Decimal, placed: Sequence[Placed]) -> TakeBack:
    """Where ``amount`` of a refund comes from: the payment's unused credit, then its bills newest first."""
    wanted = check_money(amount, "refund amount")
    credit = min(wanted, check_money(unused_credit, "unused credit"))
    wanted -= credit
    taken: list[tuple[str, Decimal]] = []
    for place in sorted(placed, key=lambda p: p.age, reverse=True):
        if wanted == 0:
            break
        part = min(wanted, check_money(place.amount, f"money on bill {place.bill_id}"))
        if part > 0:
            taken.append((place.bill_id, part))
            wanted -= part
    if wanted > 0:
        raise NotEnoughToTakeBack(f"{wanted} of the refund is neither credit nor on a bill of the payment")
    return TakeBack(credit, tuple(taken))
