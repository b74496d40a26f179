"""Transfer of ownership (过户): the old holder's period billed and settled, or its debt carried.

See :func:`transfer_account`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from core.accounts.idempotency import check_request_id, claim, finish
from core.accounts.models import ARREARS_POLICIES, ArrearsPolicy, CustomerIn, Privacy
from core.accounts.service import aware, clean_customer, current_holder, get_account, insert_customer, lock_account
from core.billing import TariffBook
from core.billing.money import ZERO_MONEY
from core.db.tables_accounts import account, account_holder_history, customer
from core.errors import DomainRejected
from core.lifecycle.final_use import (
    account_meters,
    bill_final_use,
    charge_prepaid_meters,
    clean_meter_readings,
    final_registers,
    register_value,
)
from core.lifecycle.models import AccountTransferred, ArrearsOutstanding, FinalBill, Settlement
from core.lifecycle.refund_order import open_refund_order
from core.lifecycle.settlement import apply_credit, pay_at_counter, position
from core.payments import Payments, PaymentSettings
from core.payments.allocation import check_money
from core.workorders import DEFAULT_WORK_ORDERS, WorkOrderSettings


async def transfer_account(
    conn: AsyncConnection,
    privacy: Privacy,
    request_id: str,
    account_id: str,
    new_customer: CustomerIn,
    arrears_policy: ArrearsPolicy,
    effective: datetime,
    *,
    book: TariffBook,
    transfer_reading_m3: Decimal | None = None,
    settlement_payment: Decimal | None = None,
    payment_settings: PaymentSettings | None = None,
    work_orders: WorkOrderSettings = DEFAULT_WORK_ORDERS,
    by: str = "system",
    meter_readings: Mapping[str, Decimal] | None = None,
) -> AccountTransferred:
    """Transfer the account to ``new_customer`` from ``effective`` on, in the caller's transaction;
    idempotent by ``request_id``.

    With ``transfer_reading_m3`` the old holder's use is closed off first: the reading is stored (source
    ``final``) and, on a postpaid account, billed from the end of the last bill through the day of
    ``effective``, priced by ``book`` like the monthly run (which then bills only the rest of that
    month); on a prepaid one it is charged to the balance. Unused credit then pays the open bills.

    * ``settle`` (needs the reading on a postpaid account with a meter): the old holder pays up. While
      anything is owed the transfer is refused with :class:`~core.lifecycle.models.ArrearsOutstanding`
      (its ``owed`` says how much), unless ``settlement_payment`` is exactly that amount: it is recorded
      as a payment (channel ``counter``, transaction id ``request_id``; allocated oldest bill first and
      invoiced like any payment). A payment when nothing is owed, or of another amount, is refused.
      Credit left after the bills is the old holder's (``refund_due``): it stays in the credit ledger
      until the channel refunds it (``payment.refunded``), so refund it before the next billing run,
      which would otherwise spend it on the new holder's first bill: the ``refund`` work order
      (``refund_order_id``) asks for that payout.
    * ``carry``: what is owed stays on the account; the new holder's period records it
      (``arrears_carried``). A settlement payment is refused (pay it as an ordinary payment).

    A prepaid meter's balance stays on the meter, with the account. Refusals (``DomainRejected``) write
    nothing: the caller's transaction rolls back, the settlement payment and the bill with it.
    """
    rid = check_request_id(request_id)
    person = clean_customer(new_customer)
    at = aware(effective, "the transfer's effective time")
    if arrears_policy not in ARREARS_POLICIES:
        raise DomainRejected(f"unknown arrears policy {arrears_policy!r}: expected settle or carry")
    value = register_value(transfer_reading_m3, "transfer reading")
    paying = None if settlement_payment is None else _payment(settlement_payment)
    payload: dict[str, Any] = {
        "account_id": account_id, "customer": person.model_dump(), "arrears": arrears_policy,
        "effective": at.isoformat(), "reading": None if value is None else str(value),
        "payment": None if paying is None else str(paying)}
    readings = clean_meter_readings(meter_readings, "transfer")
    if readings is not None:  # only then: a replay of an earlier request keeps its payload
        payload["meter_readings"] = {m: str(v) for m, v in readings.items()}
    stored = await claim(conn, privacy, rid, "transfer_account", payload, AccountTransferred)
    if stored is not None:
        return stored

    now = datetime.now(UTC)
    row = await lock_account(conn, account_id)
    if row.status == "closed":
        raise DomainRejected(f"account {row.account_number} is closed: a closed account cannot be transferred")
    holder = await current_holder(conn, account_id)
    if at <= holder.valid_from:
        raise DomainRejected("the transfer must take effect after the current holder's period began")
    holder_bidx = (
        await conn.execute(select(customer.c.id_number_bidx).where(customer.c.id == row.customer_id))
    ).scalar_one()
    if privacy.index.matches(person.id_number, holder_bidx, purpose="id_number"):
        raise DomainRejected("the new customer already holds this account")
    if arrears_policy == "carry" and paying is not None:
        raise DomainRejected("a carry transfer takes no settlement payment: the debt stays on the account; "
                             "pay it as an ordinary payment, or transfer with settle")

    meters = await account_meters(conn, account_id)
    registers = final_registers(meters, value, readings, row.account_number, "transfer_reading_m3")
    bill: FinalBill | None = None
    balance: Decimal | None = None
    if meters and row.billing == "postpaid":
        if registers is not None:
            bill = await bill_final_use(conn, book, row, registers, at, now, "transfer")
        elif arrears_policy == "settle":
            raise DomainRejected("a settle transfer of a postpaid account bills the old holder up to the transfer: "
                                 "give the transfer reading (transfer_reading_m3; meter_readings for several "
                                 "meters)")
    elif meters:
        balance = await charge_prepaid_meters(conn, book, row, meters, registers, at, now, "transfer")
    payments = Payments(payment_settings or PaymentSettings(), privacy)
    applied, after = await apply_credit(conn, payments, account_id, now)
    paid = ZERO_MONEY
    if arrears_policy == "settle":
        if after.owed and paying is None:
            raise ArrearsOutstanding(after.owed, f"account {row.account_number} owes {after.owed} yuan: a settle "
                                     "transfer needs it paid first (send it as settlement_payment), or carry it")
        if paying is not None and paying != after.owed:
            if not after.owed:
                raise DomainRejected("nothing is owed: leave out the settlement payment")
            raise ArrearsOutstanding(after.owed, f"account {row.account_number} owes {after.owed} yuan; the "
                                     f"settlement payment of {paying} yuan must be exactly that")
        if paying is not None:
            await pay_at_counter(conn, payments, account_id, rid, paying, now)
            paid = paying
            after = await position(conn, account_id)
    carried = after.owed if arrears_policy == "carry" else ZERO_MONEY
    refund_due = after.credit if arrears_policy == "settle" else ZERO_MONEY
    order_id = await open_refund_order(conn, work_orders, after="transfer", request_id=rid, account_id=account_id,
                                       account_number=row.account_number, refund_due=refund_due, by=by, now=now)
    settlement = Settlement(bill=bill, credit_applied=applied, payment=paid, owed=after.owed, credit_left=after.credit,
                            prepaid_balance=balance, refund_due=refund_due, refund_order_id=order_id)

    customer_id = await insert_customer(conn, privacy, person, now)
    await conn.execute(
        update(account_holder_history).where(account_holder_history.c.id == holder.id).values(valid_to=at))
    await conn.execute(insert(account_holder_history).values(
        id=str(ULID()), account_id=account_id, customer_id=customer_id, valid_from=at, arrears_policy=arrears_policy,
        arrears_carried=carried))
    await conn.execute(update(account).where(account.c.id == account_id).values(customer_id=customer_id))
    view = await get_account(conn, privacy, account_id)
    moved = AccountTransferred(**view.model_dump(), outcome="carried" if arrears_policy == "carry" else "settled",
                               arrears_carried=carried, settlement=settlement)
    await finish(conn, rid, moved)
    return moved


def _payment(amount: Decimal) -> Decimal:
    try:
        value = check_money(amount, "settlement payment")
    except (TypeError, ValueError) as exc:
        raise DomainRejected(str(exc)) from None
    if not value:
        raise DomainRejected("a settlement payment must be more than 0 yuan")
    return value
