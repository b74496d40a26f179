"""The message store: every message the hub received, stored once with its SHA-256."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.bulk import insert_many
from hub.envelope import Envelope
from hub.store.audit import now_us
from hub.store.tables import message


@dataclass(frozen=True, slots=True)
class StoredMessage:
    envelope: Envelope
    body: bytes
    headers: Mapping[str, Any]


def message_row(envelope: Envelope, body: bytes, headers: Mapping[str, Any], stored_us: int) -> dict[str, Any]:
    return {
        "id": envelope.id,
        "type": envelope.type,
        "version": envelope.version,
        "source": envelope.source,
        "subject": envelope.subject,
        "correlation_id": envelope.correlation_id,
        "causation_id": envelope.causation_id,
        "time_us": int(envelope.time.timestamp() * 1_000_000),
        "stored_us": stored_us,
        "headers": orjson.dumps(dict(headers), default=str).decode(),
        "body": body,
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
    }


async def store_messages(conn: AsyncConnection, items: Sequence[StoredMessage]) -> None:
    """Store messages not seen before; a message already stored is left as it was."""
    if not items:
        return
    stamp = now_us()
    unique: dict[str, dict[str, Any]] = {}
    for item in items:
        unique.setdefault(item.envelope.id, message_row(item.envelope, item.body, item.headers, stamp))
    await insert_many(conn, message, list(unique.values()), ignore_conflicts=True)


async def load_message(conn: AsyncConnection, message_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(message).where(message.c.id == message_id))).first()
    return dict(row._mapping) if row else None
