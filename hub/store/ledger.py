"""The per-route processed ledger: a redelivered message never repeats its effect.

For core targets the ledger row is written in the same transaction as the core's state change, so
the two commit or vanish together. For connector targets it is written after the partner answered;
connectors pass the message id as the partner's idempotency key for the window in between.
A reply (request-reply routes) is kept with the row so that a redelivery publishes it again
instead of losing it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.bulk import insert_columns
from hub.store.audit import now_us
from hub.store.tables import processed


async def claim(
    conn: AsyncConnection, route: str, items: Sequence[tuple[str, bytes | None]]
) -> set[str]:
    """Record ``(message_id, reply)`` as processed; return the ids that were not processed before."""
    if not items:
        return set()
    columns: dict[str, list[Any]] = {"route": [route] * len(items), "message_id": [mid for mid, _ in items],
               "processed_us": [now_us()] * len(items), "reply": [reply for _, reply in items]}
    # Claims are new unless a message comes again (a redelivery, a partner's resend): COPY first.
    inserted = await insert_columns(conn, processed, columns, ignore_conflicts=True, returning=("message_id",),
                                    mostly_new=True)
    return {r[0] for r in inserted}


async def already_processed(
    conn: AsyncConnection, route: str, message_ids: Sequence[str]
) -> dict[str, bytes | None]:
    """The ids among ``message_ids`` that this route has processed, with their stored replies."""
    if not message_ids:
        return {}
    result = await conn.execute(
        select(processed.c.message_id, processed.c.reply).where(
            processed.c.route == route, processed.c.message_id.in_(list(message_ids))
        )
    )
    return {mid: reply for mid, reply in result}


def encode_reply(reply: Mapping[str, Any] | None) -> bytes | None:
    return None if reply is None else orjson.dumps(dict(reply), default=str)


def decode_reply(raw: bytes | None) -> dict[str, Any] | None:
    return None if raw is None else dict(orjson.loads(raw))


async def store_replies(
    conn: AsyncConnection, route: str, replies: Sequence[tuple[str, Mapping[str, Any] | None]]
) -> None:
    for key, reply in replies:
        await conn.execute(
            update(processed)
            .where(processed.c.route == route, processed.c.message_id == key)
            .values(reply=encode_reply(reply))
        )
