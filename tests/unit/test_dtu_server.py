"""The DTU server over real loopback TCP: simulated DTUs dial in, register, beat, and their meters
answer real CJ/T 188 frames; readings become ``meter.reading`` messages, garbled bytes and unknown
meters are refused with a reason, requests and replies pair by SER, and a silent meter times out."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from connectors.meters import DtuConnector
from connectors.meters.cjt188 import (
    ErrorReply,
    MeterClock,
    MeteringData,
    ReadData,
    ValveAction,
    ValveControl,
    Volume,
    encode_frame,
    encode_message,
    load_meter_profiles,
)
from connectors.meters.connector import next_daily_run
from connectors.meters.simulator import DtuSimulator, SimulatedMeter
from core.catalogue.messages import MeterReading, ValveState
from hub.connectors.contract import ReceiveResult
from hub.connectors.registry import ConnectorRegistry
from hub.envelope import Envelope
from hub.errors import ConfigError, ConnectorTimeout, PermanentError, TransientError

PROFILES = load_meter_profiles()


class RecordingContext:
    """The hub's side, as the connector sees it: what was received and what was refused."""

    name = "dtu"

    def __init__(self) -> None:
        self.received: list[tuple[Envelope, str | None]] = []
        self.rejected: list[tuple[str, bytes, str]] = []

    async def receive(self, envelope: Envelope, *, partner_key: str | None = None) -> ReceiveResult:
        self.received.append((envelope, partner_key))
        return ReceiveResult(envelope.id, duplicate=False)

    async def reject(self, reason: str, *, body: bytes, source: str) -> None:
        self.rejected.append((reason, body, source))

    def add_routes(self, routes: Sequence[web.RouteDef]) -> None:
        raise AssertionError("the DTU connector mounts no HTTP endpoint")

    def readings(self) -> list[MeterReading]:
        return [MeterReading.model_validate(e.data) for e, _ in self.received if e.type == "meter.reading"]


def address(dtu: int, n: int) -> str:
    return f"{dtu:07d}{n:07d}"


def imei(dtu: int) -> str:
    return f"86{dtu:013d}"


PROFILE_CYCLE = ["cjt188-2004", "cjt188-2018", "valve-2a", "top-bits"]


def settings(dtus: int, meters_per_dtu: int, **extra: Any) -> dict[str, Any]:
    meters = [{"meter_id": f"M{d}-{n}", "address": address(d, n), "dtu": imei(d),
               "profile": PROFILE_CYCLE[n % len(PROFILE_CYCLE)]}
              for d in range(dtus) for n in range(meters_per_dtu)]
    return {"kind": "dtu_cjt188", "host": "127.0.0.1", "port": 0, "daily_read_at": None, "meters": meters,
            "request_timeout_s": 0.5, "registration_timeout_s": 0.5, **extra}


def simulator(connector: DtuConnector, dtu: int, meters_per_dtu: int, **extra: Any) -> DtuSimulator:
    assert connector.port is not None
    meters = [SimulatedMeter(address(dtu, n), PROFILES.get(PROFILE_CYCLE[n % len(PROFILE_CYCLE)]),
                             volume_m3=Decimal(f"{100 + dtu}.{n:02d}")) for n in range(meters_per_dtu)]
    return DtuSimulator("127.0.0.1", connector.port, dtu_id=imei(dtu), meters=meters, **extra)


