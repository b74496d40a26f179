"""Deliveries read straight from a consumer connection's bytes.

For every delivered message pika decodes three frames into objects (method, header, body), builds a
properties object, runs a chain of callbacks and copies its receive buffer once per frame: about a
fifth of a worker's CPU per message. ``read_delivery`` reads a ``Basic.Deliver`` frame with its
content header and body from the buffer in place and returns what a consumer needs. The connection
(``hub.transport._pika_link.HubConnection``) uses it only for consumers that asked for it
(``tap``) and hands everything else to pika unchanged and in order: other frames, deliveries pika
must see (a consumer being cancelled, a channel closing), bodies longer than one frame, and any
frame that is not well formed (pika then raises its own error).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from pika import data as amqp_data

FRAME_METHOD: Final = 1
FRAME_HEADER: Final = 2
FRAME_BODY: Final = 3
FRAME_END: Final = 0xCE
HEAD: Final = struct.Struct(">BHI")
"""Frame type, channel, payload size; the payload and the end octet follow."""
DELIVER_ID: Final = b"\x00\x3c\x00\x3c"
"""Class 60 (basic), method 60 (deliver)."""
_TAG_AND_BITS: Final = struct.Struct(">QB")
_CONTENT: Final = struct.Struct(">HHQH")
"""Class, weight, body size, the first property flag word."""

# Basic properties in wire order, before message-id (AMQP 0-9-1, 4.2.6.1 and pika.spec).
_CONTENT_TYPE: Final = 1 << 15
_CONTENT_ENCODING: Final = 1 << 14
_HEADERS: Final = 1 << 13
_DELIVERY_MODE: Final = 1 << 12
_PRIORITY: Final = 1 << 11
_CORRELATION_ID: Final = 1 << 10
_REPLY_TO: Final = 1 << 9
_EXPIRATION: Final = 1 << 8
_MESSAGE_ID: Final = 1 << 7
_MORE_FLAGS: Final = 1

INCOMPLETE: Final = -1
"""The delivery's frames have not all arrived: read again when more bytes have."""
TO_PIKA: Final = 0
"""Not a delivery this reader takes: pika decodes the frame."""


class Deliver(NamedTuple):
    """What a consumer gets of one delivery (a tuple: one per message, built cheaply)."""

    consumer_tag: str
    delivery_tag: int
    redelivered: bool
    routing_key: str
    message_id: str | None
    headers: dict[str, Any] | None
    body: bytes


OnDeliver = Callable[[Deliver], None]


def read_delivery(buf: bytes, pos: int, channel: int, end: int) -> tuple[int, Deliver | None]:
    """Read the delivery whose method frame spans ``buf[pos:end]`` (checked by the caller: a complete
    method frame on ``channel`` whose payload starts with ``DELIVER_ID``).

    Returns ``(next position, delivery)``, or ``(INCOMPLETE, None)`` when the header or body frame has
    not fully arrived, or ``(TO_PIKA, None)`` when pika should decode these frames itself.
    """
    n = len(buf)
    try:
        off = pos + 11
        size = buf[off]
        consumer_tag = buf[off + 1:off + 1 + size].decode()
        off += 1 + size
        delivery_tag, bits = _TAG_AND_BITS.unpack_from(buf, off)
        off += 9
        off += 1 + buf[off]  # exchange: not needed
        size = buf[off]
        routing_key = buf[off + 1:off + 1 + size].decode()
        if off + 1 + size != end - 1:
            return TO_PIKA, None  # the method frame's fields do not fill it
        hpos = end
        if n - hpos < 7:
            return INCOMPLETE, None
        kind, on, size = HEAD.unpack_from(buf, hpos)
        if kind != FRAME_HEADER or on != channel or size < 14:
            return TO_PIKA, None
        hend = hpos + 8 + size
        if hend > n:
            return INCOMPLETE, None
        if buf[hend - 1] != FRAME_END:
            return TO_PIKA, None
        _class, _weight, body_size, flags = _CONTENT.unpack_from(buf, hpos + 7)
        if flags & _MORE_FLAGS:
            return TO_PIKA, None
        off = hpos + 21
        headers: dict[str, Any] | None = None
        message_id: str | None = None
        if flags & _CONTENT_TYPE:
            off += 1 + buf[off]
        if flags & _CONTENT_ENCODING:
            off += 1 + buf[off]
        if flags & _HEADERS:
            headers, off = amqp_data.decode_table(buf, off)
        if flags & _DELIVERY_MODE:
            off += 1
        if flags & _PRIORITY:
            off += 1
        if flags & _CORRELATION_ID:
            off += 1 + buf[off]
        if flags & _REPLY_TO:
            off += 1 + buf[off]
        if flags & _EXPIRATION:
            off += 1 + buf[off]
        if flags & _MESSAGE_ID:
            size = buf[off]
            message_id = buf[off + 1:off + 1 + size].decode()
            off += 1 + size
        if off > hend - 1:
            return TO_PIKA, None
        if body_size == 0:
            return hend, Deliver(consumer_tag, delivery_tag, bool(bits & 1), routing_key, message_id, headers, b"")
        bpos = hend
        if n - bpos < 7:
            return INCOMPLETE, None
        kind, on, size = HEAD.unpack_from(buf, bpos)
        if kind != FRAME_BODY or on != channel or size != body_size:
            return TO_PIKA, None  # another frame between, or a body in several frames: pika assembles it
        bend = bpos + 8 + size
        if bend > n:
            return INCOMPLETE, None
        if buf[bend - 1] != FRAME_END:
            return TO_PIKA, None
        body = buf[bpos + 7:bend - 1]
    except Exception:  # noqa: BLE001 - whatever is wrong, pika decodes these frames and says so
        return TO_PIKA, None
    return bend, Deliver(consumer_tag, delivery_tag, bool(bits & 1), routing_key, message_id, headers, body)
