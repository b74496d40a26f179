"""The inbox: inbound partner messages deduplicated by the partner's own key.

A partner retries until it hears "OK". The first copy is stored with its envelope before it is
published; when a copy arrives again the stored envelope is returned, and if it was never confirmed
(the process died in between) it is published again under the same message id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.bulk import among, insert_many
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


@dataclass(frozen=True, slots=True)
class Arrival:
    """One partner message to admit: its connector, the partner's key, the envelope and its body."""

    source: str
    partner_key: str
    envelope: Envelope
    body: bytes


async def admit_many(conn: AsyncConnection, arrivals: Sequence[Arrival], sealer: BodySealer) -> list[InboxEntry]:
    """Keep the first copy of each (sealed when it carries personal data; distinct ``(source,
    partner_key)`` in one call); for a later copy, the first one's envelope body and whether the broker
    confirmed it. One insert, and one read per connector for the keys that were there already."""
    if not arrivals:
        return []
    received = now_us()
    inserted = await insert_many(
        conn, inbox,
        [{"source": a.source, "partner_key": a.partner_key, "message_id": a.envelope.id,
          "body": sealer.seal_for_resend("hub_inbox", a.envelope.id, a.body, a.envelope.type, a.envelope.version),
          "received_us": received, "published_us": None} for a in arrivals],
        ignore_conflicts=True, returning=("message_id",),
    )
    new = {r[0] for r in inserted}
    earlier: dict[tuple[str, str], InboxEntry] = {}
    by_source: dict[str, list[str]] = {}
    for a in arrivals:
        if a.envelope.id not in new:
            by_source.setdefault(a.source, []).append(a.partner_key)
    for source, keys in by_source.items():
        rows = await conn.execute(select(inbox.c.partner_key, inbox.c.message_id, inbox.c.body, inbox.c.published_us)
                                  .where(inbox.c.source == source, among(conn, inbox.c.partner_key, keys)))
        for row in rows:
            published = row.published_us is not None
            first = row.body if published else sealer.open("hub_inbox", row.message_id, row.body)
            earlier[(source, row.partner_key)] = InboxEntry(row.message_id, first, published=published, new=False)
    return [InboxEntry(a.envelope.id, a.body, published=False, new=True) if a.envelope.id in new
            else earlier[(a.source, a.partner_key)] for a in arrivals]


async def mark_published_many(conn: AsyncConnection, arrivals: Sequence[Arrival], sealer: BodySealer) -> None:
    """``mark_published`` for many at once: one update per connector, except for the bodies that must be
    redacted now (personal data and no key), which go one by one."""
    published = now_us()
    plain: dict[str, list[str]] = {}
    for a in arrivals:
        if sealer.cipher is None and sealer.personal_fields(a.envelope.type, a.envelope.version):
            await mark_published(conn, a.source, a.partner_key, a.envelope, sealer)
        else:
            plain.setdefault(a.source, []).append(a.partner_key)
    for source, keys in plain.items():
        await conn.execute(update(inbox).where(inbox.c.source == source, among(conn, inbox.c.partner_key, keys))
                           .values(published_us=published))


async def claim_many(conn: AsyncConnection, claims: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Record each ``(source, key)``; return the ones this call inserted (a key given twice is inserted
    once). Such a row carries no message (empty id and body) and counts as published, so nothing ever
    sends it."""
    now = now_us()
    inserted = await insert_many(
        conn, inbox,
        [{"source": source, "partner_key": key, "message_id": "", "body": b"", "received_us": now,
          "published_us": now} for source, key in sorted(set(claims))],
        ignore_conflicts=True, returning=("source", "partner_key"),
    )
    return {(str(row[0]), str(row[1])) for row in inserted}
