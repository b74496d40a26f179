"""The holder's SMS for an issued invoice (P6.1, TAX1): ``invoice.issued`` → ``notification.requested``.

One per invoice request that became ``issued`` in this transaction, so the same answer again (a
redelivery, a second copy from the tax platform) asks for nothing. The notification id is
``invoice-<request serial>`` and the message id of the notification is the SMS gateway's ``OutId``, so
a retried send is one SMS. The phone is the current holder's, decrypted here; it travels in the
notification's personal field (masked in logs and ops output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue.messages import InvoiceKind, NotificationKind, NotificationRequested
from core.db.tables_accounts import account, customer
from core.messages import Event, Incoming
from core.privacy import FieldCipher, field_context


@dataclass(frozen=True, slots=True)
class IssuedNow:
    """An invoice request that was issued by this answer."""

    serial: str
    account_id: str
    kind: str
    invoice_number: str
    total: Decimal
    pdf_url: str | None
    cause: Incoming


async def invoice_notices(
    conn: AsyncConnection, cipher: FieldCipher, issued: Sequence[IssuedNow]
) -> list[tuple[Event, Incoming | None]]:
    if not issued:
        return []
    stmt = (select(account.c.id, account.c.account_number, customer.c.id.label("customer_id"), customer.c.phone_enc)
            .join(customer, customer.c.id == account.c.customer_id)
            .where(account.c.id.in_(sorted({i.account_id for i in issued}))))
    holders = {row.id: row for row in await conn.execute(stmt)}
    events: list[tuple[Event, Incoming | None]] = []
    for inv in issued:
        holder = holders.get(inv.account_id)
        if holder is None:
            continue
        phone = cipher.decrypt(holder.phone_enc, context=field_context(customer.name, "phone", holder.customer_id))
        params = {"account_number": holder.account_number, "invoice_number": inv.invoice_number,
                  "amount": f"{inv.total:.2f}", "red": "1" if inv.kind == InvoiceKind.RED.value else "0"}
        if inv.pdf_url:
            params["pdf_url"] = inv.pdf_url
        note = NotificationRequested(notification_id=f"invoice-{inv.serial}"[:64], kind=NotificationKind.INVOICE,
                                     account_id=inv.account_id, phone=phone, params=params)
        events.append((Event("notification.requested", note, subject=inv.account_id), inv.cause))
    return events
