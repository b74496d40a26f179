"""The hop audit trail: an append-only hash chain.

Every hop (route, attempt, outcome, duration, error, mapping version) becomes a row whose hash
covers its own fields and the previous row's hash; ``hub_audit_head`` holds the last sequence
number and hash, so deleting rows at the end is caught as well as editing or deleting any row in
the middle. Writers append a whole batch under a lock on the head row (``FOR UPDATE`` on
PostgreSQL, the single writer on SQLite): one round trip per batch, not per hop.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.bulk import insert_columns, insert_many
from hub.store.tables import audit_head, hop

GENESIS = "0" * 64
_HOP_COLUMNS = ("seq", "message_id", "correlation_id", "route", "attempt", "outcome", "duration_us", "error",
                "mapping_version", "at_us", "prev_hash", "hash")


class Outcome(StrEnum):
    RECEIVED = "received"
    DELIVERED = "delivered"
    FILTERED = "filtered"
    DUPLICATE = "duplicate"
    RETRY = "retry"
    DEAD = "dead"
    REPLAYED = "replayed"
    PUBLISHED = "published"
    REJECTED = "rejected"


class Hop(NamedTuple):
    """One hop of a message through the hub (a tuple: built once per message on the hot path)."""

    message_id: str
    correlation_id: str
    route: str
    attempt: int
    outcome: Outcome
    duration_us: int = 0
    error: str = ""
    mapping_version: str = ""
    at_us: int = 0


def now_us() -> int:
    return time.time_ns() // 1000


def hop_hash(prev: str, seq: int, h: Hop, at_us: int) -> str:
    """SHA-256 over the previous hash and the hop's fields, joined by the unit separator."""
    return hashlib.sha256(
        f"{prev}\x1f{seq}\x1f{h.message_id}\x1f{h.correlation_id}\x1f{h.route}\x1f{h.attempt}\x1f{h.outcome}"
        f"\x1f{h.duration_us}\x1f{h.error}\x1f{h.mapping_version}\x1f{at_us}".encode()
    ).hexdigest()


async def append_hops(conn: AsyncConnection, hops: Sequence[Hop]) -> None:
    """Append hops to the chain inside the caller's transaction."""
    if not hops:
        return
    stmt = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    head = (await conn.execute(stmt)).first()
    if head is None:
        await insert_many(conn, audit_head, [{"id": 1, "seq": 0, "hash": GENESIS}], ignore_conflicts=True)
        head = (await conn.execute(stmt)).first()
        assert head is not None
    seq, prev = int(head.seq), str(head.hash)
    rows: list[tuple[Any, ...]] = []
    default_at = now_us()
    for h in hops:
        seq += 1
        at = h.at_us or default_at
        digest = hop_hash(prev, seq, h, at)
        rows.append((seq, h.message_id, h.correlation_id, h.route, h.attempt, str(h.outcome), h.duration_us, h.error,
                     h.mapping_version, at, prev, digest))
        prev = digest
    await insert_columns(conn, hop, dict(zip(_HOP_COLUMNS, map(list, zip(*rows, strict=True)), strict=True)))
    await conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=prev))


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""


async def _rows(conn: AsyncConnection, chunk: int) -> AsyncIterator[Sequence[object]]:
    last = 0
    while True:
        result = await conn.execute(select(hop).where(hop.c.seq > last).order_by(hop.c.seq).limit(chunk))
        rows = result.fetchall()
        if not rows:
            return
        for row in rows:
            yield row
        last = int(rows[-1].seq)


async def verify_chain(conn: AsyncConnection, *, chunk: int = 5000, progress: object = None) -> VerifyResult:
    """Recompute the chain from the first hop; name the first row that does not fit."""
    expected_seq = 0
    prev = GENESIS
    checked = 0
    async for row in _rows(conn, chunk):
        r = row._mapping  # type: ignore[attr-defined]
        expected_seq += 1
        if r["seq"] != expected_seq:
            return VerifyResult(False, checked, expected_seq, f"hop {expected_seq} is missing (next is {r['seq']})")
        if r["prev_hash"] != prev:
            return VerifyResult(False, checked, r["seq"], f"hop {r['seq']} does not link to hop {r['seq'] - 1}")
        h = Hop(
            message_id=r["message_id"],
            correlation_id=r["correlation_id"],
            route=r["route"],
            attempt=r["attempt"],
            outcome=Outcome(r["outcome"]),
            duration_us=r["duration_us"],
            error=r["error"],
            mapping_version=r["mapping_version"],
        )
        digest = hop_hash(prev, r["seq"], h, r["at_us"])
        if digest != r["hash"]:
            return VerifyResult(False, checked, r["seq"], f"hop {r['seq']} was changed after it was written")
        prev = digest
        checked += 1
        if progress is not None and callable(progress):
            progress(1)
    head = (await conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1))).first()
    head_seq, head_hash = (int(head.seq), str(head.hash)) if head else (0, GENESIS)
    if head_seq != expected_seq or head_hash != prev:
        return VerifyResult(
            False,
            checked,
            expected_seq + 1,
            f"the chain ends at hop {expected_seq} but the head says {head_seq}: hops were deleted at the end",
        )
    return VerifyResult(True, checked)
