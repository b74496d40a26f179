"""A refund due after a close or a transfer becomes a work order for its payout.

The settlement leaves the money where it is recorded (the credit ledger, a prepaid meter's balance):
someone has to pay it out, through the channel it came in by (its ``payment.refunded`` takes it from
the ledger) or at the counter. Without an order that is a figure in a status history that nobody is
asked to act on. The order (category ``refund``, in the work-order loop with its SLA, overdue marks
and history) names the account and the amount; it is opened in the close's or transfer's own
transaction, once per request (its ``source`` is the request id, so a replay opens nothing).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from core.db.tables_workorders import work_order
from core.workorders import NewWorkOrder, Priority, WorkOrderSettings, open_work_orders

REFUND_CATEGORY = "refund"


async def open_refund_order(
    conn: AsyncConnection, settings: WorkOrderSettings, *, after: Literal["close", "transfer"], request_id: str,
    account_id: str, account_number: str, refund_due: Decimal, by: str, now: datetime,
) -> str | None:
    """The refund order's id, or None when nothing is due."""
    if refund_due <= 0:
        return None
    source = f"refund:{after}:{request_id}"
    what = "closed" if after == "close" else "transferred to a new holder"
    summary = (f"Account {account_number} was {what}: {refund_due} yuan is due back to its "
               f"{'holder' if after == 'close' else 'previous holder'}. Pay it out through the channel it "
               "was paid by (the channel's refund takes it from the account) or at the counter, then "
               "close this order.")
    opened = await open_work_orders(conn, [NewWorkOrder(
        source=source, category=REFUND_CATEGORY, priority=Priority.NORMAL, correlation_id=str(ULID()),
        account_id=account_id, summary=summary)], settings, by=by, now=now)
    if source in opened:
        return opened[source]
    return str((await conn.execute(select(work_order.c.id).where(work_order.c.source == source))).scalar_one())


__all__ = ["REFUND_CATEGORY", "open_refund_order"]
