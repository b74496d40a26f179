"""``DtuSimulator``: a DTU that dials the hub, with CJ/T 188 meters on its bus answering real frames.

It connects, sends its registration packet (an IMEI by default) and heartbeats, then plays the bus:
every frame the server sends is decoded, and the addressed meter answers as its model would (its
DI order, its status bits, its valve control code), after a short bus delay. Meters keep a register,
a valve and a battery; ``silent`` meters never answer, ``garble`` makes the next answer corrupt.
Every request a meter received is kept with its arrival time (``SimulatedMeter.received``), so a
test can check what reached a meter's wire and when (a valve-close frame after a leak). A meter can
also report by itself (:meth:`DtuSimulator.report`), with its leak, tamper and battery bits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from connectors.meters.cjt188 import (
    AddressReply,
    DecodeError,
    ErrorReply,
    Frame,
    FrameSplitter,
    Message,
    MeterClock,
    MeteringData,
    MeterProfile,
    ReadAddress,
    ReadData,
    ValveAction,
    ValveControl,
    Volume,
    WriteReply,
    decode_message,
    encode_frame,
    encode_message,
)
from connectors.meters.cjt188.messages import DI_METERING, DI_VALVE

WILDCARD = "AAAAAAAAAAAAAA"


@dataclass
class SimulatedMeter:
    address: str
    profile: MeterProfile = field(default_factory=MeterProfile)
    volume_m3: Decimal = Decimal("100.00")
    valve_closed: bool = False
    battery_low: bool = False
    tamper: bool = False
    leak: bool = False
    """The meter detected a leak itself: its status word carries the profile's ``leak`` bit (when the
    model has one)."""
    silent: bool = False
    garble: bool = False
    """Corrupt the checksum of the next answer (then answer normally again)."""
    received: list[tuple[float, Message]] = field(default_factory=list)
    """Requests this meter got, with ``time.monotonic()`` of arrival."""

    def status(self) -> int:
        bits = self.profile.status
        word = bits.valve_closed if self.valve_closed else bits.valve_open
        if self.battery_low:
            word |= bits.battery_low
        if self.tamper:
            word |= bits.tamper
        if self.leak:
            word |= bits.leak
        return word

    def metering_data(self, ser: int, tz: ZoneInfo) -> MeteringData:
        """This meter's ``901F`` reply (register, clock, status) with ``ser``."""
        volume = Volume(self.volume_m3.quantize(Decimal("0.01")))
        return MeteringData(self.profile.meter_type, self.address, ser, volume, volume,
                            MeterClock.from_datetime(datetime.now(tz)), self.status())

    def answer(self, request: Message, control: int, tz: ZoneInfo) -> Message:
        """What this meter says to a request addressed to it (control code ``control``): an error
        reply to anything but metering data, address and valve control."""
        t = self.profile.meter_type
        match request:
            case ReadData(di=di, ser=ser) if di == DI_METERING:
                return self.metering_data(ser, tz)
            case ReadAddress(ser=ser):
                return AddressReply(t, self.address, ser)
            case ValveControl(ser=ser, action=action):
                self.valve_closed = action is ValveAction.CLOSE
                return WriteReply(t, self.address, self.profile.valve_control_code, DI_VALVE, ser,
                                  self.status().to_bytes(2, "little"))
        return ErrorReply(t, self.address, control & 0x3F, b"\x01")


@dataclass
class DtuSimulator:
    host: str
    port: int
    dtu_id: str = "860000000000001"
    meters: list[SimulatedMeter] = field(default_factory=list)
    registration: bytes | None = None
    """Sent on connect; the IMEI as ASCII when ``None``."""
    heartbeat: bytes | None = None
    """Sent every ``heartbeat_s``; ``HB`` + IMEI when ``None``."""
    heartbeat_s: float = 30.0
    bus_delay_s: float = 0.01
    """Time a meter takes to answer (2400 bps: a 901F reply alone is about 0.17 s on a real bus)."""
    timezone: str = "Asia/Shanghai"
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def meter(self, address: str) -> SimulatedMeter:
        return next(m for m in self.meters if m.address == address)

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        await self.send(self.registration if self.registration is not None else self.dtu_id.encode())
        self._tasks = [asyncio.create_task(self._bus()), asyncio.create_task(self._beat())]

    async def send(self, data: bytes) -> None:
        assert self._writer is not None, "connect() first"
        self._writer.write(data)
        await self._writer.drain()

    async def send_heartbeat(self) -> None:
        await self.send(self.heartbeat if self.heartbeat is not None else b"HB" + self.dtu_id.encode())

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            await self.send_heartbeat()

    async def _bus(self) -> None:
        assert self._reader is not None
        splitter = FrameSplitter()
        tz = ZoneInfo(self.timezone)
        while chunk := await self._reader.read(4096):
            for item in splitter.feed(chunk):
                if isinstance(item, Frame):
                    await self._on_frame(item, tz)

    async def _on_frame(self, frame: Frame, tz: ZoneInfo) -> None:
        for meter in self.meters:
            if frame.address not in (meter.address, WILDCARD):
                continue
            try:
                request = decode_message(frame, meter.profile.dialect)
            except DecodeError:
                continue
            meter.received.append((time.monotonic(), request))
            if meter.silent:
                continue
            reply = meter.answer(request, frame.control, tz)
            await asyncio.sleep(self.bus_delay_s)
            wire = bytearray(encode_frame(encode_message(reply, meter.profile.dialect), preamble=3))
            if meter.garble:
                meter.garble = False
                wire[-2] ^= 0xFF
            await self.send(bytes(wire))
            if frame.address == WILDCARD:
                return  # one meter answers a broadcast (the bus has one when it is used)

    async def report(self, address: str, *, ser: int = 0) -> bytes:
        """The meter at ``address`` reports by itself (a meter-initiated ``901F`` reply, unasked, as
        meters that wake on an event do); returns the bytes put on the wire."""
        meter = self.meter(address)
        wire = bytearray(encode_frame(encode_message(meter.metering_data(ser, ZoneInfo(self.timezone)),
                                                     meter.profile.dialect), preamble=3))
        if meter.garble:
            meter.garble = False
            wire[-2] ^= 0xFF
        await self.send(bytes(wire))
        return bytes(wire)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        self._tasks = []
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
            self._writer = None
