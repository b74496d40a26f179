"""One DTU's TCP connection: its registration, its heartbeats, and the meter bus behind it.

A DTU (data transfer unit) dials our server, sends a registration packet naming itself, then passes
bytes between the server and an M-Bus/RS-485 bus of meters unchanged, and sends heartbeats while
idle. A bus carries one conversation at a time, so a session sends one request, waits for the reply
whose address and SER match, and only then sends the next; a reply that comes too late or that
nobody asked for is still handed on (a late ``901F`` reply is still a reading).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from connectors.meters.cjt188 import DecodeError, Frame, FrameSplitter, Garbage, Message, encode_frame, encode_message
from connectors.meters.cjt188.profiles import MeterProfile
from connectors.meters.settings import VendorFormat
from hub.errors import ConnectorTimeout, TransientError

log = logging.getLogger(__name__)
CLOSE_WAIT_S = 5.0
"""How long closing a DTU's connection waits for it to be closed (the peer may have stopped reading)."""

WILDCARD = "AAAAAAAAAAAAAA"


class RegistrationRefused(Exception):
    """The first bytes of a connection match no vendor's registration packet."""


@dataclass(frozen=True, slots=True)
class Registration:
    dtu_id: str
    vendor: str
    rest: bytes
    """Bytes that came after the registration packet in the same read."""


async def read_registration(reader: asyncio.StreamReader, vendors: dict[str, VendorFormat], *,
                            within: float, max_bytes: int = 256) -> Registration:
    """Read until a vendor's registration pattern matches the start of what arrived. Raises
    ``RegistrationRefused`` (with the bytes seen) when none has within ``within`` seconds or ``max_bytes``."""
    patterns = [(name, vendor, vendor.registration.compiled()) for name, vendor in vendors.items()]
    seen = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        for name, vendor, pattern in patterns:
            match = pattern.match(seen)
            if match:
                dtu_id = vendor.registration.dtu_id(match)
                if dtu_id:
                    return Registration(dtu_id, name, seen[match.end():])
        if len(seen) >= max_bytes:
            raise RegistrationRefused(seen)
        try:
            async with asyncio.timeout(max(deadline - loop.time(), 0)):
                chunk = await reader.read(max_bytes)
        except TimeoutError:
            raise RegistrationRefused(seen) from None
        if not chunk:
            raise RegistrationRefused(seen)
        seen += chunk


FrameHandler = Callable[["DtuSession", Frame, bytes], Awaitable[Message | None]]
"""Decodes and checks a frame from the bus (known meter, valid message), hands it on, and returns
the message when it may answer a request (``None`` when it was refused)."""
GarbageHandler = Callable[["DtuSession", Garbage], Awaitable[None]]


class DtuSession:
    """A registered DTU: reads its stream, recognises heartbeats, and runs requests one at a time."""

    def __init__(self, registration: Registration, vendor: VendorFormat, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, on_frame: FrameHandler, on_garbage: GarbageHandler,
                 idle_timeout: float) -> None:
        self.dtu_id = registration.dtu_id
        self.vendor = vendor
        self._reader = reader
        self._writer = writer
        self._on_frame = on_frame
        self._on_garbage = on_garbage
        self._idle_timeout = idle_timeout
        self._heartbeat: re.Pattern[bytes] | None = vendor.heartbeat.compiled() if vendor.heartbeat else None
        self._splitter = FrameSplitter()
        self._bus = asyncio.Lock()
        self._ser = 0
        self._pending: tuple[str, int, asyncio.Future[Message]] | None = None
        self._first = registration.rest
        self.heartbeats = 0
        self.closed = asyncio.Event()

    def _next_ser(self) -> int:
        self._ser = (self._ser + 1) & 0xFF
        return self._ser

    async def request(self, build: Callable[[int], Message], profile: MeterProfile, *, answer_within: float,
                      attempts: int) -> Message:
        """Send ``build(ser)`` and return the meter's reply. Each attempt has a new SER and
        ``answer_within`` seconds; after the last a ``ConnectorTimeout``. ``TransientError`` when the DTU is gone."""
        async with self._bus:
            for _ in range(attempts):
                message = build(self._next_ser())
                ser = getattr(message, "ser", -1)
                future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
                self._pending = (message.address, ser, future)
                try:
                    await self.send(encode_frame(encode_message(message, profile.dialect), preamble=profile.preamble,
                                                 address_bytes=profile.address_bytes))
                    async with asyncio.timeout(answer_within):
                        return await future
                except TimeoutError:
                    log.info("dtu.request_timeout", extra={"dtu": self.dtu_id, "address": message.address,
                                                           "ser": ser})
                finally:
                    self._pending = None
            raise ConnectorTimeout(f"meter {message.address} on DTU {self.dtu_id} did not answer "
                                   f"{attempts} request(s) within {answer_within} s each")

    async def send(self, data: bytes) -> None:
        if self.closed.is_set():
            raise TransientError(f"DTU {self.dtu_id} is not connected")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise TransientError(f"DTU {self.dtu_id}: {exc}") from None

    def _is_heartbeat(self, data: bytes) -> bool:
        if self._heartbeat is None or self._heartbeat.fullmatch(data) is None:
            return False
        self.heartbeats += 1
        return True

    def _answers_pending(self, message: Message) -> bool:
        if self._pending is None:
            return False
        address, ser, _ = self._pending
        if address not in (message.address, WILDCARD):
            return False
        reply_ser = getattr(message, "ser", None)
        return reply_ser is None or reply_ser == ser  # an error reply may carry no SER

    async def _handle(self, chunk: bytes) -> None:
        if self._is_heartbeat(chunk):
            if self.vendor.heartbeat and self.vendor.heartbeat.answer:
                await self.send(self.vendor.heartbeat.answer)
            return
        for item in self._splitter.feed(chunk):
            if isinstance(item, Garbage):
                if not self._is_heartbeat(item.data):
                    await self._on_garbage(self, item)
                continue
            raw = encode_frame(item)
            message = await self._on_frame(self, item, raw)
            if message is not None and self._answers_pending(message):
                assert self._pending is not None
                future = self._pending[2]
                if not future.done():
                    future.set_result(message)

    async def serve(self) -> None:
        """Read until the DTU hangs up, goes silent for ``idle_timeout`` or the task is cancelled."""
        try:
            if self._first:
                await self._handle(self._first)
            while True:
                try:
                    async with asyncio.timeout(self._idle_timeout):
                        chunk = await self._reader.read(4096)
                except TimeoutError:
                    log.info("dtu.idle", extra={"dtu": self.dtu_id})
                    return
                if not chunk:
                    return
                await self._handle(chunk)
        except (ConnectionError, DecodeError) as exc:
            log.info("dtu.connection_lost", extra={"dtu": self.dtu_id, "error": str(exc)})
        finally:
            await self.close()

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if self._pending is not None and not self._pending[2].done():
            self._pending[2].set_exception(TransientError(f"DTU {self.dtu_id} disconnected"))
        self._writer.close()
        # Bounded: a DTU that stopped reading leaves unsent bytes, and the close would wait for them.
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT_S):
                await self._writer.wait_closed()
