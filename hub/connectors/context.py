"""What the hub hands each connector: a way to receive partner messages safely, to report input
refused at the door, and to mount HTTP endpoints."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web

from hub.connectors.contract import ReceiveResult
from hub.connectors.inbound import InboundWriter, Pending
from hub.envelope import Envelope
from hub.ids import new_id
from hub.metrics import HubMetrics
from hub.publisher import Publisher
from hub.store.audit import Hop, Outcome
from hub.store.db import Database

log = logging.getLogger(__name__)


@dataclass
class HubConnectorContext:
    db: Database
    publisher: Publisher
    metrics: HubMetrics
    name: str = "hub"
    http_routes: list[web.RouteDef] = field(default_factory=list)
    writer: InboundWriter | None = None
    """Shared by every connector of a hub: pushes from all of them are written in the same groups."""

    def __post_init__(self) -> None:
        if self.writer is None:
            self.writer = InboundWriter(self.db, self.publisher, self.metrics)

    def for_connector(self, name: str) -> HubConnectorContext:
        return HubConnectorContext(self.db, self.publisher, self.metrics, name, self.http_routes, self.writer)

    async def receive(self, envelope: Envelope, *, partner_key: str | None = None) -> ReceiveResult:
        """Store, dedup by partner key, publish with confirm; return only after the broker confirmed.

        The message and its ``received`` hop are written before publishing, so the trace reads in
        the order things happened and a crash before the confirm leaves a record to publish again.
        Concurrent pushes share one transaction and one publish (``hub.connectors.inbound``).
        """
        assert self.writer is not None
        hop = Hop(envelope.id, envelope.correlation_id, f"in:{self.name}", envelope.attempt, Outcome.RECEIVED)
        result = await self.writer.submit(Pending(self.name, hop, envelope, envelope.to_json(), partner_key))
        assert result is not None
        return result

    async def reject(self, reason: str, *, body: bytes, source: str) -> None:
        """Refused at the door: an audit hop with the reason and the body's hash; nothing else is
        stored and nothing is routed."""
        assert self.writer is not None
        ref = new_id()
        digest = hashlib.sha256(body).hexdigest()
        error = f"{reason} (source {source}, {len(body)} bytes, sha256 {digest})"
        await self.writer.submit(Pending(self.name, Hop(ref, ref, f"in:{self.name}", 1, Outcome.REJECTED, error=error)))
        log.warning("connector.input_rejected", extra={"connector": self.name, "reason": reason})

    async def claim_once(self, key: str) -> bool:
        """One row in the inbox under the connector's ``once`` namespace: the database decides, so
        two processes handed the same value cannot both win (claims are written in groups)."""
        assert self.writer is not None
        return await self.writer.claim(f"{self.name}/once", key)

    def add_routes(self, routes: Sequence[web.RouteDef]) -> None:
        self.http_routes.extend(routes)
