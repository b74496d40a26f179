"""Track what happened to the notifications the core asked for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue.messages import DeliveryStatus, NotificationDelivered
from core.db.bulk import insert_many
from core.db.tables import notification_status
from core.messages import Incoming


async def record_notification_delivery(
    conn: AsyncConnection, items: Sequence[Incoming]
) -> Sequence[Mapping[str, Any] | None]:
    for item in items:
        d = item.data
        assert isinstance(d, NotificationDelivered)
        values = {
            "status": d.status.value,
            "provider_ref": d.provider_ref,
            "error": d.error,
            "updated_at": d.at.astimezone(UTC),
        }
        stmt = update(notification_status).where(notification_status.c.notification_id == d.notification_id)
        if d.status is DeliveryStatus.ACCEPTED:
            # The provider's acceptance may be recorded after its delivery receipt (Aliyun's come within
            # seconds): it never turns a delivered or failed notification back into an accepted one.
            stmt = stmt.where(notification_status.c.status == DeliveryStatus.ACCEPTED.value)
        result = await conn.execute(stmt.values(**values))
        if result.rowcount == 0:
            await insert_many(
                conn, notification_status, [{"notification_id": d.notification_id, **values}],
                ignore_conflicts=True,
            )
    return [None] * len(items)
