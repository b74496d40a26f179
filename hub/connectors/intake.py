"""Inbound partner messages written and published in groups (group commit).

Each partner request used to cost three transactions of its own, one of them holding the audit
chain's head row until its commit, so concurrent requests (a payment platform's notifications, a
vendor's pushes) queued on that one row. Here the requests that arrive while a group is being
written wait for the next group: one transaction admits them to the inbox, stores the new messages
and appends their ``received`` hops (one lock of the audit head), one publish hands them all to the
broker with confirms, one transaction marks them published. Each caller still hears back only after
the broker confirmed its message, and a failure fails exactly the requests of that group (their
partners send again).

Copies of one partner key inside a group are one message: the first is written and published, the
others answer as duplicates once it is confirmed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hub.connectors.contract import ReceiveResult
from hub.envelope import Envelope
from hub.metrics import HubMetrics
from hub.publisher import Publisher
from hub.store import inbox
from hub.store.audit import Hop, Outcome, append_hops
from hub.store.db import Database
from hub.store.messages import StoredMessage, store_messages

MAX_GROUP = 256


@dataclass
class _Request:
    source: str
    envelope: Envelope
    partner_key: str | None
    done: asyncio.Future[ReceiveResult]


@dataclass
class _Outcome:
    request: _Request
    message_id: str
    publish: Envelope | None
    """What this request makes the group publish (``None``: a copy of a message already confirmed)."""
    duplicate_of: _Request | None = None


@dataclass
class Intake:
    """One per hub process, shared by its connectors' contexts."""

    db: Database
    publisher: Publisher
    metrics: HubMetrics
    _waiting: list[_Request] = field(default_factory=list)
    _writer: asyncio.Task[None] | None = None

    async def receive(self, source: str, envelope: Envelope, partner_key: str | None) -> ReceiveResult:
        done: asyncio.Future[ReceiveResult] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Request(source, envelope, partner_key, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_groups(), name="hub:intake")
        # The group is written whatever happens to this caller (a client that hangs up): shield it.
        return await asyncio.shield(done)

    async def _write_groups(self) -> None:
        await asyncio.sleep(0)  # requests arriving in the same turn of the loop join the first group
        while self._waiting:
            group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
            try:
                await self._write(group)
            except BaseException as exc:
                for request in group:
                    if not request.done.done():
                        request.done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

    async def _write(self, group: list[_Request]) -> None:
        outcomes: list[_Outcome] = []
        first: dict[tuple[str, str], _Request] = {}
        async with self.db.begin() as conn:
            new: list[tuple[Envelope, bytes, str]] = []  # what is stored, with its "received" hop
            for request in group:
                envelope, key = request.envelope, request.partner_key
                if key is not None and (request.source, key) in first:
                    outcomes.append(_Outcome(request, envelope.id, None, first[(request.source, key)]))
                    continue
                body = envelope.to_json()
                if key is None:
                    new.append((envelope, body, request.source))
                    outcomes.append(_Outcome(request, envelope.id, envelope))
                    continue
                first[(request.source, key)] = request
                entry = await inbox.admit(conn, request.source, key, envelope, body, self.db.sealer)
                if entry.new:
                    new.append((envelope, body, request.source))
                    outcomes.append(_Outcome(request, envelope.id, envelope))
                elif entry.published:
                    outcomes.append(_Outcome(request, entry.message_id, None))
                else:  # stored before but never confirmed (a crash in between): publish that one again
                    outcomes.append(_Outcome(request, entry.message_id, Envelope.from_json(entry.body)))
            if new:
                await store_messages(conn, [StoredMessage(e, body, {}) for e, body, _ in new], self.db.sealer)
                await append_hops(conn, [Hop(e.id, e.correlation_id, f"in:{source}", e.attempt, Outcome.RECEIVED)
                                         for e, _, source in new])
        to_publish = [(o, o.publish) for o in outcomes if o.publish is not None]
        if to_publish:
            await self.publisher.publish([envelope for _, envelope in to_publish])
            keyed = [(o.request.source, o.request.partner_key, envelope) for o, envelope in to_publish
                     if o.request.partner_key is not None]
            if keyed:
                async with self.db.begin() as conn:
                    for source, key, envelope in keyed:
                        await inbox.mark_published(conn, source, key, envelope, self.db.sealer)
        results: dict[int, ReceiveResult] = {}
        for o in outcomes:
            if o.duplicate_of is not None:
                continue
            published = o.publish is not None
            results[id(o.request)] = ReceiveResult(o.message_id, duplicate=not published)
            self.metrics.inbound.labels(o.request.source, "accepted" if published else "duplicate").inc()
        for o in outcomes:
            if o.duplicate_of is not None:
                first_result = results[id(o.duplicate_of)]
                results[id(o.request)] = ReceiveResult(first_result.message_id, duplicate=True)
                self.metrics.inbound.labels(o.request.source, "duplicate").inc()
            if not o.request.done.done():
                o.request.done.set_result(results[id(o.request)])
