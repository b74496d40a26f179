"""Publisher-confirm bookkeeping for ``PikaTransport``: delivery tags to batches, without pika.

A confirm channel numbers its publishes 1, 2, 3... A batch of ``n`` messages takes the next ``n``
tags and one future; the broker's ``basic.ack``/``basic.nack`` frames (single or ``multiple``)
count tags down, and the future resolves when the last tag of its batch is settled. That keeps the
per-message cost at one publish call: no future or dict entry per message.

``basic.return`` (a ``mandatory`` message that reached no queue) always comes before the ack of
the same message, so the returned message's batch is still pending and is found by ``message_id``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hub.errors import PublishNacked, TransportError, Unroutable
from hub.transport.base import OutboundMessage


@dataclass(slots=True, eq=False)
class PendingBatch:
    first: int
    last: int
    messages: Sequence[OutboundMessage]
    future: asyncio.Future[None]
    unsettled: int
    error: TransportError | None = None

    def contains(self, message_id: str | None) -> bool:
        return any(m.message_id == message_id for m in self.messages)


class ConfirmTracker:
    """Tags of one confirm channel; ``fail_all()`` when the channel is lost starts the count again."""

    def __init__(self) -> None:
        self._batches: deque[PendingBatch] = deque()
        self._last_tag = 0
        self._watermark = 0  # every tag up to here is settled
        self._singles: set[int] = set()  # settled one by one above the watermark

    @property
    def pending(self) -> int:
        return len(self._batches)

    def open_batch(self, messages: Sequence[OutboundMessage], future: asyncio.Future[None]) -> PendingBatch:
        """Reserve the tags the next ``len(messages)`` publishes will get. Publish them right after."""
        n = len(messages)
        batch = PendingBatch(self._last_tag + 1, self._last_tag + n, messages, future, n)
        self._last_tag += n
        self._batches.append(batch)
        return batch

    def truncate(self, batch: PendingBatch, sent: int, error: TransportError) -> None:
        """Publishing the newest batch stopped after ``sent`` messages: give the unused tags back.

        The batch fails with ``error`` once the broker has settled what was sent.
        """
        unused = batch.last - batch.first + 1 - sent
        batch.last -= unused
        batch.unsettled -= unused
        self._last_tag -= unused
        if batch.error is None:
            batch.error = error
        self._finish_settled()

    def on_confirm(self, tag: int, *, multiple: bool, ack: bool) -> None:
        """A ``basic.ack`` (``ack=True``) or ``basic.nack`` frame arrived."""
        low = self._watermark
        if multiple:
            if tag <= low:
                return
            for batch in self._batches:
                if batch.first > tag:
                    break
                if batch.last <= low:
                    continue
                lo, hi = max(batch.first, low + 1), min(batch.last, tag)
                settled = hi - lo + 1
                if self._singles:
                    settled -= sum(1 for t in self._singles if lo <= t <= hi)
                self._settle(batch, settled, ack)
            self._watermark = tag
            if self._singles:
                self._singles = {t for t in self._singles if t > tag}
        else:
            if tag <= low or tag in self._singles:
                return
            for batch in self._batches:
                if batch.first <= tag <= batch.last:
                    self._settle(batch, 1, ack)
                    break
            if tag == low + 1:
                self._watermark = tag
            else:
                self._singles.add(tag)
        while self._watermark + 1 in self._singles:
            self._watermark += 1
            self._singles.discard(self._watermark)
        self._finish_settled()

    def _settle(self, batch: PendingBatch, count: int, ack: bool) -> None:
        batch.unsettled -= count
        if not ack and batch.error is None:
            batch.error = PublishNacked(
                f"the broker refused (basic.nack) messages of a batch of {len(batch.messages)}; publish the batch again"
            )

    def on_return(self, message_id: str | None, exchange: str, routing_key: str, reply: str) -> None:
        """A ``basic.return`` arrived: attribute it to the pending batch holding that message."""
        target = next((b for b in self._batches if b.unsettled and b.contains(message_id)), None)
        if target is None:
            target = next((b for b in self._batches if b.unsettled), None)
        if target is None:
            return
        if target.error is None:
            target.error = Unroutable(
                f"no queue is bound for {routing_key!r} on exchange {exchange or '(default)'!r} "
                f"(message {message_id}, broker said {reply})"
            )

    def fail_all(self, error: Callable[[PendingBatch], TransportError]) -> None:
        """The channel is gone: every pending batch fails, and tags restart with the next channel."""
        batches, self._batches = self._batches, deque()
        for batch in batches:
            if not batch.future.done():
                batch.future.set_exception(error(batch))
        self._last_tag = self._watermark = 0
        self._singles.clear()

    def _finish_settled(self) -> None:
        if not any(b.unsettled <= 0 for b in self._batches):
            return
        keep: deque[PendingBatch] = deque()
        for batch in self._batches:
            if batch.unsettled > 0:
                keep.append(batch)
            elif not batch.future.done():
                if batch.error is None:
                    batch.future.set_result(None)
                else:
                    batch.future.set_exception(batch.error)
        self._batches = keep
