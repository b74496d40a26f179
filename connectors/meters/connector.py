"""Smart gas meters behind DTUs that dial in over TCP, speaking CJ/T 188 (2004 and 2018 editions).

Partner: the company's own meters, on M-Bus/RS-485 buses each behind a DTU (a cellular modem that
dials our server and passes bytes through). Protocol: the DTU sends a registration packet naming
itself and heartbeats, formats per vendor (:class:`~connectors.meters.settings.VendorFormat`); the
server then speaks CJ/T 188 to the meters through it, one request at a time per bus, pairing each
reply to its request by address and SER, with a timeout and retries. Meter models differ in DI byte
order, status bits and valve control code: ``config/meter_profiles.toml``. Authentication: none in
the protocol; a DTU is known by its registration id and a meter by its address, and frames from a
meter that is not configured are refused. Every ``901F`` reply, asked for or not, is published as a
canonical ``meter.reading``; garbled bytes and unknown meters are refused with an audit record and
nothing is published for them. A report whose status bits say the meter detected a leak (the
profile's ``leak`` mask) raises ``alarm.raised`` first, in the reading's flow. Readings run daily at
``daily_read_at``, on demand, and whenever a meter reports by itself
(:meth:`DtuConnector.read_meter`); :meth:`DtuConnector.set_valve` opens or closes a valve.
Settings: :class:`~connectors.meters.settings.DtuSettings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import ClassVar
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from connectors.meters.alarms import leak_alarm
from connectors.meters.cjt188 import (
    DecodeError,
    ErrorReply,
    Frame,
    Garbage,
    Message,
    MeteringData,
    MeterReport,
    ReadData,
    ValveAction,
    ValveControl,
    WriteReply,
    decode_message,
    load_meter_profiles,
    meter_report,
    reading_data,
)
from connectors.meters.cjt188.frame import ADDRESS_BYTES
from connectors.meters.cjt188.messages import DI_METERING
from connectors.meters.cjt188.profiles import MeterProfile, MeterProfiles
from connectors.meters.dtu import CLOSE_WAIT_S, DtuSession, RegistrationRefused, read_registration
from connectors.meters.settings import DtuSettings, MeterBinding
from core.catalogue.messages import MessageType, ValveCommand, ValveState
from core.catalogue.messages import ValveAction as CanonicalValveAction
from hub.connectors.contract import Capability, ConnectorContext, Health, InboundConnector, OutboundConnector, Receipt
from hub.envelope import Envelope
from hub.errors import ConfigError, HubError, PermanentError, TransientError

log = logging.getLogger(__name__)

ReadBuilder = Callable[[int], Message]


def next_daily_run(now: datetime, at: time, tz: tzinfo) -> datetime:
    """The first ``at`` (local time in ``tz``) strictly after ``now``."""
    local = now.astimezone(tz)
    candidate = datetime.combine(local.date(), at, tzinfo=tz)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=tz)
    return candidate


@dataclass(frozen=True, slots=True)
class ReadSummary:
    """What a round of readings did: meters read, and the meters that failed with why."""

    read: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]


class DtuConnector(InboundConnector[DtuSettings], OutboundConnector[DtuSettings]):
    kind = "dtu_cjt188"
    settings_model = DtuSettings
    capabilities = frozenset({Capability.INBOUND, Capability.OUTBOUND, Capability.REQUEST_REPLY})
    actions: ClassVar[Mapping[str, str]] = {"valve": MessageType.VALVE_COMMAND.value}
    """``valve`` takes ``valve.command`` and answers ``valve.state`` data once the meter acknowledged."""
    delivers_where_started = True  # the DTUs dial in to this process's server: only it can reach them

    def __init__(self, settings: DtuSettings, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self.profiles: MeterProfiles = load_meter_profiles(settings.profiles_file)
        self.tz = ZoneInfo(settings.timezone)
        self._by_address: dict[str, MeterBinding] = {m.address: m for m in settings.meters}
        self._by_id: dict[str, MeterBinding] = {m.meter_id: m for m in settings.meters}
        for meter in settings.meters:
            if meter.profile is not None and meter.profile not in self.profiles.profiles:
                raise ConfigError(f"meter {meter.meter_id!r} names unknown profile {meter.profile!r}",
                                  where=f"connectors.{context.name}.meters")
            if self.profiles.get(meter.profile).address_bytes != ADDRESS_BYTES:
                # One splitter reads a whole bus, so every meter on it must have the standard width.
                raise ConfigError(f"meter {meter.meter_id!r}: profile {meter.profile!r} has a non-standard "
                                  "address width, which a DTU bus does not support yet",
                                  where=f"connectors.{context.name}.meters")
        self.sessions: dict[str, DtuSession] = {}
        self.last_reports: dict[str, MeterReport] = {}
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def _profile(self, meter: MeterBinding) -> MeterProfile:
        return self.profiles.get(meter.profile)

    async def start(self) -> None:
        """Bind the TCP server (a port in use is found at start-up, not later)."""
        self._server = await asyncio.start_server(self._accept, self.settings.host, self.settings.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("dtu.listening", extra={"connector": self.context.name, "port": self.port})

    async def run(self) -> None:
        """Serve DTUs (the server runs from ``start``) and read every meter daily until cancelled."""
        if self._server is None:
            await self.start()
        at = self.settings.daily_read_at
        if at is None:
            await asyncio.Event().wait()
            return
        while True:
            due = next_daily_run(datetime.now(UTC), at, self.tz)
            await asyncio.sleep((due - datetime.now(UTC)).total_seconds())
            summary = await self.read_all()
            log.info("dtu.daily_reading", extra={"read": len(summary.read), "failed": len(summary.failed)})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions.values()):
            await session.close()
        for writer in list(self._writers):
            writer.close()

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.stop()
            if self._server is not None:
                async with asyncio.timeout(CLOSE_WAIT_S):  # newer Pythons wait for every connection here
                    await self._server.wait_closed()
        self._server = None

    def health(self) -> Health:
        return Health(ok=self._server is not None, detail=f"{len(self.sessions)} DTU(s) connected",
                      extra={"dtus": sorted(self.sessions), "port": self.port})

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            try:
                registration = await read_registration(reader, self.settings.vendors,
                                                       within=self.settings.registration_timeout_s)
            except RegistrationRefused as refused:
                peer = writer.get_extra_info("peername")
                await self.context.reject(f"no DTU registration packet from {peer}", body=bytes(refused.args[0]),
                                          source="dtu")
                return
            vendor = self.settings.vendors[registration.vendor]
            session = DtuSession(registration, vendor, reader, writer, on_frame=self._on_frame,
                                 on_garbage=self._on_garbage, idle_timeout=self.settings.idle_timeout_s)
            old = self.sessions.get(session.dtu_id)
            if old is not None:  # the DTU dialled again: its old connection is dead or dying
                await old.close()
            self.sessions[session.dtu_id] = session
            answer = vendor.registration.answer
            if answer:
                await session.send(answer)
            log.info("dtu.registered", extra={"dtu": session.dtu_id, "vendor": registration.vendor})
            try:
                await session.serve()
            finally:
                if self.sessions.get(session.dtu_id) is session:
                    del self.sessions[session.dtu_id]
        except (HubError, ConnectionError, OSError) as exc:
            log.warning("dtu.session_failed", extra={"error": str(exc)})
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _on_garbage(self, session: DtuSession, garbage: Garbage) -> None:
        await self.context.reject(f"garbled bytes from DTU {session.dtu_id} at stream offset {garbage.offset}: "
                                  f"{garbage.reason}", body=garbage.data, source=f"dtu:{session.dtu_id}")

    async def _on_frame(self, session: DtuSession, frame: Frame, raw: bytes) -> Message | None:
        source = f"dtu:{session.dtu_id}"
        meter = self._by_address.get(frame.address)
        if meter is None:
            await self.context.reject(f"unknown meter address {frame.address} on DTU {session.dtu_id}",
                                      body=raw, source=source)
            return None
        if not frame.is_reply:
            log.info("dtu.request_on_bus", extra={"dtu": session.dtu_id, "address": frame.address})
            return None
        profile = self._profile(meter)
        try:
            message = decode_message(frame, profile.dialect)
            if isinstance(message, MeteringData):
                await self._publish(meter, profile, message, source)
        except DecodeError as exc:
            await self.context.reject(f"garbled frame from meter {frame.address}: {exc}", body=raw, source=source)
            return None
        return message

    async def _publish(self, meter: MeterBinding, profile: MeterProfile, data: MeteringData, source: str) -> None:
        received = datetime.now(UTC)
        report = meter_report(data, profile, meter_id=meter.meter_id, received_at=received, tz=self.tz)
        self.last_reports[meter.meter_id] = report
        stamp = (report.meter_clock or received.replace(microsecond=0)).isoformat()
        envelope = Envelope(type=MessageType.METER_READING.value, source=self.context.name, subject=meter.meter_id,
                            data=reading_data(report))
        alarm = leak_alarm(profile, data.status, meter_id=meter.meter_id, detected_at=report.reading.read_at,
                           tz=self.tz, reading=envelope, via=source)
        try:
            if alarm is not None:  # safety first: the alarm goes out before the reading it came with
                await self.context.receive(alarm, partner_key=alarm.data["alarm_id"])
            await self.context.receive(envelope, partner_key=f"{meter.address}:{stamp}:{report.reading.volume_m3}")
        except HubError as exc:
            log.warning("dtu.reading_not_accepted", extra={"meter": meter.meter_id, "error": str(exc),
                                                           "via": source})

    def _meter(self, meter_id: str) -> tuple[MeterBinding, MeterProfile, DtuSession]:
        meter = self._by_id.get(meter_id)
        if meter is None:
            raise PermanentError(f"meter {meter_id!r} is not on any DTU of connector {self.context.name!r}")
        session = self.sessions.get(meter.dtu)
        if session is None:
            raise TransientError(f"DTU {meter.dtu} of meter {meter_id!r} is not connected")
        return meter, self._profile(meter), session

    async def _ask(self, session: DtuSession, profile: MeterProfile, build: ReadBuilder) -> Message:
        reply = await session.request(build, profile, answer_within=self.settings.request_timeout_s,
                                      attempts=self.settings.attempts)
        if isinstance(reply, ErrorReply):
            raise PermanentError(f"meter refused function {reply.function:02X}: status {reply.status.hex().upper()}")
        return reply

    async def read_meter(self, meter_id: str) -> MeterReport:
        """Read a meter now (``901F``); its reading is published like a scheduled one."""
        meter, profile, session = self._meter(meter_id)
        reply = await self._ask(session, profile,
                                lambda ser: ReadData(profile.meter_type, meter.address, DI_METERING, ser))
        if not isinstance(reply, MeteringData):
            raise PermanentError(f"meter {meter_id!r} answered a 901F read with {type(reply).__name__}")
        return self.last_reports[meter_id]

    async def set_valve(self, meter_id: str, action: ValveAction) -> WriteReply:
        """Open or close a meter's valve and return its acknowledgement."""
        meter, profile, session = self._meter(meter_id)
        reply = await self._ask(session, profile,
                                lambda ser: ValveControl(profile.meter_type, meter.address, ser, action))
        if not isinstance(reply, WriteReply):
            raise PermanentError(f"meter {meter_id!r} answered valve control with {type(reply).__name__}")
        return reply

    async def deliver(self, envelope: Envelope, action: str) -> Receipt:
        """Carry out a ``valve.command`` on the meter's wire. Opening and closing are idempotent on the
        meter, so a retried command is harmless; the answer is the ``valve.state`` the meter confirmed."""
        if action != "valve":
            raise PermanentError(f"connector {self.context.name!r} has no action {action!r}")
        try:
            command = ValveCommand.model_validate(envelope.data)
        except ValidationError as exc:
            raise PermanentError(f"not a valve.command: {exc.errors()[0]['msg']}") from None
        wanted = ValveAction.OPEN if command.action is CanonicalValveAction.OPEN else ValveAction.CLOSE
        reply = await self.set_valve(command.meter_id, wanted)
        expected = ValveState.OPEN if wanted is ValveAction.OPEN else ValveState.CLOSED
        reported = self.reported_valve(command.meter_id, reply)
        return Receipt(partner_ref=command.command_id, reply={
            "meter_id": command.meter_id, "state": (reported or expected).value,
            "observed_at": datetime.now(UTC).isoformat(), "command_id": command.command_id,
            "result": "ok" if reported in (None, expected) else f"meter reports its valve {reported.value}",
        })

    def reported_valve(self, meter_id: str, reply: WriteReply) -> ValveState | None:
        """The valve state in a write reply's status (ST0, maybe ST1), read with the meter's status bits."""
        if not reply.status:
            return None
        return self.profiles.get(self._by_id[meter_id].profile).status.valve(int.from_bytes(reply.status, "little"))

    async def read_all(self) -> ReadSummary:
        """Read every configured meter on every connected DTU: buses in parallel, meters on one bus in turn."""
        by_dtu: dict[str, list[MeterBinding]] = {}
        for meter in self.settings.meters:
            by_dtu.setdefault(meter.dtu, []).append(meter)
        read: list[str] = []
        failed: list[tuple[str, str]] = []

        async def bus(meters: list[MeterBinding]) -> None:
            for meter in meters:
                try:
                    await self.read_meter(meter.meter_id)
                    read.append(meter.meter_id)
                except HubError as exc:
                    failed.append((meter.meter_id, str(exc)))

        async with asyncio.TaskGroup() as group:
            for meters in by_dtu.values():
                group.create_task(bus(meters))
        return ReadSummary(tuple(sorted(read)), tuple(sorted(failed)))

