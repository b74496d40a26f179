"""What closing and transferring an account answer: the account, its final bill and the settlement."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from core.accounts.models import AccountView
from core.errors import DomainRejected


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FinalMeterUse(_Model):
    """One meter's part of a final bill for an account with several meters."""

    meter_id: str
    reading_start_m3: Decimal
    reading_end_m3: Decimal
    volume_m3: Decimal


class FinalBill(_Model):
    """The bill for the use from the end of the account's last bill (or its opening) up to the final
    (or transfer) reading, priced like the monthly run prices a period."""

    bill_id: str
    meter_id: str
    period_start: date
    period_end: date
    """Exclusive: the day after the one the reading was taken on."""
    reading_start_m3: Decimal
    reading_end_m3: Decimal
    volume_m3: Decimal
    total: Decimal
    """VAT included."""
    meters: list[FinalMeterUse] = []
    """For an account with several meters: each meter's registers and use (the bill prices their sum;
    ``meter_id`` is then the first meter and the registers above the sums). Empty for one meter."""


class Settlement(_Model):
    """Where the account's money stands after the call.

    ``credit_applied`` is unused credit (earlier overpayments) this call spent on the open bills, oldest
    first; ``payment`` a settlement payment it recorded (transfer only). ``owed`` is what the bills still
    owe (collected at the counter: the account stays payable after a close). ``credit_left`` is credit
    no bill needs; on a close it is due back to the holder, as is a prepaid meter's positive balance:
    ``refund_due`` is their sum. Neither moves here: the money stays where it is recorded (the credit
    ledger, the meter's balance) and is paid out through the payment channel, whose ``payment.refunded``
    takes it from there (:mod:`core.payments`).
    """

    bill: FinalBill | None
    credit_applied: Decimal
    payment: Decimal
    owed: Decimal
    credit_left: Decimal
    prepaid_balance: Decimal | None
    """A prepaid account's meter balance after the final reading was charged (negative: owed)."""
    refund_due: Decimal
    refund_order_id: str | None = None
    """The work order for paying ``refund_due`` out (category ``refund``), when something is due."""


class AccountClosed(AccountView):
    """The closed account (masked) with its settlement."""

    settlement: Settlement


class AccountTransferred(AccountView):
    """The account under its new holder (masked) and what happened to the arrears."""

    outcome: Literal["settled", "carried"]
    """``settled``: nothing was owed once the old holder's period was billed, credit applied and the
    settlement payment recorded; ``carried``: what is owed stays on the account (``arrears_carried``)."""
    arrears_carried: Decimal
    settlement: Settlement


class ArrearsOutstanding(DomainRejected):
    """A ``settle`` transfer while the account still owes ``owed``: pay it (a settlement payment with
    the request), or transfer with ``carry``."""

    def __init__(self, owed: Decimal, detail: str) -> None:
        super().__init__(detail)
        self.owed = owed
