"""Tell the account holder about a new bill (U5, P6.1): ``bill.issued`` → ``notification.requested``.

The phone is the current holder's, decrypted here (it travels in the notification's personal field,
masked in logs and ops output). The notification id is ``bill-<bill id>``, so staff find the SMS of a
bill; the route's processed ledger turns a redelivered ``bill.issued`` into a duplicate, and the
notification's message id is the gateway's ``OutId``, so a retried send is one SMS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.accounts import Privacy
from core.catalogue.messages import BillIssued, NotificationKind, NotificationRequested
from core.config import CoreConfig
from core.db.tables_accounts import account, customer
from core.errors import DomainRejected
from core.messages import Event, Incoming
from core.outbox import emit
from core.payments import KeysMissing
from core.privacy import field_context


def _yuan(value: Decimal) -> str:
    return f"{value:.2f}"


class BillNotifier:
    def __init__(self, config: CoreConfig) -> None:
        self.privacy = config.privacy

    async def notify_bill(self, conn: AsyncConnection, items: Sequence[Incoming]) -> Sequence[Mapping[str, Any] | None]:
        if self.privacy is None:
            raise KeysMissing("the bill's SMS needs the holder's phone, which is encrypted, and personal-data keys "
                              "are not configured: set GASHUB_CORE__KEYS__<id> (and GASHUB_CORE__CURRENT_KEY), "
                              "restart, then replay this message")
        return await _notify(conn, items, self.privacy)


async def _notify(
    conn: AsyncConnection, items: Sequence[Incoming], privacy: Privacy
) -> Sequence[Mapping[str, Any] | None]:
    bills = []
    for item in items:
        assert isinstance(item.data, BillIssued)
        bills.append((item, item.data))
    ids = sorted({b.account_id for _, b in bills})
    rows = (
        await conn.execute(
            select(account.c.id, account.c.account_number, account.c.status, customer.c.id.label("customer_id"),
                   customer.c.phone_enc)
            .join(customer, customer.c.id == account.c.customer_id)
            .where(account.c.id.in_(ids))
        )
    ).all()
    holders = {row.id: row for row in rows}
    events = []
    for item, bill in bills:
        holder = holders.get(bill.account_id)
        if holder is None:
            raise DomainRejected(f"bill {bill.bill_id}: account {bill.account_id} does not exist")
        phone = privacy.cipher.decrypt(
            holder.phone_enc, context=field_context(customer.name, "phone", holder.customer_id)
        )
        note = NotificationRequested(
            notification_id=f"bill-{bill.bill_id}",
            kind=NotificationKind.BILL,
            account_id=bill.account_id,
            phone=phone,
            params={
                "account_number": holder.account_number,
                "period": f"{bill.period_start.isoformat()}..{bill.period_end.isoformat()}",
                "volume_m3": f"{bill.volume_m3:.3f}",
                "amount": _yuan(bill.total),
                "bill_id": bill.bill_id,
            },
        )
        events.append((Event("notification.requested", note, subject=bill.account_id), item))
    await emit(conn, events)
    return [None] * len(items)
