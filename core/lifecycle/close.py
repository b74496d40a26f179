"""Close an account (销户, move-out): final reading, final bill, settlement, in one call.

See :func:`close_account`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.accounts.idempotency import check_request_id, claim, finish
from core.accounts.models import Privacy
from core.accounts.service import aware, current_holder, get_account, lock_account, record_status
from core.billing import TariffBook
from core.billing.money import ZERO_MONEY
from core.db.tables_accounts import account, account_holder_history
from core.errors import DomainRejected
from core.lifecycle.final_use import (
    account_meters,
    bill_final_use,
    charge_prepaid_meters,
    clean_meter_readings,
    final_registers,
    register_value,
)
from core.lifecycle.models import AccountClosed, FinalBill, Settlement
from core.lifecycle.refund_order import open_refund_order
from core.lifecycle.settlement import apply_credit
from core.payments import Payments, PaymentSettings
from core.workorders import DEFAULT_WORK_ORDERS, WorkOrderSettings


async def close_account(
    conn: AsyncConnection,
    privacy: Privacy,
    request_id: str,
    account_id: str,
    final_reading_m3: Decimal | None,
    at: datetime,
    *,
    book: TariffBook,
    payment_settings: PaymentSettings | None = None,
    work_orders: WorkOrderSettings = DEFAULT_WORK_ORDERS,
    by: str = "system",
    meter_readings: Mapping[str, Decimal] | None = None,
) -> AccountClosed:
    """Close the account at ``at``, in the caller's transaction; idempotent by ``request_id``.

    1. **Final reading** (``final_reading_m3``, needed for a postpaid account with a meter; optional for a
       prepaid one and ignored without a meter) is stored as a reading of the account's meter, source
       ``final`` (:mod:`core.lifecycle.final_use`). An account with several meters takes
       ``meter_readings`` instead, one register per meter; the final bill is made on their sum. A
       prepaid account's meters are each charged; ``prepaid_balance`` is their balances summed (what one
       meter owes is set against what another holds, the same holder's money).
    2. **Final bill** (postpaid): the use from the end of the last bill (or the opening) to the reading,
       through the day of ``at``, priced by the tariff ``book`` like the monthly run prices a period, with
       ``bill.issued``. A prepaid account has no bill of use: the reading is charged to its balance.
    3. **Settlement**: unused credit pays the open bills, oldest first (invoices as ``payment_settings``
       say). What is still owed stays payable at the counter (a payment to a closed account is credited
       as usual); credit left over, and a prepaid meter's positive balance, are the ``refund_due``, paid out
       through the payment channel (``payment.refunded`` takes it from the credit or the balance). The
       status history records the amounts, and a ``refund`` work order (``refund_order_id``) asks for
       the payout (:mod:`core.lifecycle.refund_order`; ``by`` is who closed the account).

    The account becomes ``closed`` and its holder period ends at ``at``. The meter stays linked to the
    account (bills and readings name it; installing it elsewhere is a meter move, refused by
    ``install_meter`` until then), and a reading that shows use after the close is flagged by the
    validation rules (use on an inactive account). Refused (``DomainRejected``, nothing written): an
    unknown or closed account, a time before the current holder's period, the last reading or the end of
    the last bill, a reading lower than the last one, a meter's reading missing or for another account's
    meter.
    """
    rid = check_request_id(request_id)
    when = aware(at, "the closing time")
    value = register_value(final_reading_m3, "final reading")
    payload: dict[str, Any] = {"account_id": account_id, "final_reading_m3": None if value is None else str(value),
                               "at": when.isoformat()}
    readings = clean_meter_readings(meter_readings, "final")
    if readings is not None:  # only then: a replay of an earlier request keeps its payload
        payload["meter_readings"] = {m: str(v) for m, v in readings.items()}
    stored = await claim(conn, privacy, rid, "close_account", payload, AccountClosed)
    if stored is not None:
        return stored

    now = datetime.now(UTC)
    row = await lock_account(conn, account_id)
    if row.status == "closed":
        raise DomainRejected(f"account {row.account_number} is already closed")
    holder = await current_holder(conn, account_id)
    if when < holder.valid_from or when < row.opened_at:
        raise DomainRejected("the account cannot be closed before its current holder's period began")
    meters = await account_meters(conn, account_id)
    registers = final_registers(meters, value, readings, row.account_number, "final_reading_m3")
    bill: FinalBill | None = None
    balance: Decimal | None = None
    if meters and row.billing == "postpaid":
        if registers is None:
            raise DomainRejected("a postpaid account with a meter is closed with its final reading "
                                 "(final_reading_m3; meter_readings for several meters): the final bill is "
                                 "made from it")
        bill = await bill_final_use(conn, book, row, registers, when, now, "close")
    elif meters:
        balance = await charge_prepaid_meters(conn, book, row, meters, registers, when, now, "close")
    if registers is not None and len(registers) == 1:
        value = next(iter(registers.values()))
    applied, after = await apply_credit(conn, Payments(payment_settings or PaymentSettings(), privacy), account_id,
                                        now)
    owed = after.owed + (-balance if balance is not None and balance < 0 else ZERO_MONEY)
    refund_due = after.credit + (balance if balance is not None and balance > 0 else ZERO_MONEY)
    order_id = await open_refund_order(conn, work_orders, after="close", request_id=rid, account_id=account_id,
                                       account_number=row.account_number, refund_due=refund_due, by=by, now=now)
    settlement = Settlement(bill=bill, credit_applied=applied, payment=ZERO_MONEY, owed=owed,
                            credit_left=after.credit, prepaid_balance=balance, refund_due=refund_due,
                            refund_order_id=order_id)

    await conn.execute(update(account).where(account.c.id == account_id).values(
        status="closed", closed_at=when, final_reading_m3=value, final_bill_id=bill.bill_id if bill else None))
    await conn.execute(
        update(account_holder_history).where(account_holder_history.c.id == holder.id).values(valid_to=when))
    await record_status(conn, account_id, "closed", when, _reason(value, settlement, registers))
    view = await get_account(conn, privacy, account_id)
    closed = AccountClosed(**view.model_dump(), settlement=settlement)
    await finish(conn, rid, closed)
    return closed


def _reason(value: Decimal | None, s: Settlement, registers: Mapping[str, Decimal] | None) -> str:
    if registers is not None and len(registers) > 1:
        first = "closed with final readings " + ", ".join(f"{m} {v} m³" for m, v in registers.items())
    else:
        first = f"closed with final reading {value} m³" if value is not None else "closed without a final reading"
    parts = [first]
    if s.bill is not None:
        parts.append(f"final bill {s.bill.bill_id}: {s.bill.volume_m3} m³, {s.bill.total} yuan")
    if s.credit_applied:
        parts.append(f"credit applied {s.credit_applied} yuan")
    parts.append(f"owed {s.owed} yuan" if s.owed else "nothing owed")
    if s.refund_due:
        parts.append(f"refund due {s.refund_due} yuan")
    return "; ".join(parts)


__all__ = ["close_account", "register_value"]
