"""Group commit for what partners send: many concurrent pushes, one transaction, one publish.

Every inbound message is stored with its ``received`` hop before it is published, and the hop extends
the audit hash chain, whose head is one row: a transaction per push would hold that row through its
commit and make pushes go one at a time (about 60 a second when a commit takes 17 ms). So pushes that
arrive while a group is being written wait for the next group, and each group is

1. one transaction (the *write lane*: one at a time, in order): every inbox admission (dedup by the
   partner's key), the new messages, and the hops (the ``received`` ones and the ``rejected`` ones of
   input refused at the door);
2. one publish of the group's new messages, with publisher confirms; as soon as the broker confirmed,
   each caller learns its outcome (a partner hears OK only after the broker confirmed).

While a group is being published the next one is already written (at most ``MAX_PUBLISHING`` groups
wait for their confirms): a push waits for one transaction and one confirm, not for the group before
it to finish both.

The inbox entries of a confirmed group are marked published by the next transaction of the write
lane, before its admissions (or by a transaction of their own when no push is waiting). So a copy that
a partner sends again after its OK finds its first copy published and is answered as a duplicate. If
the process dies between a confirm and its mark, a later copy is published again under the same
message id, and the routes' processed ledger applies it once; a mark that fails is logged and left
for the same reason.

A push that arrives with nothing in flight starts a group of one at once: grouping adds no wait.

Failures stay per push: when a group's transaction fails, its items are written one by one, so that
only the faulty one fails; when a group's publish fails, its messages are published one by one (a
message the failed publish had already delivered comes again with the same id, and the routes'
processed ledger applies it once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from hub.connectors.contract import ReceiveResult
from hub.envelope import Envelope
from hub.metrics import HubMetrics
from hub.publisher import Publisher
from hub.store import inbox
from hub.store.audit import Hop, append_hops
from hub.store.db import Database
from hub.store.messages import StoredMessage, store_messages

log = logging.getLogger(__name__)

MAX_GROUP = 500
MAX_PUBLISHING = 4
"""Groups written and waiting for the broker's confirm at most; the write lane waits beyond that."""


def _new_future() -> asyncio.Future[ReceiveResult | None]:
    return asyncio.get_running_loop().create_future()


@dataclass(eq=False)
class Pending:
    """One push (``envelope`` set) or one refusal at the door (``envelope`` None, ``hop`` only)."""

    source: str
    hop: Hop
    envelope: Envelope | None = None
    body: bytes = b""
    partner_key: str | None = None
    future: asyncio.Future[ReceiveResult | None] = field(default_factory=_new_future)
    publish: bool = False
    result: ReceiveResult | None = None
    leader: Pending | None = None
    """An earlier copy of the same partner message in the same group: this one shares its fate."""


def _key(item: Pending) -> tuple[str, str]:
    """The inbox key of a keyed push."""
    assert item.partner_key is not None
    return item.source, item.partner_key


def _arrival(item: Pending) -> inbox.Arrival:
    assert item.envelope is not None
    assert item.partner_key is not None
    return inbox.Arrival(item.source, item.partner_key, item.envelope, item.body)


