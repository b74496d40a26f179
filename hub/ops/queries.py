"""Read-side queries for the ops API: messages, traces, routes."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue import Catalogue
from hub.logs import mask_personal
from hub.store.sealing import BodySealer
from hub.store.tables import hop, message


def masked_body(body: bytes, type_: str, version: int, catalogue: Catalogue) -> Any:
    """The message body for people to read: personal fields blanked, phones and IDs masked."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return mask_personal(body[:2000].decode("utf-8", "replace"))
    if isinstance(doc, dict) and isinstance(doc.get("data"), dict) and (type_, version) in catalogue:
        for name in catalogue[(type_, version)].personal_fields:
            if doc["data"].get(name) is not None:
                doc["data"][name] = _mask_value(str(doc["data"][name]))
    return orjson.loads(mask_personal(orjson.dumps(doc).decode()))


def _mask_value(value: str) -> str:
    masked = mask_personal(value)
    if masked != value:
        return masked
    return value[:1] + "*" * max(1, len(value) - 1) if value else value


def message_summary(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "type": row.type, "version": row.version, "source": row.source, "subject": row.subject,
        "correlation_id": row.correlation_id, "causation_id": row.causation_id, "time_us": row.time_us,
        "stored_us": row.stored_us, "size": row.size, "sha256": row.sha256,
    }


def hop_row(row: Any) -> dict[str, Any]:
    return {
        "seq": row.seq, "message_id": row.message_id, "correlation_id": row.correlation_id, "route": row.route,
        "attempt": row.attempt, "outcome": row.outcome, "duration_us": row.duration_us,
        "error": mask_personal(row.error), "mapping_version": row.mapping_version, "at_us": row.at_us,
    }


async def search_messages(
    conn: AsyncConnection, *, type_: str | None, correlation_id: str | None, since_us: int | None,
    until_us: int | None, limit: int, before_id: str | None,
) -> list[dict[str, Any]]:
    cols = [c for c in message.c if c.name not in ("body", "headers")]
    stmt = select(*cols).order_by(message.c.id.desc()).limit(limit)
    if type_:
        stmt = stmt.where(message.c.type == type_)
    if correlation_id:
        stmt = stmt.where(message.c.correlation_id == correlation_id)
    if since_us is not None:
        stmt = stmt.where(message.c.time_us >= since_us)
    if until_us is not None:
        stmt = stmt.where(message.c.time_us < until_us)
    if before_id:
        stmt = stmt.where(message.c.id < before_id)
    return [message_summary(r) for r in await conn.execute(stmt)]


async def trace(conn: AsyncConnection, message_id: str, catalogue: Catalogue,
                sealer: BodySealer) -> dict[str, Any] | None:
    """Every message and hop of the flow the message belongs to, in order."""
    row = (await conn.execute(select(message).where(message.c.id == message_id))).first()
    if row is not None:
        correlation_id = row.correlation_id
    else:
        first_hop = (await conn.execute(select(hop.c.correlation_id).where(hop.c.message_id == message_id)
                                        .limit(1))).first()
        if first_hop is None:
            return None
        correlation_id = first_hop.correlation_id
    messages = [
        message_summary(r)
        | {"body": masked_body(sealer.readable("hub_message", r.id, r.body), r.type, r.version, catalogue)}
        for r in await conn.execute(
            select(message).where(message.c.correlation_id == correlation_id).order_by(message.c.id))
    ]
    hops = [hop_row(r) for r in await conn.execute(
        select(hop).where(hop.c.correlation_id == correlation_id).order_by(hop.c.seq))]
    return {"message_id": message_id, "correlation_id": correlation_id, "messages": messages, "hops": hops}
