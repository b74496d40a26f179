"""Track what happened to the notifications the core asked for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue.messages import DeliveryStatus, NotificationDelivered
from core.db.tables import notification_status
from core.messages import Incoming


def _insert(conn: AsyncConnection) -> Any:
    if conn.dialect.name == "sqlite":
        return sqlite.insert(notification_status)
    return postgresql.insert(notification_status)


async def record_notification_delivery(
    conn: AsyncConnection, items: Sequence[Incoming]
) -> Sequence[Mapping[str, Any] | None]:
    """One row per notification: the provider's acceptance, then its receipt (delivered or failed).

    The acceptance (the send call's reply) and the receipt (Aliyun's comes within seconds) arrive on
    the same route and may be handled at the same time by two consumers, in either order. Each is one
    statement, so the database orders them: the acceptance only ever inserts (it never turns a
    delivered or failed notification back into an accepted one), and the receipt inserts or
    overwrites. Whatever the order, the receipt is what stays.
    """
    for item in items:
        d = item.data
        assert isinstance(d, NotificationDelivered)
        values = {
            "status": d.status.value,
            "provider_ref": d.provider_ref,
            "error": d.error,
            "updated_at": d.at.astimezone(UTC),
        }
        stmt = _insert(conn).values(notification_id=d.notification_id, **values)
        if d.status is DeliveryStatus.ACCEPTED:
            stmt = stmt.on_conflict_do_nothing(index_elements=[notification_status.c.notification_id])
        else:
            # A receipt without the provider's reference keeps the one its acceptance recorded.
            keep_ref = func.coalesce(stmt.excluded.provider_ref, notification_status.c.provider_ref)
            stmt = stmt.on_conflict_do_update(
                index_elements=[notification_status.c.notification_id], set_={**values, "provider_ref": keep_ref}
            )
        await conn.execute(stmt)
    return [None] * len(items)
