"""Deliveries read from the connection's bytes (``hub.transport._pika_deliver``) against pika's own
encoder and decoder: same fields for any properties, the same frames left to pika, in order, however
the bytes are cut into reads."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pika import frame, spec

from hub.transport._pika_deliver import INCOMPLETE, TO_PIKA, Deliver, read_delivery
from hub.transport._pika_link import HubConnection

short = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20).filter(lambda s: len(s.encode()) < 256)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | short,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short, inner, max_size=3),
    max_leaves=8,
)
properties = st.builds(
    spec.BasicProperties,
    content_type=st.none() | short,
    content_encoding=st.none() | short,
    headers=st.none() | st.dictionaries(short, values, max_size=4),
    delivery_mode=st.none() | st.sampled_from([1, 2]),
    priority=st.none() | st.integers(0, 9),
    correlation_id=st.none() | short,
    reply_to=st.none() | short,
    expiration=st.none() | st.integers(1, 10**6).map(str),
    message_id=st.none() | short,
    timestamp=st.none() | st.integers(0, 2**40),
    type=st.none() | short,
    app_id=st.none() | short,
)


def frames(channel: int, tag: str, delivery_tag: int, props: spec.BasicProperties, body: bytes, *,
           routing_key: str = "meter.reading", redelivered: bool = False, frame_max: int = 131072) -> bytes:
    """One delivery as RabbitMQ sends it, made by pika's own encoder."""
    method = spec.Basic.Deliver(consumer_tag=tag, delivery_tag=delivery_tag, redelivered=redelivered,
                                exchange="gashub", routing_key=routing_key)
    out = [frame.Method(channel, method).marshal(), frame.Header(channel, len(body), props).marshal()]
    step = frame_max - 8
    out += [frame.Body(channel, body[i:i + step]).marshal() for i in range(0, len(body), step)]
    return b"".join(out)


def pika_sees(data: bytes) -> list[Any]:
    """pika's decoding of a byte string of frames."""
    out = []
    while data:
        used, value = frame.decode_frame(data)
        out.append(value)
        data = data[used:]
    return out


@settings(max_examples=300, deadline=None)
@given(props=properties, body=st.binary(max_size=300), tag=short, delivery_tag=st.integers(1, 2**64 - 1),
       redelivered=st.booleans(), routing_key=short)
def test_a_delivery_reads_as_pika_decodes_it(props: spec.BasicProperties, body: bytes, tag: str, delivery_tag: int,
                                             redelivered: bool, routing_key: str) -> None:
    data = frames(3, tag, delivery_tag, props, body, routing_key=routing_key, redelivered=redelivered)
    method, header, *_ = pika_sees(data)
    method_end = 8 + int.from_bytes(data[3:7], "big")
    after, got = read_delivery(data, 0, 3, method_end)
    assert after == len(data)
    assert got == Deliver(tag, delivery_tag, redelivered, routing_key, header.properties.message_id,
                          header.properties.headers, body)
    assert (got.delivery_tag, got.redelivered, got.routing_key) == (
        method.method.delivery_tag, method.method.redelivered, method.method.routing_key)


def test_part_of_a_delivery_waits_for_the_rest() -> None:
    data = frames(1, "c", 7, spec.BasicProperties(message_id="m", headers={"a": 1}), b"x" * 100)
    method_end = 8 + int.from_bytes(data[3:7], "big")
    for cut in range(method_end, len(data)):
        assert read_delivery(data[:cut], 0, 1, method_end) == (INCOMPLETE, None)


def test_pika_assembles_bodies_in_several_frames_and_reports_broken_ones() -> None:
    big = frames(1, "c", 1, spec.BasicProperties(), b"y" * 5000, frame_max=1000)
    assert read_delivery(big, 0, 1, 8 + int.from_bytes(big[3:7], "big"))[0] == TO_PIKA
    good = frames(1, "c", 1, spec.BasicProperties(), b"z")
    method_end = 8 + int.from_bytes(good[3:7], "big")
    broken_end = good[:-1] + b"\x00"  # the body frame's end octet
    assert read_delivery(broken_end, 0, 1, method_end) == (TO_PIKA, None)
    other_channel = good[:method_end] + good[method_end:method_end + 1] + b"\x00\x02" + good[method_end + 3:]
    assert read_delivery(other_channel, 0, 1, method_end) == (TO_PIKA, None)


