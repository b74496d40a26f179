"""The outbox relay: publishes the core's outbox rows with confirms, then marks them.

Rows are claimed in order (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers share the
work) inside a transaction that stays open until the broker has confirmed, then marked published
in that same transaction. A crash before the mark publishes the rows again with the same message
ids, which consumers deduplicate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from core import outbox
from core.catalogue import Lane
from hub.envelope import Envelope
from hub.errors import TransportError, Unroutable
from hub.metrics import HubMetrics
from hub.publisher import Publisher
from hub.signals import wait_event
from hub.store import deadletters
from hub.store.audit import Hop, Outcome, append_hops
from hub.store.db import Database
from hub.store.sealing import REDACTED_VALUE

log = logging.getLogger(__name__)

OUTBOX_ROUTE = "out:outbox"
"""The route name of the outbox's own dead letters and hops."""


def envelope_of(row: outbox.OutboxRow) -> Envelope:
    return Envelope(
        id=row.id, type=row.type, version=row.version, source="core", subject=row.subject,
        time=datetime.fromtimestamp(row.created_us / 1e6, UTC), correlation_id=row.correlation_id,
        causation_id=row.causation_id, priority=Lane(row.lane), data=row.data,
    )


class OutboxRelay:
    def __init__(self, db: Database, publishers: Mapping[Lane, Publisher], metrics: HubMetrics, *,
                 poll_interval_s: float = 0.2, batch: int = 500) -> None:
        self.db = db
        self.publishers = publishers
        """One per lane: safety events (valve commands) leave on the safety lane's own connection."""
        self.metrics = metrics
        self.poll_interval_s = poll_interval_s
        self.batch = batch
        self._wake = asyncio.Event()
        self.published = 0

    def wake(self) -> None:
        """Ask for an immediate pass (a core handler just committed events)."""
        self._wake.set()

    async def run_once(self) -> int:
        async with self.db.begin() as conn:
            rows = await outbox.claim_pending(conn, self.batch)
            if not rows:
                return 0
            envelopes = [envelope_of(r) for r in rows]
            for lane in (Lane.SAFETY, Lane.NORMAL):
                chosen = [e for e in envelopes if e.priority is lane]
                if chosen:
                    try:
                        await self.publishers[lane].publish(chosen)
                    except Unroutable:
                        await self._set_aside_unroutable(conn, self.publishers[lane], chosen)
            await outbox.mark_published(conn, [r.id for r in rows])
            personal = [(r, f) for r in rows if (f := self.db.sealer.personal_fields(r.type, r.version))]
            if personal:  # the message store keeps them sealed; the outbox keeps no personal data
                await outbox.erase_fields(conn, personal, placeholder=REDACTED_VALUE)
        self.published += len(rows)
        self.metrics.published.labels("outbox").inc(len(rows))
        return len(rows)

    async def _set_aside_unroutable(self, conn: Any, publisher: Publisher, envelopes: list[Envelope]) -> None:
        """No route takes some event (``gashub check`` refuses such routes, but routes can change
        under a running outbox): publish the others one by one and turn each unroutable event into
        a dead letter with its reason, so the relay never stalls behind it. Replaying it after a
        route is added publishes it to the exchange again."""
        letters, hops = [], []
        for envelope in envelopes:
            try:
                await publisher.publish([envelope])
            except Unroutable as exc:
                reason = f"no route takes {envelope.type}: {exc}"
                letters.append(deadletters.DeadLetter(
                    message_id=envelope.id, route=OUTBOX_ROUTE, reason=reason, error_class="Unroutable",
                    attempts=1, body=envelope.to_json(), correlation_id=envelope.correlation_id,
                    type=envelope.type))
                hops.append(Hop(envelope.id, envelope.correlation_id, OUTBOX_ROUTE, 1, Outcome.DEAD, error=reason))
                log.error("outbox.unroutable", extra={"message_id": envelope.id, "type": envelope.type})
        await deadletters.record(conn, letters, self.db.sealer)
        await append_hops(conn, hops)

    async def run(self) -> None:
        while True:
            try:
                n = await self.run_once()
            except TransportError as exc:
                log.warning("outbox.publish_failed", extra={"error": str(exc)})
                n = 0
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("outbox.pass_failed")
                n = 0
                await asyncio.sleep(1.0)
            if n >= self.batch:
                continue
            self._wake.clear()
            await wait_event(self._wake, self.poll_interval_s)
