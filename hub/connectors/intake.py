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
others answer as duplicates once it is confirmed. ``claim_once`` (a replayed request's nonce, say) is
grouped the same way: one transaction claims every key asked for meanwhile, and of two callers with
the same key only the first wins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.connectors.contract import ReceiveResult
from hub.envelope import Envelope
from hub.errors import HubError
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
    _claims: list[tuple[str, str, asyncio.Future[bool]]] = field(default_factory=list)
    _writers: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def receive(self, source: str, envelope: Envelope, partner_key: str | None) -> ReceiveResult:
        done: asyncio.Future[ReceiveResult] = _future()
        self._waiting.append(_Request(source, envelope, partner_key, done))
        self._ensure_writer("receive", self._write_received)
        # The group is written whatever happens to this caller (a client that hangs up): shield it.
        return await asyncio.shield(done)

    async def claim_once(self, source: str, key: str) -> bool:
        """True for the one caller (in any process) that first recorded ``key`` under ``source``."""
        done: asyncio.Future[bool] = _future()
        self._claims.append((source, key, done))
        self._ensure_writer("claim", self._write_claims)
        return await asyncio.shield(done)

    def _ensure_writer(self, kind: str, write: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Claims and received messages have a writer each, so that one's group is written while the
        other's commits; each writer runs while there is something to write."""
        task = self._writers.get(kind)
        if task is None or task.done():
            self._writers[kind] = asyncio.create_task(write(), name=f"hub:intake:{kind}")

    async def _write_received(self) -> None:
        await asyncio.sleep(0)  # requests arriving in the same turn of the loop join the first group
        while self._waiting:
            group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
            await _settle([request.done for request in group], self._write(group))

    async def _write_claims(self) -> None:
        await asyncio.sleep(0)
        while self._claims:
            claims, self._claims = self._claims[:MAX_GROUP], self._claims[MAX_GROUP:]
            await _settle([done for _, _, done in claims], self._claim(claims))

    async def _claim(self, claims: list[tuple[str, str, asyncio.Future[bool]]]) -> None:
        async with self.db.begin() as conn:
            won = await inbox.claim_many(conn, [(source, key) for source, key, _ in claims])
        for source, key, done in claims:
            first = (source, key) in won
            won.discard((source, key))  # a second caller with the same key in this group loses
            if not done.done():
                done.set_result(first)

    async def _write(self, group: list[_Request]) -> None:
        outcomes: list[_Outcome] = []
        first: dict[tuple[str, str], _Request] = {}
        bodies = {id(request): request.envelope.to_json() for request in group}
        keyed: list[tuple[str, str, Envelope, bytes]] = []
        for request in group:
            if request.partner_key is not None and (request.source, request.partner_key) not in first:
                first[(request.source, request.partner_key)] = request
                keyed.append((request.source, request.partner_key, request.envelope, bodies[id(request)]))
        async with self.db.begin() as conn:
            admitted = iter(await inbox.admit_many(conn, keyed, self.db.sealer) if keyed else [])
            new: list[tuple[Envelope, bytes, str]] = []  # what is stored, with its "received" hop
            for request in group:
                envelope, key, body = request.envelope, request.partner_key, bodies[id(request)]
                if key is None:
                    new.append((envelope, body, request.source))
                    outcomes.append(_Outcome(request, envelope.id, envelope))
                    continue
                if first[(request.source, key)] is not request:
                    outcomes.append(_Outcome(request, envelope.id, None, first[(request.source, key)]))
                    continue
                entry = next(admitted)
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
        failed = await self._publish(to_publish) if to_publish else {}
        confirmed = [(o.request.source, o.request.partner_key, envelope) for o, envelope in to_publish
                     if o.request.partner_key is not None and id(o.request) not in failed]
        if confirmed:
            async with self.db.begin() as conn:
                await inbox.mark_many_published(conn, confirmed, self.db.sealer)
        for o in outcomes:
            leader = o.duplicate_of or o.request
            if id(leader) in failed:
                if not o.request.done.done():
                    o.request.done.set_exception(failed[id(leader)])
                continue
            published = o.publish is not None
            duplicate = o.duplicate_of is not None or not published
            self.metrics.inbound.labels(o.request.source, "duplicate" if duplicate else "accepted").inc()
            if not o.request.done.done():
                o.request.done.set_result(ReceiveResult(o.message_id if o.duplicate_of is None else
                                                        _first_id(outcomes, o.duplicate_of), duplicate=duplicate))

    async def _publish(self, to_publish: list[tuple[_Outcome, Envelope]]) -> dict[int, HubError]:
        """Publish the group with confirms; the requests whose message the broker did not take. When the
        group is refused, each message is published alone, so that one message no route takes (say)
        fails its own request only (the others may reach the broker twice, under the same message id,
        which the routes' processed ledger absorbs)."""
        try:
            await self.publisher.publish([envelope for _, envelope in to_publish])
            return {}
        except HubError as exc:
            if len(to_publish) == 1:
                return {id(to_publish[0][0].request): exc}
        failed: dict[int, HubError] = {}
        for o, envelope in to_publish:
            try:
                await self.publisher.publish([envelope])
            except HubError as exc:
                failed[id(o.request)] = exc
        return failed


def _first_id(outcomes: list[_Outcome], request: _Request) -> str:
    return next(o.message_id for o in outcomes if o.request is request)


async def _settle(futures: Sequence[asyncio.Future[Any]], work: Awaitable[None]) -> None:
    """Run ``work``; if it fails, so does every caller still waiting on ``futures`` (cancellation too)."""
    try:
        await work
    except BaseException as exc:
        for done in futures:
            if not done.done():
                done.set_exception(exc)
        if not isinstance(exc, Exception):
            raise


def _future() -> asyncio.Future[Any]:
    """A caller's future; its failure counts as seen even when the caller hung up before it came."""
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    done.add_done_callback(lambda f: f.cancelled() or f.exception())
    return done
