"""What the hub hands each connector: a way to receive partner messages safely, to report input
refused at the door, and to mount HTTP endpoints."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web

from hub.connectors.contract import ReceiveResult
from hub.connectors.intake import Intake
from hub.envelope import Envelope
from hub.ids import new_id
from hub.metrics import HubMetrics
from hub.publisher import Publisher
from hub.store.audit import Hop, Outcome, append_hops
from hub.store.db import Database

log = logging.getLogger(__name__)


@dataclass
class HubConnectorContext:
    db: Database
    publisher: Publisher
    metrics: HubMetrics
    name: str = "hub"
    http_routes: list[web.RouteDef] = field(default_factory=list)
    intake: Intake = field(init=False)

    def __post_init__(self) -> None:
        self.intake = Intake(self.db, self.publisher, self.metrics)

    def for_connector(self, name: str) -> HubConnectorContext:
        context = HubConnectorContext(self.db, self.publisher, self.metrics, name, self.http_routes)
        context.intake = self.intake  # one group writer per process, for every connector
        return context

    async def receive(self, envelope: Envelope, *, partner_key: str | None = None) -> ReceiveResult:
        """Store, dedup by partner key, publish with confirm; return only after the broker confirmed.

        The message and its ``received`` hop are written before publishing, so the trace reads in
        the order things happened and a crash before the confirm leaves a record to publish again.
        Concurrent requests are written and published in groups (:mod:`hub.connectors.intake`).
        """
        return await self.intake.receive(self.name, envelope, partner_key)

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
        return await self.intake.claim_once(f"{self.name}/once", key)

    def add_routes(self, routes: Sequence[web.RouteDef]) -> None:
        self.http_routes.extend(routes)