class InboundWriter:
    """Writes pushes and refusals in groups (see the module's docstring); one per hub process."""

    def __init__(self, db: Database, publisher: Publisher, metrics: HubMetrics, *, max_group: int = MAX_GROUP,
                 max_publishing: int = MAX_PUBLISHING) -> None:
        self.db = db
        self.publisher = publisher
        self.metrics = metrics
        self.max_group = max_group
        self.max_publishing = max_publishing
        self.groups = 0
        """Groups written so far (a push alone is a group of one)."""
        self._queue: list[Pending] = []
        self._unmarked: list[inbox.Arrival] = []
        """Confirmed by the broker, not yet marked published in the inbox: the lane's next transaction."""
        self._task: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Task[None]] = set()
        self._in_flight: dict[tuple[str, str], Pending] = {}
        """Partner messages written and not yet confirmed: a copy arriving meanwhile waits for this one."""
        self._claims: list[tuple[str, str, asyncio.Future[bool]]] = []
        self._claim_task: asyncio.Task[None] | None = None

    async def submit(self, item: Pending) -> ReceiveResult | None:
        self._queue.append(item)
        self._wake()
        return await asyncio.shield(item.future)

    def _wake(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="hub:inbound-writer")

    async def claim(self, source: str, key: str) -> bool:
        """True for the one caller (in any process) that first records ``key`` under ``source``; the
        claims asked for meanwhile are written in one transaction (a replay guard's nonces, say)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._claims.append((source, key, future))
        if self._claim_task is None or self._claim_task.done():
            self._claim_task = asyncio.get_running_loop().create_task(self._drain_claims(), name="hub:inbound-claims")
        return await asyncio.shield(future)

    async def aclose(self) -> None:
        """Let the groups in hand finish, their marks included (at stop, after the connectors stopped
        taking pushes)."""
        while True:
            tasks = [t for t in (self._task, self._claim_task, *self._publishing) if t is not None and not t.done()]
            if not tasks:
                return
            for task in tasks:
                with contextlib.suppress(Exception):
                    await task

    async def _drain_claims(self) -> None:
        while self._claims:
            claims = self._claims[: self.max_group]
            del self._claims[: self.max_group]
            try:
                async with self.db.begin() as conn:
                    won = await inbox.claim_many(conn, [(source, key) for source, key, _ in claims])
            except Exception as exc:  # noqa: BLE001 - the callers get it
                for _, _, future in claims:
                    future.set_exception(exc)
                continue
            for source, key, future in claims:
                future.set_result((source, key) in won)
                won.discard((source, key))  # a second caller with the same key in this group loses

    async def _drain(self) -> None:
        """The write lane: one transaction at a time, in order; each group then publishes on its own."""
        while self._queue or self._unmarked:
            group = self._queue[: self.max_group]
            del self._queue[: self.max_group]
            try:
                await self._write_isolating(group)
            except BaseException as exc:  # settle every caller, whatever happened, then go on or stop
                self._fail(group, exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            if not group:
                continue
            while len(self._publishing) >= self.max_publishing:
                await asyncio.wait(self._publishing, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.get_running_loop().create_task(self._finish(group), name="hub:inbound-publish")
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    @staticmethod
    def _fail(group: Sequence[Pending], exc: BaseException) -> None:
        for item in group:
            if not item.future.done():
                item.future.set_exception(exc if isinstance(exc, Exception) else ConnectionError(str(exc)))

    async def _write_isolating(self, group: list[Pending]) -> None:
        marks, self._unmarked = self._unmarked, []
        try:
            await self._write(group, marks)
            return
        except Exception:
            if len(group) <= 1 and not marks:
                raise
            log.info("inbound.group_failed_isolating", extra={"size": len(group), "marks": len(marks)})
        if marks:
            try:
                await self._write([], marks)
            except Exception:  # confirmed already: a later copy is published again, applied once
                log.warning("inbound.mark_failed", extra={"size": len(marks)}, exc_info=True)
        for item in group:
            try:
                await self._write([item], [])
            except Exception as exc:  # noqa: BLE001 - the caller gets it
                item.future.set_exception(exc)

    async def _finish(self, group: list[Pending]) -> None:
        """Step 2: publish the group, then answer its callers; its inbox marks go to the lane."""
        try:
            live = [i for i in group if not i.future.done()]
            await self._publish(live)
            keyed = [_arrival(i) for i in live if i.publish and i.partner_key is not None and not i.future.done()]
            if keyed:
                self._unmarked.extend(keyed)
                self._wake()
            for item in group:
                if item.future.done():
                    continue
                if item.leader is not None:
                    if not item.leader.future.done():  # the first copy is in an earlier group
                        await asyncio.wait([item.leader.future])
                    if item.leader.future.exception() is not None:
                        item.future.set_exception(item.leader.future.exception())  # type: ignore[arg-type]
                        continue
                    item.result = ReceiveResult(item.leader.result.message_id if item.leader.result else "",
                                                duplicate=True)
                self._count(item)
                item.future.set_result(item.result)
        except BaseException as exc:
            self._fail(group, exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            for item in group:
                if item.partner_key is not None and self._in_flight.get(_key(item)) is item:
                    del self._in_flight[_key(item)]

    async def _write(self, group: Sequence[Pending], marks: Sequence[inbox.Arrival]) -> None:
        """Step 1: the confirmed groups' marks, then admissions, new messages and hops, in one transaction
        (decides each item's result)."""
        leaders: dict[tuple[str, str], Pending] = {}
        keyed: list[Pending] = []
        for item in group:
            item.publish, item.result, item.leader = False, None, None
            if item.envelope is not None and item.partner_key is not None:
                key = _key(item)
                if key in leaders:
                    item.leader = leaders[key]
                else:
                    leaders[key] = item
                    keyed.append(item)
        async with self.db.begin() as conn:
            if marks:
                await inbox.mark_published_many(conn, marks, self.db.sealer)
            if not group:
                return
            entries = await inbox.admit_many(conn, [_arrival(i) for i in keyed], self.db.sealer)
            fresh = {id(i) for i, entry in zip(keyed, entries, strict=True) if entry.new}
            for item, entry in zip(keyed, entries, strict=True):
                if entry.new:
                    continue
                if entry.published:
                    item.result = ReceiveResult(entry.message_id, duplicate=True)
                    continue
                first = self._in_flight.get(_key(item))
                if first is not None:  # its first copy is being published by this process: share its fate
                    item.leader = first
                    continue
                # Stored by an earlier copy that was never confirmed: publish that one now.
                item.envelope, item.body = Envelope.from_json(entry.body), entry.body
                item.publish, item.result = True, ReceiveResult(item.envelope.id, duplicate=False)
            messages: list[StoredMessage] = []
            hops: list[Hop] = []
            for item in group:
                if item.envelope is None:
                    hops.append(item.hop)
                elif item.leader is None and (item.partner_key is None or id(item) in fresh):
                    messages.append(StoredMessage(item.envelope, item.body, {}))
                    hops.append(item.hop)
                    item.publish, item.result = True, ReceiveResult(item.envelope.id, duplicate=False)
            if messages:
                await store_messages(conn, messages, self.db.sealer)
            if hops:
                await append_hops(conn, hops)
        self.groups += 1
        for item in keyed:
            if item.publish:
                self._in_flight[_key(item)] = item

    async def _publish(self, items: Sequence[Pending]) -> None:
        """Step 2: the group's messages in one confirmed publish; one by one if that fails."""
        due = [i for i in items if i.publish]
        if not due:
            return
        envelopes = [i.envelope for i in due if i.envelope is not None]
        try:
            await self.publisher.publish(envelopes, stored=True)
            return
        except Exception as exc:  # noqa: BLE001 - one by one below, or the caller gets it
            if len(due) == 1:
                due[0].future.set_exception(exc)
                return
        for item in due:
            assert item.envelope is not None
            try:
                await self.publisher.publish([item.envelope], stored=True)
            except Exception as exc:  # noqa: BLE001 - the caller gets it
                item.future.set_exception(exc)

    def _count(self, item: Pending) -> None:
        if item.envelope is None:
            self.metrics.inbound.labels(item.source, "rejected").inc()
        elif item.result is not None and item.result.duplicate:
            self.metrics.inbound.labels(item.source, "duplicate").inc()
        else:
            self.metrics.inbound.labels(item.source, "accepted").inc()


__all__ = ["MAX_GROUP", "InboundWriter", "Pending"]
