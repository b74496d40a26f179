"""What the hub hands each connector: a way to receive partner messages safely, to report input
refused at the door, and to mount HTTP endpoints."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web

from hub.connectors.contract import ReceiveResult
from hub.envelope import Envelope
from hub.ids import new_id
from hub.metrics import HubMetrics
from hub.publisher import Publisher
from hub.store import inbox
from hub.store.audit import Hop, Outcome, append_hops
from hub.store.db import Database
from hub.store.messages import StoredMessage, store_messages

log = logging.getLogger(__name__)


@dataclass
class HubConnectorContext:
    db: Database
    publisher: Publisher
    metrics: HubMetrics
    name: str = "hub"
    http_routes: list[web.RouteDef] = field(default_factory=list)

    def for_connector(self, name: str) -> HubConnectorContext:
        return HubConnectorContext(self.db, self.publisher, self.metrics, name, self.http_routes)

    async def receive(self, envelope: Envelope, *, partner_key: str | None = None) -> ReceiveResult:
        """Store, dedup by partner key, publish with confirm; return only after the broker confirmed.

        The message and its ``received`` hop are written before publishing, so the trace reads in
        the order things happened and a crash before the confirm leaves a record to publish again.
        """
        body = envelope.to_json()
        async with self.db.begin() as conn:
            if partner_key is not None:
                entry = await inbox.admit(conn, self.name, partner_key, envelope, body, self.db.sealer)
                if not entry.new:
                    if entry.published:
                        self.metrics.inbound.labels(self.name, "duplicate").inc()
                        return ReceiveResult(entry.message_id, duplicate=True)
                    envelope, body = Envelope.from_json(entry.body), entry.body
            if partner_key is None or entry.new:
                await store_messages(conn, [StoredMessage(envelope, body, {})], self.db.sealer)
                await append_hops(conn, [Hop(envelope.id, envelope.correlation_id, f"in:{self.name}",
                                             envelope.attempt, Outcome.RECEIVED)])
        await self.publisher.publish([envelope])
        if partner_key is not None:
            async with self.db.begin() as conn:
                await inbox.mark_published(conn, self.name, partner_key, envelope, self.db.sealer)
        self.metrics.inbound.labels(self.name, "accepted").inc()
        return ReceiveResult(envelope.id, duplicate=False)

    async def reject(self, reason: str, *, body: bytes, source: str) -> None:
        """Refused at the door: an audit hop with the reason and the body's hash; nothing else is
        stored and nothing is routed."""
        ref = new_id()
        digest = hashlib.sha256(body).hexdigest()
        error = f"{reason} (source {source}, {len(body)} bytes, sha256 {digest})"
        async with self.db.begin() as conn:
            await append_hops(conn, [Hop(ref, ref, f"in:{self.name}", 1, Outcome.REJECTED, error=error)])
        self.metrics.inbound.labels(self.name, "rejected").inc()
        log.warning("connector.input_rejected", extra={"connector": self.name, "reason": reason})

    async def claim_once(self, key: str) -> bool:
        """One row in the inbox under the connector's ``once`` namespace: the database decides, so
        two processes handed the same value cannot both win."""
        async with self.db.begin() as conn:
            return await inbox.claim_once(conn, f"{self.name}/once", key)

    def add_routes(self, routes: Sequence[web.RouteDef]) -> None:
        self.http_routes.extend(routes)