async def until(condition: Any, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def context() -> RecordingContext:
    return RecordingContext()


async def build(context: RecordingContext, raw: dict[str, Any]) -> DtuConnector:
    connector = ConnectorRegistry().build("dtu", raw, context)
    assert isinstance(connector, DtuConnector)
    await connector.start()
    return connector


@pytest.fixture
async def hub_side(context: RecordingContext) -> AsyncIterator[DtuConnector]:
    connector = await build(context, settings(3, 4))
    yield connector
    await connector.aclose()


@pytest.fixture
async def dtus(hub_side: DtuConnector) -> AsyncIterator[list[DtuSimulator]]:
    sims = [simulator(hub_side, d, 4) for d in range(3)]
    for sim in sims:
        await sim.connect()
    await until(lambda: len(hub_side.sessions) == 3)
    yield sims
    for sim in sims:
        await sim.aclose()


async def test_on_demand_reading_becomes_a_meter_reading(hub_side: DtuConnector, dtus: list[DtuSimulator],
                                                         context: RecordingContext) -> None:
    for n in range(4):  # four meter models: both DI orders, the 2A valve dialect, top-of-byte status bits
        report = await hub_side.read_meter(f"M1-{n}")
        assert report.reading.meter_id == f"M1-{n}"
        assert report.reading.volume_m3 == Decimal(f"101.{n:02d}")
        assert report.reading.valve is ValveState.OPEN
        assert report.meter_clock is not None
        assert abs(report.meter_clock - datetime.now(UTC)) < timedelta(seconds=5)
    readings = context.readings()
    assert [r.meter_id for r in readings] == ["M1-0", "M1-1", "M1-2", "M1-3"]
    assert all(e.subject == e.data["meter_id"] and e.source == "dtu" for e, _ in context.received)
    assert all(key and key.startswith(address(1, 0)[:7]) for _, key in context.received)
    assert context.rejected == []


async def test_every_meter_on_every_dtu_is_read_at_once(context: RecordingContext) -> None:
    connector = await build(context, settings(12, 5))
    sims = [simulator(connector, d, 5) for d in range(12)]
    try:
        for sim in sims:
            await sim.connect()
        await until(lambda: len(connector.sessions) == 12)
        started = time.monotonic()
        summary = await connector.read_all()
        elapsed = time.monotonic() - started
        assert summary.failed == ()
        assert len(summary.read) == 60
        assert sorted(r.meter_id for r in context.readings()) == sorted(summary.read)
        # Buses run in parallel: 12 buses of 5 meters take about 5 bus turns, not 60.
        assert elapsed < 60 * sims[0].bus_delay_s
    finally:
        for sim in sims:
            await sim.aclose()
        await connector.aclose()


async def test_a_bus_carries_one_request_at_a_time(hub_side: DtuConnector, dtus: list[DtuSimulator]) -> None:
    bus = dtus[0]
    bus.bus_delay_s = 0.05
    await asyncio.gather(*(hub_side.read_meter(f"M0-{n}") for n in range(4)))
    arrivals = sorted(t for meter in bus.meters for t, _ in meter.received)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) == 4
    assert min(gaps) >= 0.045  # each request waited for the answer to the one before


async def test_valve_close_reaches_the_meter_wire(hub_side: DtuConnector, dtus: list[DtuSimulator],
                                                  context: RecordingContext) -> None:
    for n in (1, 2):  # standard 04 and the vendor's 2A control code
        meter = dtus[2].meter(address(2, n))
        sent = time.monotonic()
        reply = await hub_side.set_valve(f"M2-{n}", ValveAction.CLOSE)
        arrived, request = meter.received[-1]
        assert isinstance(request, ValveControl)
        assert request.action is ValveAction.CLOSE
        assert arrived - sent < 1.0
        assert meter.valve_closed
        assert hub_side.reported_valve(f"M2-{n}", reply) is ValveState.CLOSED
        report = await hub_side.read_meter(f"M2-{n}")
        assert report.reading.valve is ValveState.CLOSED


async def test_a_valve_command_from_a_route_is_carried_out(hub_side: DtuConnector, dtus: list[DtuSimulator]) -> None:
    command = Envelope(type="valve.command", source="core", subject="M0-3", data={
        "command_id": "close-A1", "meter_id": "M0-3", "action": "close", "reason": "leak alarm A1",
        "requested_by": "core.safety"})
    receipt = await hub_side.deliver(command, "valve")
    assert receipt.partner_ref == "close-A1"
    assert receipt.reply is not None
    assert receipt.reply["state"] == "closed"
    assert receipt.reply["result"] == "ok"
    assert dtus[0].meter(address(0, 3)).valve_closed  # top-of-byte status bits: closed is 0x40
    with pytest.raises(PermanentError, match="has no action"):
        await hub_side.deliver(command, "read")
    with pytest.raises(PermanentError, match=r"not a valve\.command"):
        await hub_side.deliver(Envelope(type="valve.command", source="core", data={"meter_id": "M0-3"}), "valve")


