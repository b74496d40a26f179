"""The notification status row (``core.handlers.notifications``): the provider's acceptance and its
delivery receipt arrive on one route, handled by two consumers, in either order and at the same time.
Whatever the order, the receipt is what stays."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.catalogue.messages import DeliveryStatus, NotificationDelivered
from core.db.tables import notification_status
from core.handlers.notifications import record_notification_delivery
from core.messages import Incoming

AT = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def delivery(status: DeliveryStatus, ref: str | None = "BIZ-1", error: str | None = None) -> Incoming:
    data = NotificationDelivered(notification_id="N-1", status=status, provider_ref=ref, at=AT, error=error)
    return Incoming(f"msg-{status.value}", "notification.delivered", "N-1", "corr-1", data)


async def row(engine: AsyncEngine) -> tuple[str, str | None, str | None]:
    async with engine.connect() as conn:
        r = (await conn.execute(select(notification_status.c.status, notification_status.c.provider_ref,
                                       notification_status.c.error))).one()
        return r[0], r[1], r[2]


async def record(engine: AsyncEngine, item: Incoming) -> None:
    async with engine.begin() as conn:
        await record_notification_delivery(conn, [item])


@pytest.mark.parametrize("receipt", [DeliveryStatus.DELIVERED, DeliveryStatus.FAILED])
async def test_the_receipt_stays_whichever_comes_first(engine: AsyncEngine, receipt: DeliveryStatus) -> None:
    error = "isv.MOBILE_NUMBER_ILLEGAL" if receipt is DeliveryStatus.FAILED else None
    await record(engine, delivery(DeliveryStatus.ACCEPTED))
    await record(engine, delivery(receipt, ref=None, error=error))
    # A receipt without a reference keeps the acceptance's.
    assert await row(engine) == (receipt.value, "BIZ-1", error)
    # The acceptance again (a redelivery, or simply late) changes nothing.
    await record(engine, delivery(DeliveryStatus.ACCEPTED, ref="BIZ-2"))
    assert await row(engine) == (receipt.value, "BIZ-1", error)


async def test_a_late_acceptance_does_not_undo_a_receipt(engine: AsyncEngine) -> None:
    await record(engine, delivery(DeliveryStatus.FAILED, error="isv.BUSINESS_LIMIT_CONTROL"))
    await record(engine, delivery(DeliveryStatus.ACCEPTED))
    assert await row(engine) == ("failed", "BIZ-1", "isv.BUSINESS_LIMIT_CONTROL")


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)  # SQLite has one writer at a time
async def test_acceptance_and_receipt_in_concurrent_transactions(engine: AsyncEngine) -> None:
    """Both transactions find no row; the acceptance commits first. Before the fix the receipt's insert
    was ignored on conflict and the notification stayed "accepted" (seen once in CI on RabbitMQ)."""
    async with engine.connect() as first, engine.connect() as second:
        accepting = await first.begin()
        await record_notification_delivery(first, [delivery(DeliveryStatus.ACCEPTED)])
        receiving = await second.begin()
        # Blocks on the acceptance's uncommitted row until it commits.
        receipt = asyncio.create_task(
            record_notification_delivery(second, [delivery(DeliveryStatus.FAILED, error="isv.OUT_OF_SERVICE")])
        )
        await asyncio.sleep(0.2)
        assert not receipt.done()
        await accepting.commit()
        await asyncio.wait_for(receipt, 10)
        await receiving.commit()
    assert await row(engine) == ("failed", "BIZ-1", "isv.OUT_OF_SERVICE")
