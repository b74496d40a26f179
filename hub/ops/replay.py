"""Replaying dead letters: once, optionally through another mapping version, with a dry run that
shows the field-by-field difference first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.envelope import Envelope
from hub.errors import HubError, MessageError, Unroutable
from hub.logs import mask_personal
from hub.mapping import UnknownMapping
from hub.outbox_relay import OUTBOX_ROUTE
from hub.pipeline import MAPPING_VERSION_HEADER
from hub.publisher import to_outbound
from hub.routing.loader import Route
from hub.store import deadletters
from hub.store.audit import Hop, Outcome, append_hops
from hub.store.db import Database
from hub.store.sealing import SealedBodyError
from hub.transport.base import DEFAULT_EXCHANGE, OutboundMessage, Transport


class ReplayRefused(HubError):
    """The dead letter cannot be replayed as asked; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ReplayRequest:
    dead_letter_id: str
    mapping_version: int | None = None
    dry_run: bool = False
    actor: str = "ops"
    remote: str = ""


async def replay(req: ReplayRequest, *, db: Database, routes: dict[str, Route], transport: Transport,
                 mappings: Any, exchange: str = "gashub") -> dict[str, Any]:
    async with db.read() as conn:
        record = await deadletters.get(conn, req.dead_letter_id)
    if record is None:
        raise ReplayRefused(f"no dead letter {req.dead_letter_id}", 404)
    if record["status"] != deadletters.DeadLetterStatus.OPEN:
        raise ReplayRefused(f"dead letter {req.dead_letter_id} is already {record['status']}", 409)
    if record["route"] == OUTBOX_ROUTE:
        return await _replay_to_exchange(req, record, db=db, transport=transport, exchange=exchange)
    route = routes.get(record["route"])
    if route is None:
        raise ReplayRefused(f"route {record['route']!r} no longer exists; nothing to replay into", 409)
    if record["body_truncated"]:
        raise ReplayRefused("the stored body was truncated (it was over the size limit); it cannot be replayed", 422)
    body = _opened(record, db)
    try:
        envelope = Envelope.from_json(body).model_copy(update={"attempt": 1})
    except MessageError as exc:
        raise ReplayRefused(f"the dead letter is not a valid envelope, so it cannot be replayed: {exc}", 422) from None
    mapping = route.mapping
    other = mapping
    if req.mapping_version is not None:
        if mapping is None:
            raise ReplayRefused(f"route {route.name} has no mapping, so mapping_version does not apply", 422)
        try:
            other = mappings.get(mapping.name, req.mapping_version)
        except UnknownMapping as exc:
            raise ReplayRefused(str(exc).strip("'\""), 422) from None
    if req.dry_run:
        return _dry_run(envelope, mapping, other, mappings, record)
    headers = {"x-gashub-replay-of": req.dead_letter_id}
    if other is not None and req.mapping_version is not None:
        headers[MAPPING_VERSION_HEADER] = str(req.mapping_version)
    changed = await _publish_once(
        req, envelope, db=db, transport=transport, hop_route=f"ops:replay:{route.name}",
        message=to_outbound(envelope, exchange=DEFAULT_EXCHANGE, routing_key=route.queues.main, headers=headers),
        mapping_label=f"{other.name}@{other.version}" if other else "")
    return {"replayed": changed, "dead_letter_id": req.dead_letter_id, "message_id": envelope.id,
            "route": route.name, "mapping_version": other.version if other else None}


def _opened(record: dict[str, Any], db: Database) -> bytes:
    try:
        return db.sealer.open("hub_dead_letter", record["id"], record["body"])
    except SealedBodyError as exc:
        raise ReplayRefused(f"the dead letter cannot be replayed: {exc}", 422) from None


async def _replay_to_exchange(req: ReplayRequest, record: dict[str, Any], *, db: Database, transport: Transport,
                              exchange: str) -> dict[str, Any]:
    """An event the outbox could not route: publish it to the exchange again (once a route takes it)."""
    envelope = Envelope.from_json(_opened(record, db))
    if req.dry_run:
        return {"dry_run": True, "dead_letter_id": record["id"], "route": record["route"],
                "reason": record["reason"], "type": envelope.type, "changes": []}
    try:
        changed = await _publish_once(req, envelope, db=db, transport=transport, hop_route=OUTBOX_ROUTE,
                                      message=to_outbound(envelope, exchange=exchange))
    except Unroutable:
        raise ReplayRefused(f"still no route takes {envelope.type}: add one, then replay", 409) from None
    return {"replayed": changed, "dead_letter_id": req.dead_letter_id, "message_id": envelope.id,
            "route": record["route"], "mapping_version": None}


async def _publish_once(req: ReplayRequest, envelope: Envelope, *, db: Database, transport: Transport,
                        hop_route: str, message: OutboundMessage, mapping_label: str = "") -> bool:
    """Claim the dead letter (so that two replays at once publish once), publish, then mark it replayed
    with an audit hop; a failed publish gives the claim back and raises."""
    async with db.begin() as conn:
        if not await deadletters.claim_for_replay(conn, req.dead_letter_id):
            raise ReplayRefused(f"dead letter {req.dead_letter_id} is being replayed or was replayed", 409)
    try:
        await transport.publish([message])
    except BaseException:
        async with db.begin() as conn:
            await deadletters.release_claim(conn, req.dead_letter_id)
        raise
    async with db.begin() as conn:
        changed = await deadletters.mark_replayed(conn, req.dead_letter_id, req.mapping_version)
        await append_hops(conn, [Hop(
            envelope.id, envelope.correlation_id, hop_route, 1, Outcome.REPLAYED,
            error=f"replayed dead letter {req.dead_letter_id} by {req.actor} from {req.remote or 'unknown'}",
            mapping_version=mapping_label)])
    return changed


def _dry_run(envelope: Envelope, mapping: Any, other: Any, mappings: Any, record: dict[str, Any]) -> dict[str, Any]:
    def attempt(m: Any) -> tuple[dict[str, Any] | None, str | None]:
        if m is None:
            return dict(envelope.data), None
        try:
            return m.apply(envelope.data), None
        except MessageError as exc:
            return None, str(exc)

    before, before_error = attempt(mapping)
    after, after_error = attempt(other)
    # A side that fails shows as empty, so the table still lists every field the other side makes.
    changes = [
        {"field": c.path, "before": _plain(c.old), "after": _plain(c.new)}
        for c in mappings.diff(before or {}, after or {})
    ] if before is not None or after is not None else []
    return {
        "dry_run": True, "dead_letter_id": record["id"], "route": record["route"], "reason": record["reason"],
        "current": {"mapping": f"{mapping.name}@{mapping.version}" if mapping else None,
                    "output": _plain(before), "error": before_error},
        "proposed": {"mapping": f"{other.name}@{other.version}" if other else None,
                     "output": _plain(after), "error": after_error},
        "changes": changes,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return mask_personal(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return mask_personal(str(value))
