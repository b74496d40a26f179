"""Reading and writing the money ledgers: account locks, open bills, credit, allocations, prepaid balances.

Every function runs on the caller's connection and transaction. Whoever moves an account's money
first takes :func:`lock_accounts` (``SELECT … FOR UPDATE`` on PostgreSQL, in id order so two
transactions never wait on each other in a circle; SQLite has one writer at a time), so the
outstanding amounts and credit read afterwards cannot change until the transaction ends.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from core.billing.money import ZERO_MONEY
from core.db.bulk import among, insert_many
from core.db.tables_accounts import account, customer
from core.db.tables_billing import bill, meter
from core.db.tables_payments import allocation, credit, payment, prepaid_entry
from core.errors import DomainRejected
from core.payments.allocation import Fund, OpenBill, Placed, Settlement, Source
from core.privacy import FieldCipher, field_context


def money(value: Any) -> Decimal:
    """A money column's value as ``Decimal`` with two places (SQLite hands back what it stored)."""
    return Decimal(value if value is not None else 0).quantize(ZERO_MONEY)


def new_id() -> str:
    return str(ULID())


async def lock_accounts(conn: AsyncConnection, account_ids: Iterable[str]) -> dict[str, Any]:
    """Lock the accounts (id order) and return them; unknown ids are simply absent."""
    ids = sorted(set(account_ids))
    if not ids:
        return {}
    stmt = (
        select(account.c.id, account.c.billing, account.c.customer_id, account.c.status)
        .where(among(conn, account.c.id, ids))
        .order_by(account.c.id)
        .with_for_update()
    )
    return {row.id: row for row in await conn.execute(stmt)}


def require_accounts(found: dict[str, Any], wanted: Iterable[str], what: str) -> None:
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise DomainRejected(
            f"unknown account {missing[0][:40]!r} in {what}: open the account first, then replay this message"
        )


