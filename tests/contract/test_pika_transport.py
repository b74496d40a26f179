"""``PikaTransport`` on its own, without a broker: connection errors and confirm bookkeeping."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from hub.errors import ConfigError, ConnectionLost, PublishNacked, Unroutable
from hub.transport._pika_confirms import ConfirmTracker
from hub.transport.base import OutboundMessage
from hub.transport.pika import PikaTransport


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word of AMQP."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


async def test_an_unreachable_broker_raises_connection_lost_saying_where(closed_port: int) -> None:
    transport = PikaTransport(f"amqp://hub:s3cret@127.0.0.1:{closed_port}/gas")
    async with asyncio.timeout(10):
        with pytest.raises(ConnectionLost) as caught:
            await transport.connect()
    text = str(caught.value)
    assert f"127.0.0.1:{closed_port}" in text
    assert "'gas'" in text
    assert "'hub'" in text
    assert "refused" in text.lower()
    assert "GASHUB_AMQP_URL" in text
    assert "s3cret" not in text
    assert not transport.healthy()
    await transport.aclose()


async def test_a_broker_that_never_answers_times_out_as_connection_lost(silent_server: int) -> None:
    transport = PikaTransport(f"amqp://guest:guest@127.0.0.1:{silent_server}/", connect_timeout=0.3)
    async with asyncio.timeout(10):
        with pytest.raises(ConnectionLost, match="TimeoutError"):
            await transport.connect()
    await transport.aclose()


async def test_publishing_before_connect_raises_connection_lost() -> None:
    transport = PikaTransport("amqp://guest:guest@127.0.0.1:5672/")
    with pytest.raises(ConnectionLost, match="connect"):
        await transport.publish([OutboundMessage("a.b", b"{}", "m1")])


@pytest.mark.parametrize("url", ["http://broker/", "amqp://h:notaport/", "rabbit"])
def test_a_bad_url_is_a_config_error_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PikaTransport(url.replace("h:", "u:s3cret@h:"))
    assert caught.value.where == "amqp_url"
    assert "s3cret" not in str(caught.value)


# Confirm bookkeeping: delivery tags to batches


def _batch(prefix: str, n: int) -> list[OutboundMessage]:
    return [OutboundMessage("a.b", b"{}", f"{prefix}{i}") for i in range(n)]


async def test_a_multiple_ack_settles_every_batch_it_covers() -> None:
    loop = asyncio.get_running_loop()
    tracker = ConfirmTracker()
    first, second, third = loop.create_future(), loop.create_future(), loop.create_future()
    tracker.open_batch(_batch("a", 3), first)  # tags 1-3
    tracker.open_batch(_batch("b", 2), second)  # tags 4-5
    tracker.open_batch(_batch("c", 2), third)  # tags 6-7
    tracker.on_confirm(4, multiple=True, ack=True)
    assert first.done()
    assert first.result() is None
    assert not second.done()
    tracker.on_confirm(7, multiple=True, ack=True)
    assert second.done()
    assert third.done()
    assert tracker.pending == 0


async def test_single_acks_in_any_order_count_once() -> None:
    loop = asyncio.get_running_loop()
    tracker = ConfirmTracker()
    first, second = loop.create_future(), loop.create_future()
    tracker.open_batch(_batch("a", 3), first)  # tags 1-3
    tracker.open_batch(_batch("b", 3), second)  # tags 4-6
    for tag in (5, 2, 2, 6):
        tracker.on_confirm(tag, multiple=False, ack=True)
    assert not first.done()
    assert not second.done()
    tracker.on_confirm(3, multiple=True, ack=True)  # covers 1-3, 2 already counted
    assert first.done()
    assert not second.done()
    tracker.on_confirm(4, multiple=False, ack=True)
    assert second.done()
    assert second.result() is None


async def test_a_nack_fails_only_its_batch() -> None:
    loop = asyncio.get_running_loop()
    tracker = ConfirmTracker()
    first, second = loop.create_future(), loop.create_future()
    tracker.open_batch(_batch("a", 2), first)
    tracker.open_batch(_batch("b", 2), second)
    tracker.on_confirm(1, multiple=False, ack=True)
    tracker.on_confirm(2, multiple=False, ack=False)
    tracker.on_confirm(4, multiple=True, ack=True)
    assert isinstance(first.exception(), PublishNacked)
    assert second.result() is None


async def test_a_return_fails_the_batch_holding_that_message() -> None:
    loop = asyncio.get_running_loop()
    tracker = ConfirmTracker()
    first, second = loop.create_future(), loop.create_future()
    tracker.open_batch(_batch("a", 2), first)
    tracker.open_batch(_batch("b", 2), second)
    tracker.on_return("b1", "gashub", "nowhere", "312 NO_ROUTE")
    tracker.on_confirm(4, multiple=True, ack=True)
    assert first.result() is None
    error = second.exception()
    assert isinstance(error, Unroutable)
    assert "nowhere" in str(error)


async def test_a_lost_channel_fails_everything_and_counts_from_one_again() -> None:
    loop = asyncio.get_running_loop()
    tracker = ConfirmTracker()
    lost = loop.create_future()
    tracker.open_batch(_batch("a", 5), lost)
    tracker.fail_all(lambda _batch: ConnectionLost("gone"))
    assert isinstance(lost.exception(), ConnectionLost)
    fresh = loop.create_future()
    batch = tracker.open_batch(_batch("b", 2), fresh)
    assert (batch.first, batch.last) == (1, 2)
    tracker.on_confirm(2, multiple=True, ack=True)
    assert fresh.result() is None


async def test_a_batch_cut_short_waits_for_what_was_sent_then_fails() -> None:
    loop = asyncio.get_running_loop()
    tracker = ConfirmTracker()
    cut, after = loop.create_future(), loop.create_future()
    batch = tracker.open_batch(_batch("a", 5), cut)
    tracker.truncate(batch, 2, ConnectionLost("encoding failed"))
    assert not cut.done()
    tracker.open_batch(_batch("b", 1), after)  # takes tag 3, not 6
    tracker.on_confirm(3, multiple=True, ack=True)
    assert isinstance(cut.exception(), ConnectionLost)
    assert after.result() is None
