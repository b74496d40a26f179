"""The core's transactional outbox.

A handler's events are written in the same transaction as its state change (``emit``); the hub's
relay reads pending rows (``claim_pending``), publishes them with confirms and marks them
(``mark_published``). A crash between publish and mark publishes a row again under the same message
id, which the hub's consumers deduplicate: nothing lost, nothing doubled.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue import CATALOGUE, Lane
from core.db.bulk import among, insert_columns
from core.db.tables import outbox
from core.ids import new_ids
from core.messages import Cause, Event


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: str
    type: str
    version: int
    subject: str | None
    correlation_id: str
    causation_id: str | None
    lane: str
    data: dict[str, Any]
    created_us: int


def _now_us() -> int:
    return time.time_ns() // 1000


_EMIT_COLUMNS = ("id", "type", "version", "subject", "correlation_id", "causation_id", "lane", "data", "created_us")


async def emit(conn: AsyncConnection, events: Sequence[tuple[Event, Cause | None]]) -> list[str]:
    """Write events caused by incoming messages (or by nothing, for scheduled work); returns their
    message ids, in order."""
    if not events:
        return []
    ids = new_ids(len(events))
    columns: dict[str, list[Any]] = {name: [] for name in _EMIT_COLUMNS}
    now = _now_us()
    for message_id, (event, cause) in zip(ids, events, strict=True):
        entry = CATALOGUE[(event.type, event.version)]
        data = event.data if isinstance(event.data, BaseModel) else entry.model.model_validate(event.data)
        columns["id"].append(message_id)
        columns["type"].append(event.type)
        columns["version"].append(event.version)
        columns["subject"].append(event.subject if event.subject is not None else (cause.subject if cause else None))
        columns["correlation_id"].append(cause.correlation_id if cause else message_id)
        columns["causation_id"].append(cause.message_id if cause else None)
        columns["lane"].append(str(event.lane or entry.lane))
        columns["data"].append(data.model_dump_json())
        columns["created_us"].append(now)
    await insert_columns(conn, outbox, columns)
    return ids


async def claim_pending(conn: AsyncConnection, limit: int) -> list[OutboxRow]:
    """Pending rows in order. On PostgreSQL rows locked by another relay are skipped."""
    stmt = (
        select(outbox)
        .where(outbox.c.published_us.is_(None))
        .order_by(outbox.c.seq)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    result = await conn.execute(stmt)
    return [
        OutboxRow(
            id=r.id,
            type=r.type,
            version=r.version,
            subject=r.subject,
            correlation_id=r.correlation_id,
            causation_id=r.causation_id,
            lane=r.lane or Lane.NORMAL.value,
            data=orjson.loads(r.data),
            created_us=r.created_us,
        )
        for r in result
    ]


async def mark_published(conn: AsyncConnection, ids: Sequence[str]) -> None:
    if ids:
        await conn.execute(
            update(outbox).where(among(conn, outbox.c.id, ids)).values(published_us=_now_us())
        )


async def erase_fields(conn: AsyncConnection, rows: Sequence[tuple[OutboxRow, frozenset[str]]], *,
                       placeholder: str = "[redacted]") -> None:
    """Blank personal fields of events already published (they live on only where they are sealed)."""
    for row, fields in rows:
        data = {k: (placeholder if k in fields and v is not None else v) for k, v in row.data.items()}
        await conn.execute(update(outbox).where(outbox.c.id == row.id).values(data=orjson.dumps(data).decode()))


async def pending_count(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(func.count()).where(outbox.c.published_us.is_(None))) or 0)