async def meters_of(conn: AsyncConnection, account_ids: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    if account_ids:
        stmt = select(meter.c.account_id, meter.c.id).where(among(conn, meter.c.account_id, account_ids))
        for row in await conn.execute(stmt.order_by(meter.c.id)):
            found[row.account_id].append(row.id)
    return found


async def open_bills(conn: AsyncConnection, account_ids: Sequence[str]) -> dict[str, list[OpenBill]]:
    """Per account, its issued bills that still owe money."""
    paid = (
        select(allocation.c.bill_id, func.sum(allocation.c.amount).label("paid"))
        .where(among(conn, allocation.c.account_id, account_ids))
        .group_by(allocation.c.bill_id)
        .subquery()
    )
    stmt = (
        select(bill.c.id, bill.c.account_id, bill.c.period_start, bill.c.created_at, bill.c.total, paid.c.paid)
        .outerjoin(paid, paid.c.bill_id == bill.c.id)
        .where(among(conn, bill.c.account_id, account_ids), bill.c.status == "issued")
    )
    found: dict[str, list[OpenBill]] = defaultdict(list)
    for row in await conn.execute(stmt):
        outstanding = money(row.total) - money(row.paid)
        if outstanding > 0:
            found[row.account_id].append(OpenBill(row.id, row.period_start, row.created_at, outstanding))
    return found


async def unused_credit(conn: AsyncConnection, account_ids: Sequence[str]) -> dict[str, list[Fund]]:
    """Per account, each payment's credit still unspent, oldest payment first."""
    stmt = (
        select(credit.c.account_id, credit.c.payment_id, payment.c.paid_at, func.sum(credit.c.amount).label("left"))
        .join(payment, payment.c.id == credit.c.payment_id)
        .where(among(conn, credit.c.account_id, account_ids))
        .group_by(credit.c.account_id, credit.c.payment_id, payment.c.paid_at)
    )
    rows = sorted(await conn.execute(stmt), key=lambda r: (r.paid_at, r.payment_id))
    found: dict[str, list[Fund]] = defaultdict(list)
    for row in rows:
        if money(row.left) > 0:
            found[row.account_id].append(Fund(row.payment_id, money(row.left), Source.CREDIT))
    return found


async def write_settlement(
    conn: AsyncConnection, account_id: str, settled: Settlement, now: datetime
) -> None:
    """Allocation rows for the shares; credit spent (``applied``) and kept (``overpayment``)."""
    allocations: list[dict[str, Any]] = []
    credits: list[dict[str, Any]] = []
    for share in settled.shares:
        allocations.append({"id": new_id(), "payment_id": share.payment_id, "bill_id": share.bill_id,
                            "account_id": account_id, "kind": share.source.value, "amount": share.amount,
                            "refund_row_id": None, "created_at": now})
        if share.source is Source.CREDIT:
            credits.append({"id": new_id(), "account_id": account_id, "payment_id": share.payment_id,
                            "kind": "applied", "amount": -share.amount, "bill_id": share.bill_id,
                            "refund_row_id": None, "created_at": now})
    credits.extend(
        {"id": new_id(), "account_id": account_id, "payment_id": fund.payment_id, "kind": "overpayment",
         "amount": fund.amount, "bill_id": None, "refund_row_id": None, "created_at": now}
        for fund in settled.left
        if fund.source is Source.PAYMENT
    )
    await insert_many(conn, allocation, allocations)
    await insert_many(conn, credit, credits)


async def payment_holdings(conn: AsyncConnection, payment_id: str) -> tuple[Decimal, list[Placed]]:
    """A payment's unused credit, and its net money on each bill."""
    left = await conn.scalar(select(func.sum(credit.c.amount)).where(credit.c.payment_id == payment_id))
    stmt = (
        select(allocation.c.bill_id, bill.c.period_start, bill.c.created_at,
               func.sum(allocation.c.amount).label("amount"))
        .join(bill, bill.c.id == allocation.c.bill_id)
        .where(allocation.c.payment_id == payment_id)
        .group_by(allocation.c.bill_id, bill.c.period_start, bill.c.created_at)
    )
    placed = [Placed(r.bill_id, r.period_start, r.created_at, money(r.amount)) for r in await conn.execute(stmt)]
    return money(left), [p for p in placed if p.amount > 0]


async def write_take_back(
    conn: AsyncConnection, *, account_id: str, payment_id: str, refund_row_id: str, from_credit: Decimal,
    from_bills: Sequence[tuple[str, Decimal]], now: datetime,
) -> None:
    """Reversing rows: negative credit (``refund``) and negative allocations (``reversal``)."""
    if from_credit > 0:
        await insert_many(conn, credit, [{
            "id": new_id(), "account_id": account_id, "payment_id": payment_id, "kind": "refund",
            "amount": -from_credit, "bill_id": None, "refund_row_id": refund_row_id, "created_at": now}])
    await insert_many(conn, allocation, [
        {"id": new_id(), "payment_id": payment_id, "bill_id": bill_id, "account_id": account_id, "kind": "reversal",
         "amount": -amount, "refund_row_id": refund_row_id, "created_at": now}
        for bill_id, amount in from_bills
    ])


async def move_prepaid(
    conn: AsyncConnection, *, meter_id: str, account_id: str, payment_id: str, amount: Decimal,
    refund_row_id: str | None, now: datetime,
) -> Decimal:
    """Add ``amount`` (negative for a refund) to the meter's prepaid balance; returns the new balance.

    The balance is read under a row lock and written back, and the entry records the balance after.
    A top-up re-arms the low-balance reminder (``core.prepaid``). Nothing here opens or closes a valve:
    a valve closed at zero reopens only after an on-site check (``core.valves``).
    """
    current = await conn.scalar(select(meter.c.prepaid_balance).where(meter.c.id == meter_id).with_for_update())
    balance = money(current) + amount
    rearm = {"prepaid_low_notified": False} if amount > 0 else {}
    await conn.execute(update(meter).where(meter.c.id == meter_id).values(prepaid_balance=balance, **rearm))
    await insert_many(conn, prepaid_entry, [{
        "id": new_id(), "meter_id": meter_id, "account_id": account_id, "payment_id": payment_id,
        "refund_row_id": refund_row_id, "kind": "top_up" if amount > 0 else "refund", "amount": amount,
        "balance_after": balance, "created_at": now}])
    return balance


async def topped_up_meter(conn: AsyncConnection, payment_id: str) -> str | None:
    """The meter a payment topped up, or ``None`` when it went to bills."""
    return await conn.scalar(
        select(prepaid_entry.c.meter_id).where(prepaid_entry.c.payment_id == payment_id,
                                               prepaid_entry.c.kind == "top_up").limit(1))


async def holder_names(conn: AsyncConnection, cipher: FieldCipher, account_ids: Sequence[str]) -> dict[str, str]:
    """The current holder's name per account, decrypted (for the invoice's buyer; never logged)."""
    stmt = (
        select(account.c.id, customer.c.id.label("customer_id"), customer.c.name_enc)
        .join(customer, customer.c.id == account.c.customer_id)
        .where(among(conn, account.c.id, account_ids))
    )
    return {
        row.id: cipher.decrypt(row.name_enc, context=field_context(customer.name, "name", row.customer_id))
        for row in await conn.execute(stmt)
    }