class _Channel:
    def __init__(self, number: int, consumers: set[str], cancelled: frozenset[str] = frozenset()) -> None:
        self.channel_number = number
        self.is_open = True
        self._consumers = dict.fromkeys(consumers)
        self._cancelled = set(cancelled)

    def add_on_close_callback(self, _callback: Any) -> None:
        pass


def connection(channels: list[_Channel]) -> tuple[HubConnection, list[Any]]:
    """A HubConnection without a socket: what pika would process is recorded instead."""
    conn = HubConnection.__new__(HubConnection)
    conn._taps = {}
    conn._frame_buffer = b""
    conn.bytes_received = 0
    conn.frames_received = 0
    conn._channels = {ch.channel_number: ch for ch in channels}
    to_pika: list[Any] = []
    conn._process_frame = to_pika.append  # type: ignore[method-assign]
    return conn, to_pika


def test_the_stream_splits_between_the_tap_and_pika_in_order_for_any_cut_into_reads() -> None:
    props = spec.BasicProperties(message_id="m", headers={"x-gashub-attempt": 1}, delivery_mode=2)
    stream = [
        ("tap", frames(1, "mine", 1, props, b'{"n": 1}')),
        ("pika", frame.Heartbeat().marshal()),
        ("pika", frames(1, "theirs", 2, props, b"not tapped")),
        ("tap", frames(1, "mine", 3, props, b"")),
        ("pika", frames(1, "mine", 4, props, b"b" * 3000, frame_max=1024)),  # several body frames
        ("pika", frame.Method(1, spec.Basic.CancelOk("other")).marshal()),
        ("pika", frames(2, "mine", 5, props, b"channel 2 is not tapped")),
        ("tap", frames(1, "mine", 6, props, b"last", redelivered=True)),
    ]
    data = b"".join(part for _, part in stream)
    expected_pika = [repr(f) for kind, part in stream if kind == "pika" for f in pika_sees(part)]
    rng = random.Random(7)
    for trial in range(200):
        conn, to_pika = connection([_Channel(1, {"mine", "theirs"}), _Channel(2, {"mine"})])
        got: list[Deliver] = []
        conn.tap(_Channel(1, set()), "mine", got.append)
        cuts = sorted(rng.sample(range(1, len(data)), k=min(trial % 40, len(data) - 1)))
        for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
            conn._on_data_available(data[a:b])
        assert [(d.delivery_tag, d.body, d.redelivered) for d in got] == [(1, b'{"n": 1}', False), (3, b"", False),
                                                                          (6, b"last", True)]
        assert [repr(f) for f in to_pika] == expected_pika
        assert conn._frame_buffer == b""
        assert conn.bytes_received == len(data)


def test_a_cancelled_consumer_or_a_closed_channel_is_left_to_pika() -> None:
    props = spec.BasicProperties(message_id="m")
    data = frames(1, "mine", 1, props, b"a")
    for channel in (_Channel(1, {"mine"}, cancelled={"mine"}), _Channel(1, set())):
        conn, to_pika = connection([channel])
        got: list[Deliver] = []
        conn.tap(channel, "mine", got.append)
        conn._on_data_available(data)
        assert got == []
        assert len(to_pika) == 3
    closed = _Channel(1, {"mine"})
    closed.is_open = False
    conn, to_pika = connection([closed])
    conn.tap(closed, "mine", got.append)
    conn._on_data_available(data)
    assert got == []
    assert len(to_pika) == 3


def test_a_consumer_that_raises_leaves_the_rest_for_the_next_read() -> None:
    props = spec.BasicProperties(message_id="m")
    data = frames(1, "mine", 1, props, b"a") + frames(1, "mine", 2, props, b"b")
    conn, _ = connection([_Channel(1, {"mine"})])
    seen: list[int] = []

    def fails_once(d: Deliver) -> None:
        seen.append(d.delivery_tag)
        if len(seen) == 1:
            raise RuntimeError("consumer bug")

    conn.tap(_Channel(1, set()), "mine", fails_once)
    with pytest.raises(RuntimeError):
        conn._on_data_available(data)
    conn._on_data_available(b"")
    assert seen == [1, 2]
