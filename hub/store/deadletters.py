"""Dead-letter records: what failed for good, why, and what happened to it afterwards."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.bulk import insert_many
from hub.ids import new_id
from hub.store.audit import now_us
from hub.store.sealing import BodySealer
from hub.store.tables import dead_letter

KEEP_BODY_BYTES = 1_048_576


class DeadLetterStatus(StrEnum):
    OPEN = "open"
    REPLAYING = "replaying"
    REPLAYED = "replayed"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message_id: str
    route: str
    reason: str
    error_class: str
    attempts: int
    body: bytes
    correlation_id: str | None = None
    type: str | None = None


async def record(conn: AsyncConnection, letters: Sequence[DeadLetter], sealer: BodySealer) -> list[str]:
    """Record dead letters; one already open for the same route, message and attempt is not doubled
    (a batch redelivered after a crash between commit and ack dead-letters the same message again)."""
    if not letters:
        return []
    existing = await conn.execute(
        select(dead_letter.c.route, dead_letter.c.message_id, dead_letter.c.attempts).where(
            dead_letter.c.message_id.in_([d.message_id for d in letters]),
            dead_letter.c.status == DeadLetterStatus.OPEN.value,
        )
    )
    known: set[tuple[str, str, int]] = {(r.route, r.message_id, r.attempts) for r in existing}
    stamp = now_us()
    rows: list[dict[str, Any]] = []
    for d in letters:
        if (d.route, d.message_id, d.attempts) in known:
            continue
        known.add((d.route, d.message_id, d.attempts))
        letter_id = new_id()
        rows.append(
            {
                "id": letter_id,
                "message_id": d.message_id,
                "correlation_id": d.correlation_id,
                "type": d.type,
                "route": d.route,
                "reason": d.reason[:4000],
                "error_class": d.error_class,
                "attempts": d.attempts,
                "dead_us": stamp,
                "body": sealer.seal("hub_dead_letter", letter_id, d.body[:KEEP_BODY_BYTES], d.type, None),
                "body_truncated": int(len(d.body) > KEEP_BODY_BYTES),
                "sha256": hashlib.sha256(d.body).hexdigest(),
                "status": DeadLetterStatus.OPEN.value,
            }
        )
    await insert_many(conn, dead_letter, rows)
    return [str(r["id"]) for r in rows]


async def get(conn: AsyncConnection, dead_letter_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(dead_letter).where(dead_letter.c.id == dead_letter_id))).first()
    return {str(k): v for k, v in row._mapping.items()} if row else None


async def search(
    conn: AsyncConnection, *, route: str | None = None, status: str | None = None, limit: int = 100,
    before_id: str | None = None,
) -> list[dict[str, Any]]:
    stmt = select(dead_letter).order_by(dead_letter.c.id.desc()).limit(limit)
    if route:
        stmt = stmt.where(dead_letter.c.route == route)
    if status:
        stmt = stmt.where(dead_letter.c.status == status)
    if before_id:
        stmt = stmt.where(dead_letter.c.id < before_id)
    return [{str(k): v for k, v in r._mapping.items()} for r in await conn.execute(stmt)]


async def count_open(conn: AsyncConnection) -> dict[str, int]:
    stmt = (
        select(dead_letter.c.route, func.count())
        .where(dead_letter.c.status == DeadLetterStatus.OPEN.value)
        .group_by(dead_letter.c.route)
    )
    return {route: int(n) for route, n in await conn.execute(stmt)}


async def claim_for_replay(conn: AsyncConnection, dead_letter_id: str) -> bool:
    """Take an open dead letter for replay; only one caller can win."""
    result = await conn.execute(
        update(dead_letter)
        .where(dead_letter.c.id == dead_letter_id, dead_letter.c.status == DeadLetterStatus.OPEN.value)
        .values(status=DeadLetterStatus.REPLAYING.value)
    )
    return bool(result.rowcount)


async def release_claim(conn: AsyncConnection, dead_letter_id: str) -> None:
    await conn.execute(
        update(dead_letter)
        .where(dead_letter.c.id == dead_letter_id, dead_letter.c.status == DeadLetterStatus.REPLAYING.value)
        .values(status=DeadLetterStatus.OPEN.value)
    )


async def mark_replayed(conn: AsyncConnection, dead_letter_id: str, mapping_version: int | None) -> bool:
    result = await conn.execute(
        update(dead_letter)
        .where(dead_letter.c.id == dead_letter_id,
               dead_letter.c.status.in_([DeadLetterStatus.OPEN.value, DeadLetterStatus.REPLAYING.value]))
        .values(status=DeadLetterStatus.REPLAYED.value, replayed_us=now_us(),
                replay_mapping_version=mapping_version)
    )
    return bool(result.rowcount)
