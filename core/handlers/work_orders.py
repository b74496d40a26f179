"""Open the work orders the reading validation asks for (E1): ``work_order.requested`` → an order.

The request's ``kind`` (inspection, zero_use_check, communication, actual_read, theft_inspection) is
the order's category, whose SLA commitment sets its deadline; its ``severity`` sets the priority. The
order's ``source`` is ``request:<work_order_id>``, and that id is derived from what caused the request,
so a request delivered or sent again opens one order. A kind the calendar has no category for is
refused (``DomainRejected``: dead-lettered with the reason, replayable once the category is configured).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue.messages import WorkOrderRequested
from core.messages import Incoming
from core.workorders import NewWorkOrder, Priority, WorkOrderSettings, open_work_orders

PRIORITY_OF_SEVERITY = {"critical": Priority.EMERGENCY, "error": Priority.HIGH, "warning": Priority.NORMAL,
                        "info": Priority.LOW}
REQUEST_ACTOR = "core.readings"


class WorkOrderRequests:
    """``core:open_work_order`` bound to the deployment's categories and calendar."""

    def __init__(self, work_orders: WorkOrderSettings, clock: Callable[[], datetime] | None = None) -> None:
        self.work_orders = work_orders
        self.clock = clock or (lambda: datetime.now(UTC))

    async def open_work_order(self, conn: AsyncConnection,
                              items: Sequence[Incoming]) -> Sequence[Mapping[str, Any] | None]:
        orders = []
        for item in items:
            w = item.data
            assert isinstance(w, WorkOrderRequested)
            orders.append(NewWorkOrder(
                source=f"request:{w.work_order_id}", category=w.kind,
                priority=PRIORITY_OF_SEVERITY.get(w.severity, Priority.NORMAL), correlation_id=item.correlation_id,
                account_id=w.account_id, meter_id=w.meter_id,
                summary=f"{w.kind} ({w.rule}, {w.severity}): {w.reason}"[:500]))
        await open_work_orders(conn, orders, self.work_orders, by=REQUEST_ACTOR, now=self.clock())
        return [None] * len(items)
