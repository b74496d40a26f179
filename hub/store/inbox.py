"""The inbox: inbound partner messages deduplicated by the partner's own key.

A partner retries until it hears "OK". The first copy is stored with its envelope before it is
published; when a copy arrives again the stored envelope is returned, and if it was never confirmed
(the process died in between) it is published again under the same message id.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.bulk import insert_many
from hub.store.audit import now_us
from hub.store.tables import inbox


@dataclass(frozen=True, slots=True)
class InboxEntry:
    message_id: str
    body: bytes
    published: bool
    new: bool


async def admit(conn: AsyncConnection, source: str, partner_key: str, message_id: str, body: bytes) -> InboxEntry:
    inserted = await insert_many(
        conn, inbox,
        [{"source": source, "partner_key": partner_key, "message_id": message_id, "body": body,
          "received_us": now_us(), "published_us": None}],
        ignore_conflicts=True, returning=("message_id",),
    )
    if inserted:
        return InboxEntry(message_id, body, published=False, new=True)
    row = (await conn.execute(
        select(inbox.c.message_id, inbox.c.body, inbox.c.published_us).where(
            inbox.c.source == source, inbox.c.partner_key == partner_key)
    )).one()
    return InboxEntry(row.message_id, row.body, published=row.published_us is not None, new=False)


async def mark_published(conn: AsyncConnection, source: str, partner_key: str) -> None:
    await conn.execute(
        update(inbox).where(inbox.c.source == source, inbox.c.partner_key == partner_key)
        .values(published_us=now_us())
    )
