"""Payments, refunds and the tax system's answers (domain issue item 6). See :mod:`core.payments.service`.

The handlers are bound to the deployment's :class:`~core.config.CoreConfig` (invoice policy and
personal-data keys) by :func:`core.handlers.build_handlers`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from core.config import CoreConfig
from core.messages import Incoming
from core.outbox import emit
from core.payments import Payments
from core.payments.service import utc_now


class PaymentHandlers:
    def __init__(self, config: CoreConfig, clock: Callable[[], datetime] = utc_now) -> None:
        self.payments = Payments(config.payments, config.privacy)
        self.clock = clock

    async def record_payment(
        self, conn: AsyncConnection, items: Sequence[Incoming]
    ) -> Sequence[Mapping[str, Any] | None]:
        await emit(conn, await self.payments.record(conn, items, self.clock()))
        return [None] * len(items)

    async def record_refund(
        self, conn: AsyncConnection, items: Sequence[Incoming]
    ) -> Sequence[Mapping[str, Any] | None]:
        await emit(conn, await self.payments.refund(conn, items, self.clock()))
        return [None] * len(items)

    async def record_invoice_issued(
        self, conn: AsyncConnection, items: Sequence[Incoming]
    ) -> Sequence[Mapping[str, Any] | None]:
        await emit(conn, await self.payments.invoice_issued(conn, items, self.clock()))
        return [None] * len(items)

    async def record_invoice_failed(
        self, conn: AsyncConnection, items: Sequence[Incoming]
    ) -> Sequence[Mapping[str, Any] | None]:
        await self.payments.invoice_failed(conn, items, self.clock())
        return [None] * len(items)
