"""The message store: every message the hub received, stored once with its SHA-256."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.bulk import insert_columns
from hub.envelope import Envelope
from hub.store.audit import now_us
from hub.store.sealing import BodySealer
from hub.store.tables import message


class StoredMessage(NamedTuple):
    envelope: Envelope
    body: bytes
    headers: Mapping[str, Any]


async def store_messages(conn: AsyncConnection, items: Sequence[StoredMessage], sealer: BodySealer) -> None:
    """Store messages not seen before; a message already stored is left as it was. Bodies with
    personal data are sealed (``hub.store.sealing``); the hash and size are the plain body's."""
    if not items:
        return
    stamp = now_us()
    seen: set[str] = set()
    rows: list[tuple[Any, ...]] = []
    seal, sha256, dumps = sealer.seal, hashlib.sha256, orjson.dumps
    for item in items:
        env = item.envelope
        if env.id in seen:
            continue
        seen.add(env.id)
        body = item.body
        rows.append((
            env.id, env.type, env.version, env.source, env.subject, env.correlation_id, env.causation_id,
            int(env.time.timestamp() * 1_000_000), stamp,
            dumps(dict(item.headers), default=str).decode() if item.headers else "{}",
            seal("hub_message", env.id, body, env.type, env.version), sha256(body).hexdigest(), len(body),
        ))
    cols = dict(zip(_COLUMNS, map(list, zip(*rows, strict=True)), strict=True))
    # Most messages are new here; those an inbound connector or an earlier attempt stored are skipped.
    await insert_columns(conn, message, cols, ignore_conflicts=True, mostly_new=True, skip_stored=True)


_COLUMNS = ("id", "type", "version", "source", "subject", "correlation_id", "causation_id", "time_us", "stored_us",
            "headers", "body", "sha256", "size")


async def load_message(conn: AsyncConnection, message_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(message).where(message.c.id == message_id))).first()
    return {str(k): v for k, v in row._mapping.items()} if row else None