async def test_replies_pair_by_ser_and_a_silent_meter_times_out(hub_side: DtuConnector, dtus: list[DtuSimulator],
                                                                context: RecordingContext) -> None:
    meter = dtus[0].meter(address(0, 0))
    meter.silent = True
    with pytest.raises(ConnectorTimeout, match="did not answer 2 request"):
        await hub_side.read_meter("M0-0")
    sers = [r.ser for _, r in meter.received if isinstance(r, ReadData)]
    assert len(sers) == 2
    assert sers[0] != sers[1]

    # Too slow: each reply arrives after its request timed out. The late reply to the first request
    # must not be taken as the answer to the second (another SER); it is still a reading.
    meter.silent = False
    dtus[0].bus_delay_s = 0.7
    with pytest.raises(ConnectorTimeout):
        await hub_side.read_meter("M0-0")
    await until(lambda: len(context.readings()) == 2)
    assert context.rejected == []


async def test_an_error_reply_without_ser_answers_the_pending_request(hub_side: DtuConnector,
                                                                      dtus: list[DtuSimulator]) -> None:
    profile = PROFILES.get("cjt188-2004")
    session = hub_side.sessions[imei(0)]
    reply = await session.request(lambda ser: ReadData(0x30, address(0, 0), 0xD120, ser), profile,
                                  answer_within=0.5, attempts=1)
    assert reply == ErrorReply(0x30, address(0, 0), 0x01, b"\x01")


async def test_a_garbled_reply_is_refused_and_the_retry_reads(hub_side: DtuConnector, dtus: list[DtuSimulator],
                                                              context: RecordingContext) -> None:
    dtus[1].meter(address(1, 1)).garble = True
    report = await hub_side.read_meter("M1-1")
    assert report.reading.volume_m3 == Decimal("101.01")
    assert len(context.readings()) == 1
    [(reason, body, source)] = context.rejected
    assert reason.startswith(f"garbled bytes from DTU {imei(1)}")
    assert "checksum mismatch" in reason
    assert body[-1] == 0x16
    assert source == f"dtu:{imei(1)}"


async def test_an_unknown_meter_is_refused_and_nothing_published(hub_side: DtuConnector, dtus: list[DtuSimulator],
                                                                 context: RecordingContext) -> None:
    stranger = MeteringData(0x30, "99999999999999", 1, Volume(Decimal(5)), Volume(Decimal(5)),
                            MeterClock(0, 0, 0, 1, 1, 2026), 0)
    await dtus[0].send(encode_frame(encode_message(stranger), preamble=2))
    await until(lambda: bool(context.rejected))
    assert context.rejected[0][0] == f"unknown meter address 99999999999999 on DTU {imei(0)}"
    assert context.received == []
    with pytest.raises(PermanentError, match="is not on any DTU"):
        await hub_side.read_meter("nope")


async def test_heartbeats_are_counted_not_refused(hub_side: DtuConnector, dtus: list[DtuSimulator],
                                                  context: RecordingContext) -> None:
    for _ in range(3):
        await dtus[0].send_heartbeat()
        await asyncio.sleep(0.02)
    await until(lambda: hub_side.sessions[imei(0)].heartbeats == 3)
    assert context.rejected == []


async def test_a_connection_that_does_not_register_is_refused(hub_side: DtuConnector,
                                                              context: RecordingContext) -> None:
    assert hub_side.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", hub_side.port)
    writer.write(b"hello there")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 3) == b""  # the server hung up
    writer.close()
    await writer.wait_closed()
    [(reason, body, _)] = context.rejected
    assert reason.startswith("no DTU registration packet")
    assert body == b"hello there"


