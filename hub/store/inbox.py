"""The inbox: inbound partner messages deduplicated by the partner's own key.

A partner retries until it hears "OK". The first copy is stored with its envelope before it is
published; when a copy arrives again the stored envelope is returned, and if it was never confirmed
(the process died in between) it is published again under the same message id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, tuple_, update
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


async def admit_many(conn: AsyncConnection, arrivals: Sequence[tuple[str, str, Envelope, bytes]],
                     sealer: BodySealer) -> list[InboxEntry]:
    """Keep the first copy of each ``(source, partner_key, envelope, body)`` (keys distinct; sealed when
    it carries personal data); for a later copy, the first one's envelope body and whether the broker
    confirmed it. Two statements: the insert, and one read of the copies that were there before."""
    now = now_us()
    rows = [{"source": source, "partner_key": key, "message_id": envelope.id,
             "body": sealer.seal_for_resend("hub_inbox", envelope.id, body, envelope.type, envelope.version),
             "received_us": now, "published_us": None} for source, key, envelope, body in arrivals]
    inserted = {(str(r[0]), str(r[1])) for r in await insert_many(
        conn, inbox, rows, ignore_conflicts=True, returning=("source", "partner_key"))}
    seen = [(source, key) for source, key, _, _ in arrivals if (source, key) not in inserted]
    before: dict[tuple[str, str], Any] = {}
    if seen:
        before = {(r.source, r.partner_key): r for r in await conn.execute(
            select(inbox.c.source, inbox.c.partner_key, inbox.c.message_id, inbox.c.body, inbox.c.published_us)
            .where(tuple_(inbox.c.source, inbox.c.partner_key).in_(seen)))}
    entries = []
    for source, key, envelope, body in arrivals:
        if (source, key) in inserted:
            entries.append(InboxEntry(envelope.id, body, published=False, new=True))
            continue
        row = before[(source, key)]
        published = row.published_us is not None
        first = row.body if published else sealer.open("hub_inbox", row.message_id, row.body)
        entries.append(InboxEntry(row.message_id, first, published=published, new=False))
    return entries


async def mark_many_published(conn: AsyncConnection, published: Sequence[tuple[str, str, Envelope]],
                              sealer: BodySealer) -> None:
    """The broker confirmed these ``(source, partner_key, envelope)``; a plain body with personal data (no
    key configured) is redacted now. One read, one update (and one per body to redact)."""
    keys = [(source, key) for source, key, _ in published]
    now = now_us()
    bodies = {(r.source, r.partner_key): r.body for r in await conn.execute(
        select(inbox.c.source, inbox.c.partner_key, inbox.c.body).where(tuple_(inbox.c.source, inbox.c.partner_key)
                                                                         .in_(keys)))}
    plain = []
    for source, key, envelope in published:
        stored = bodies.get((source, key))
        redacted = sealer.redact(stored, envelope.type, envelope.version) if stored is not None else None
        if redacted is None:
            plain.append((source, key))
        else:
            await conn.execute(update(inbox).where(inbox.c.source == source, inbox.c.partner_key == key)
                               .values(published_us=now, body=redacted))
    if plain:
        await conn.execute(update(inbox).where(tuple_(inbox.c.source, inbox.c.partner_key).in_(plain))
                           .values(published_us=now))


async def claim_many(conn: AsyncConnection, claims: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Record each ``(source, key)``; return the ones this call inserted (a key given twice is inserted
    once). Such a row carries no message (empty id and body) and counts as published, so nothing ever
    sends it."""
    now = now_us()
    unique = sorted(set(claims))
    inserted = await insert_many(
        conn, inbox,
        [{"source": source, "partner_key": key, "message_id": "", "body": b"", "received_us": now,
          "published_us": now} for source, key in unique],
        ignore_conflicts=True, returning=("source", "partner_key"),
    )
    return {(str(row[0]), str(row[1])) for row in inserted}
