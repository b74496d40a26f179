"""Settling an account at a close or a transfer, with the payments code: credit, then counter money.

:func:`apply_credit` spends the account's unused credit on its open bills, oldest first
(:meth:`core.payments.Payments.apply_credit`, as after a billing run) and measures what it spent and
what is still owed; :func:`pay_at_counter` records a settlement payment (channel ``counter``, the
transaction id is the client request id) as ``payment.received`` would, so it is allocated, invoiced
and refundable like any other payment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from core.billing.money import ZERO_MONEY
from core.catalogue.messages import PaymentChannel, PaymentReceived
from core.messages import Incoming, derived_id
from core.outbox import emit
from core.payments import Payments, ledger


@dataclass(frozen=True, slots=True)
class Position:
    """What the account owes on its bills and holds as unused credit."""

    owed: Decimal
    credit: Decimal


async def position(conn: AsyncConnection, account_id: str) -> Position:
    bills = await ledger.open_bills(conn, [account_id])
    credits = await ledger.unused_credit(conn, [account_id])
    return Position(owed=sum((b.outstanding for b in bills[account_id]), ZERO_MONEY),
                    credit=sum((f.amount for f in credits[account_id]), ZERO_MONEY))


async def apply_credit(conn: AsyncConnection, payments: Payments, account_id: str, now: datetime) -> tuple[
        Decimal, Position]:
    """Spend the account's credit on its open bills (oldest first); returns what was spent and where
    the account stands after."""
    before = await position(conn, account_id)
    await emit(conn, await payments.apply_credit(conn, [account_id], now))
    after = await position(conn, account_id)
    return before.credit - after.credit, after


async def pay_at_counter(conn: AsyncConnection, payments: Payments, account_id: str, request_id: str,
                         amount: Decimal, now: datetime) -> None:
    """Record ``amount`` paid at the counter for the account (transaction id = ``request_id``); it pays
    the open bills oldest first. Its ``invoice.requested`` events go to the outbox."""
    message_id = derived_id("counter", request_id)
    data = PaymentReceived(channel=PaymentChannel.COUNTER, transaction_id=request_id, out_trade_no=request_id,
                           account_id=account_id, amount=amount, paid_at=now)
    item = Incoming(message_id=message_id, type="payment.received", subject=account_id, correlation_id=message_id,
                    data=data)
    await emit(conn, await payments.record(conn, [item], now))
