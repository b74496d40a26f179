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
from hub.envelope import Envelope
from hub.store.audit import now_us
from hub.store.sealing import BodySealer
from hub.store.tables import inbox


@dataclass(frozen=True, slots=True)
class InboxEntry:
    message_id: str
    body: bytes
    published: bool
    new: bool


async def admit(conn: AsyncConnection, source: str, partner_key: str, envelope: Envelope, body: bytes,
                sealer: BodySealer) -> InboxEntry:
    """Keep the first copy (sealed when it carries personal data); for a later copy, the first one's
    envelope body and whether the broker confirmed it."""
    stored = sealer.seal_for_resend("hub_inbox", envelope.id, body, envelope.type, envelope.version)
    inserted = await insert_many(
        conn, inbox,
        [{"source": source, "partner_key": partner_key, "message_id": envelope.id, "body": stored,
          "received_us": now_us(), "published_us": None}],
        ignore_conflicts=True, returning=("message_id",),
    )
    if inserted:
        return InboxEntry(envelope.id, body, published=False, new=True)
    row = (await conn.execute(
        select(inbox.c.message_id, inbox.c.body, inbox.c.published_us).where(
            inbox.c.source == source, inbox.c.partner_key == partner_key)
    )).one()
    published = row.published_us is not None
    first = row.body if published else sealer.open("hub_inbox", row.message_id, row.body)
    return InboxEntry(row.message_id, first, published=published, new=False)


async def mark_published(conn: AsyncConnection, source: str, partner_key: str, envelope: Envelope,
                         sealer: BodySealer) -> None:
    """The broker confirmed it; a plain body with personal data (no key configured) is redacted now."""
    values: dict[str, object] = {"published_us": now_us()}
    row = (await conn.execute(select(inbox.c.body).where(inbox.c.source == source,
                                                         inbox.c.partner_key == partner_key))).first()
    redacted = sealer.redact(row.body, envelope.type, envelope.version) if row is not None else None
    if redacted is not None:
        values["body"] = redacted
    await conn.execute(update(inbox).where(inbox.c.source == source, inbox.c.partner_key == partner_key)
                       .values(**values))


async def claim_once(conn: AsyncConnection, source: str, key: str) -> bool:
    """Record ``key`` under ``source``; True only for the call that inserted it. Such a row carries no
    message (empty id and body) and counts as published, so nothing ever sends it."""
    now = now_us()
    inserted = await insert_many(
        conn, inbox,
        [{"source": source, "partner_key": key, "message_id": "", "body": b"", "received_us": now,
          "published_us": now}],
        ignore_conflicts=True, returning=("partner_key",),
    )
    return bool(inserted)