async def test_vendor_formats_come_from_configuration(context: RecordingContext) -> None:
    vendors = {"acme": {"registration": {"pattern": r"^\xAA\x55(?P<id>.{4})\x0D", "id_as": "hex", "answer": "AA 00"},
                        "heartbeat": {"pattern": r"^\xAA\x56$"}}}
    raw = settings(0, 0, vendors=vendors)
    raw["meters"] = [{"meter_id": "G1", "address": "12345678901234", "dtu": "01020304", "profile": "cjt188-2018"}]
    connector = await build(context, raw)
    assert connector.port is not None
    sim = DtuSimulator("127.0.0.1", connector.port, dtu_id="01020304",
                       meters=[SimulatedMeter("12345678901234", PROFILES.get("cjt188-2018"))],
                       registration=bytes.fromhex("AA 55 01 02 03 04 0D"), heartbeat=bytes.fromhex("AA 56"))
    try:
        await sim.connect()
        await until(lambda: "01020304" in connector.sessions)
        await sim.send_heartbeat()
        await until(lambda: connector.sessions["01020304"].heartbeats == 1)
        report = await connector.read_meter("G1")
        assert report.reading.volume_m3 == Decimal("100")
        request = sim.meters[0].received[-1][1]
        assert isinstance(request, ReadData)
        assert context.rejected == []
    finally:
        await sim.aclose()
        await connector.aclose()


async def test_a_dtu_that_dials_again_replaces_its_old_connection(hub_side: DtuConnector,
                                                                  dtus: list[DtuSimulator]) -> None:
    old = hub_side.sessions[imei(0)]
    again = simulator(hub_side, 0, 4)
    try:
        await again.connect()
        await until(lambda: hub_side.sessions.get(imei(0)) not in (None, old))
        assert old.closed.is_set()
        await hub_side.read_meter("M0-3")
        assert again.meters[3].received
    finally:
        await again.aclose()


async def test_a_meter_whose_dtu_is_away_is_a_transient_error(hub_side: DtuConnector) -> None:
    with pytest.raises(TransientError, match="is not connected"):
        await hub_side.read_meter("M0-0")


async def test_the_daily_reading_runs_at_its_time(context: RecordingContext, monkeypatch: pytest.MonkeyPatch) -> None:
    connector = await build(context, settings(2, 2, daily_read_at="02:00"))
    sims = [simulator(connector, d, 2) for d in range(2)]
    monkeypatch.setattr("connectors.meters.connector.next_daily_run",
                        lambda now, at, tz: now + timedelta(milliseconds=100))
    task = asyncio.create_task(connector.run())
    try:
        for sim in sims:
            await sim.connect()
        await until(lambda: len(connector.sessions) == 2)
        await until(lambda: len({r.meter_id for r in context.readings()}) == 4)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for sim in sims:
            await sim.aclose()
        await connector.aclose()


def test_next_daily_run() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    at = clock_time(2, 0)
    assert next_daily_run(datetime(2026, 11, 27, 17, 0, tzinfo=UTC), at, tz) == datetime(2026, 11, 28, 2, 0, tzinfo=tz)
    assert next_daily_run(datetime(2026, 11, 27, 18, 0, tzinfo=UTC), at, tz) == datetime(2026, 11, 29, 2, 0, tzinfo=tz)


def test_settings_are_checked(context: RecordingContext, tmp_path: Path) -> None:
    registry = ConnectorRegistry()
    with pytest.raises(ConfigError, match="share address"):
        registry.settings_for("dtu", {**settings(1, 1), "meters": [
            {"meter_id": "A", "address": "1" * 14, "dtu": "x"}, {"meter_id": "B", "address": "1" * 14, "dtu": "x"}]})
    with pytest.raises(ConfigError, match="needs a group"):
        registry.settings_for("dtu", {**settings(0, 0), "vendors": {"v": {"registration": {"pattern": "^x$"}}}})
    with pytest.raises(ConfigError, match="unknown profile"):
        registry.build("dtu", {**settings(0, 0), "meters": [
            {"meter_id": "A", "address": "1" * 14, "dtu": "x", "profile": "nope"}]}, context)
    narrow = tmp_path / "profiles.toml"
    narrow.write_text('default = "n"\n[profiles.n]\naddress_bytes = 5\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="non-standard address width"):
        registry.build("dtu", {**settings(0, 0), "profiles_file": str(narrow), "meters": [
            {"meter_id": "A", "address": "1" * 14, "dtu": "x"}]}, context)
