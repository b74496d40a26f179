"""The NB-IoT platform connectors over real loopback HTTP: the CTWing and OneNET simulators push to
the connectors' endpoints, and the CTWing simulator runs the command API the downlink calls.

What they prove: a pass-through ``APPdata`` frame and decoded fields become ``meter.reading`` data;
a platform resend is a duplicate, a replayed (aged) push, an unknown device, a garbled frame, a forged
OneNET signature are refused with their reason and hand the hub nothing; a valve command reaches the
meter as a signed call and its ``commandResponse`` (or the polled status) becomes ``valve.state`` data;
a silent command API is called a bounded number of times with one and the same body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.meters.cjt188 import ValveAction, ValveControl, load_meter_profiles
from connectors.meters.simulator import SimulatedMeter
from connectors.nbiot import CtwingConnector, OneNetConnector
from connectors.nbiot.ctwing import command_ser
from connectors.nbiot.settings import DeviceBinding
from connectors.nbiot.signing import aep_signature, onenet_signature, raw_member
from connectors.nbiot.simulator import CtwingSimulator, NbDevice, OneNetSimulator
from connectors.nbiot.uplink import Refused, reading_from_frame
from core.catalogue.messages import MeterReading, ReadingSource, ValveStateReported
from core.catalogue.messages import ValveCommand as ValveCommandModel
from hub.connectors.contract import ReceiveResult
from hub.connectors.registry import ConnectorRegistry
from hub.envelope import Envelope
from hub.errors import ConfigError, ConnectorTimeout, PermanentError

PROFILES = load_meter_profiles()
ONENET_TOKEN = "onenet-test-token"


class InboxContext:
    """The hub's side: received messages deduplicated by partner key (as the inbox does), refusals."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.received: list[tuple[Envelope, str | None]] = []
        self.rejected: list[tuple[str, bytes, str]] = []
        self.routes: list[web.RouteDef] = []
        self._keys: dict[str, str] = {}

    async def receive(self, envelope: Envelope, *, partner_key: str | None = None) -> ReceiveResult:
        if partner_key is not None and partner_key in self._keys:
            return ReceiveResult(self._keys[partner_key], duplicate=True)
        if partner_key is not None:
            self._keys[partner_key] = envelope.id
        self.received.append((envelope, partner_key))
        return ReceiveResult(envelope.id, duplicate=False)

    async def reject(self, reason: str, *, body: bytes, source: str) -> None:
        self.rejected.append((reason, body, source))

    async def claim_once(self, key: str) -> bool:
        raise AssertionError("not used by the NB-IoT connectors")

    def add_routes(self, routes: Sequence[web.RouteDef]) -> None:
        self.routes.extend(routes)

    def readings(self) -> list[MeterReading]:
        return [MeterReading.model_validate(e.data) for e, _ in self.received if e.type == "meter.reading"]


class Served:
    """A connector's endpoints on a loopback port."""

    def __init__(self, context: InboxContext) -> None:
        self.context = context
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, path: str) -> None:
        app = web.Application()
        app.router.add_routes(self.context.routes)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}{path}"

    async def aclose(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def devices(n: int, profile: str = "cjt188-2018") -> list[NbDevice]:
    return [NbDevice(f"dev{i:04d}", f"8612345678{i:05d}",
                     SimulatedMeter(f"{i:014d}", PROFILES.get(profile), volume_m3=Decimal("100.25") + i))
            for i in range(1, n + 1)]


def bindings(devs: list[NbDevice], profile: str = "cjt188-2018") -> list[dict[str, Any]]:
    return [{"meter_id": f"NB-{d.meter.address[-4:]}", "device_id": d.device_id, "imei": d.imei,
             "address": d.meter.address, "profile": profile} for d in devs]


class Ctwing:
    def __init__(self, connector: CtwingConnector, context: InboxContext, sim: CtwingSimulator) -> None:
        self.connector, self.context, self.sim = connector, context, sim


@pytest.fixture
async def ctwing() -> AsyncIterator[Ctwing]:
    devs = devices(3)
    sim = CtwingSimulator("", devs, answer_delay_s=0.02)
    await sim.start()
    context = InboxContext("ctwing")
    raw = {"kind": "ctwing", "devices": bindings(devs), "base_url": sim.url, "app_key": sim.app_key,
           "app_secret": sim.app_secret, "master_key": sim.master_key, "product_id": sim.product_id,
           "command": {"timeout_s": 0.3, "attempts": 3, "answer_within_s": 2, "poll_every_s": 0.2}}
    connector = ConnectorRegistry().build("ctwing", raw, context)
    assert isinstance(connector, CtwingConnector)
    served = Served(context)
    await served.start("/partners/ctwing/push")
    sim.push_url = served.url
    try:
        yield Ctwing(connector, context, sim)
    finally:
        await connector.aclose()
        await sim.aclose()
        await served.aclose()


async def test_an_appdata_report_becomes_one_reading_dated_by_the_meter(ctwing: Ctwing) -> None:
    doc = ctwing.sim.report("dev0001")
    status, answer = await ctwing.sim.push(doc)
    assert (status, answer["code"], answer["msg"]) == (200, 0, "ok")
    [reading] = ctwing.context.readings()
    assert reading.meter_id == "NB-0001"
    assert reading.volume_m3 == Decimal("101.25")
    assert reading.source == "ctwing"
    assert reading.valve == "open"
    # Dated by the meter's own clock (set right in the simulated meter), the platform's time beside it
    # for the core's clock rule.
    assert reading.received_at == datetime.fromtimestamp(doc["timestamp"] / 1000, UTC)
    assert abs(reading.read_at - reading.received_at) < timedelta(seconds=5)
    assert ctwing.context.received[0][1] == f"dev0001:{doc['upPacketSN']}:-1:{doc['timestamp']}"
    assert ctwing.context.rejected == []


async def test_a_decoded_field_report_becomes_a_reading(ctwing: Ctwing) -> None:
    ctwing.sim.devices["dev0002"].meter.valve_closed = True
    status, _ = await ctwing.sim.push(ctwing.sim.report_fields("dev0002"))
    assert status == 200
    [reading] = ctwing.context.readings()
    assert (reading.meter_id, reading.volume_m3, reading.valve) == ("NB-0002", Decimal("102.25"), "closed")
    assert (reading.battery_v, reading.signal_rsrp) == (Decimal("3.6"), -95)


async def test_a_platform_resend_is_a_duplicate(ctwing: Ctwing) -> None:
    doc = ctwing.sim.report("dev0001")
    first = await ctwing.sim.push(doc)
    again = await ctwing.sim.push(doc)
    assert first[0] == again[0] == 200
    assert again[1]["msg"] == "duplicate"
    assert again[1]["message_id"] == first[1]["message_id"]
    assert len(ctwing.context.readings()) == 1
    assert ctwing.context.rejected == []


async def test_a_module_whose_counters_restarted_is_not_dropped(ctwing: Ctwing) -> None:
    first = ctwing.sim.report("dev0001")
    ctwing.sim.devices["dev0001"].packet_sn = 0  # the module rebooted
    ctwing.sim.devices["dev0001"].meter.volume_m3 += 1
    later = {**ctwing.sim.report("dev0001"), "timestamp": first["timestamp"] + 60_000}
    assert later["upPacketSN"] == first["upPacketSN"]
    assert [(await ctwing.sim.push(d))[1]["msg"] for d in (first, later)] == ["ok", "ok"]
    assert [r.volume_m3 for r in ctwing.context.readings()] == [Decimal("101.25"), Decimal("102.25")]


async def test_a_replayed_push_is_refused_with_its_reason(ctwing: Ctwing) -> None:
    doc = ctwing.sim.report("dev0001")
    await ctwing.sim.push(doc)
    status, answer = await ctwing.sim.push(ctwing.sim.replay(doc, age_s=2 * 3600))
    assert status == 403
    assert answer["msg"].startswith("replayed: timestamp ")
    assert len(ctwing.context.received) == 1
    [(reason, body, source)] = ctwing.context.rejected
    assert reason == answer["msg"]
    assert source == "ctwing"
    assert b"APPdata" in body
    # A replay of a push never seen before is refused the same way: nothing reaches the hub.
    status, _ = await ctwing.sim.push(ctwing.sim.replay(ctwing.sim.report("dev0002"), age_s=4000))
    assert status == 403
    assert len(ctwing.context.received) == 1


async def test_unknown_devices_garbled_frames_and_bad_pushes_are_refused(ctwing: Ctwing) -> None:
    stranger = {**ctwing.sim.report("dev0001"), "deviceId": "nobody", "IMEI": "869999999999999"}
    assert (await ctwing.sim.push(stranger))[0] == 403
    ctwing.sim.garble = True
    status, garbled = await ctwing.sim.push(ctwing.sim.report("dev0003"))
    assert status == 400
    assert garbled["msg"].startswith("garbled frame from device dev0003: ")
    assert (await ctwing.sim.push(b"{not json"))[0] == 400
    no_sn = ctwing.sim.report("dev0001")
    del no_sn["upPacketSN"]
    assert (await ctwing.sim.push(no_sn))[0] == 400
    future = ctwing.sim.replay(ctwing.sim.report("dev0001"), age_s=-3600)
    assert (await ctwing.sim.push(future))[0] == 403
    reasons = [r for r, _, _ in ctwing.context.rejected]
    assert reasons[0] == "unknown device 'nobody' (IMEI '869999999999999'): not configured"
    assert "in the future" in reasons[4]
    assert len(reasons) == 5
    assert ctwing.context.received == []


async def test_another_meters_frame_on_a_device_is_refused(ctwing: Ctwing) -> None:
    doc = ctwing.sim.report("dev0002")
    doc["deviceId"], doc["IMEI"] = "dev0001", ctwing.sim.devices["dev0001"].imei
    status, answer = await ctwing.sim.push(doc)
    assert status == 400
    assert answer["msg"] == "frame from device dev0001 names meter 00000000000002, not its meter 00000000000001"


async def test_online_and_offline_are_acknowledged_and_kept(ctwing: Ctwing) -> None:
    assert (await ctwing.sim.push(ctwing.sim.online("dev0001", True)))[0] == 200
    assert (await ctwing.sim.push(ctwing.sim.online("dev0002", True)))[0] == 200
    assert (await ctwing.sim.push(ctwing.sim.online("dev0002", False)))[0] == 200
    assert ctwing.connector.health().extra["online"] == ["NB-0001"]
    assert ctwing.context.received == []


async def test_a_valve_command_reaches_the_meter_and_its_answer_is_the_valve_state(ctwing: Ctwing) -> None:
    command = Envelope(type="valve.command", source="test", subject="NB-0003", data={
        "command_id": "cmd-close-3", "meter_id": "NB-0003", "action": "close", "reason": "leak",
        "requested_by": "test"})
    receipt = await ctwing.connector.deliver(command, "valve")
    state = ValveStateReported.model_validate(receipt.reply)
    assert (state.meter_id, state.state, state.command_id) == ("NB-0003", "closed", "cmd-close-3")
    assert state.result == "ok (DELIVERED)"
    meter = ctwing.sim.devices["dev0003"].meter
    assert meter.valve_closed
    [(_, frame)] = meter.received
    assert isinstance(frame, ValveControl)
    assert frame.action is ValveAction.CLOSE
    assert frame.ser == command_ser("cmd-close-3")
    [call] = ctwing.sim.calls
    assert call["signed"]
    assert call["body"]["deviceId"] == "dev0003"
    assert call["body"]["content"]["dataType"] == 2
    # The same command delivered again (a redelivery) is not sent to the platform a second time.
    again = await ctwing.connector.deliver(command, "valve")
    assert again.reply is not None
    assert again.reply["state"] == "closed"
    assert len(ctwing.sim.calls) == 1


async def test_without_the_push_the_polled_status_answers(ctwing: Ctwing) -> None:
    ctwing.sim.push_responses = False
    command = Envelope(type="valve.command", source="test", data={
        "command_id": "cmd-open-1", "meter_id": "NB-0001", "action": "open", "reason": "paid",
        "requested_by": "test", "on_site_confirmed": True})
    t0 = time.monotonic()
    receipt = await ctwing.connector.deliver(command, "valve")
    assert receipt.reply is not None
    assert receipt.reply["state"] == "open"
    assert receipt.reply["result"] == "ok (DELIVERED)"
    assert time.monotonic() - t0 < 1.5


async def test_a_silent_command_api_gets_the_same_body_a_bounded_number_of_times(ctwing: Ctwing) -> None:
    ctwing.sim.api_silent = True
    command = Envelope(type="valve.command", source="test", data={
        "command_id": "cmd-close-1", "meter_id": "NB-0001", "action": "close", "reason": "leak",
        "requested_by": "test"})
    with pytest.raises(ConnectorTimeout, match="did not take the command in 3 call"):
        await ctwing.connector.deliver(command, "valve")
    assert len(ctwing.sim.calls) == 3
    assert all(c["body"] == ctwing.sim.calls[0]["body"] for c in ctwing.sim.calls)
    assert ctwing.sim.calls[0]["body"] == ctwing.connector.command_body(
        ValveCommandModel.model_validate(command.data))


async def test_a_meter_that_never_answers_times_out_after_the_bound(ctwing: Ctwing) -> None:
    ctwing.sim.meter_silent = True
    command = Envelope(type="valve.command", source="test", data={
        "command_id": "cmd-close-2", "meter_id": "NB-0002", "action": "close", "reason": "leak",
        "requested_by": "test"})
    t0 = time.monotonic()
    with pytest.raises(ConnectorTimeout, match=r"no answer from the meter to CTWing command .* within 2 s"):
        await ctwing.connector.deliver(command, "valve")
    assert 1.9 < time.monotonic() - t0 < 3.5
    assert len(ctwing.sim.calls) == 1
    assert ctwing.connector.health().extra["commands_waiting"] == 0


async def test_commands_for_unknown_meters_are_permanent_failures(ctwing: Ctwing) -> None:
    command = Envelope(type="valve.command", source="test", data={
        "command_id": "c", "meter_id": "ELSEWHERE", "action": "close", "reason": "r", "requested_by": "t"})
    with pytest.raises(PermanentError, match="on no CTWing device"):
        await ctwing.connector.deliver(command, "valve")
    assert ctwing.sim.calls == []


async def test_a_wrongly_signed_call_is_refused_by_the_platform(ctwing: Ctwing) -> None:
    assert ctwing.connector.client is not None
    ctwing.connector.client.app_secret = "not-the-secret"
    command = Envelope(type="valve.command", source="test", data={
        "command_id": "c2", "meter_id": "NB-0001", "action": "close", "reason": "r", "requested_by": "t"})
    with pytest.raises(PermanentError, match="401"):
        await ctwing.connector.deliver(command, "valve")
    assert [c["signed"] for c in ctwing.sim.calls] == [False]


async def test_the_subscription_url_token_is_checked_when_set() -> None:
    context = InboxContext("ctwing")
    devs = devices(1)
    CtwingConnector(ConnectorRegistry().settings_for("c", {"kind": "ctwing", "devices": bindings(devs),
                                                            "url_token": "s3cret"})[1],  # type: ignore[arg-type]
                    context)
    served = Served(context)
    await served.start("/partners/ctwing/push")
    sim = CtwingSimulator(served.url, devs)
    try:
        assert (await sim.push(sim.report("dev0001")))[0] == 401
        assert (await sim.push(sim.report("dev0001"), url=served.url + "?token=s3cret"))[0] == 200
        assert [r for r, _, _ in context.rejected] == ["bad or missing token in the subscription URL"]
    finally:
        await sim.aclose()
        await served.aclose()


def test_settings_refuse_unknown_profiles_and_shared_ids() -> None:
    devs = devices(2)
    with pytest.raises(ConfigError, match="two devices share device_id"):
        ConnectorRegistry().settings_for("c", {"kind": "ctwing", "devices": [bindings(devs)[0]] * 2})
    bad = [{**bindings(devs)[0], "profile": "no-such-model"}]
    with pytest.raises(ConfigError, match="no meter profile 'no-such-model'"):
        ConnectorRegistry().build("c", {"kind": "ctwing", "devices": bad}, InboxContext("c"))


def test_the_aep_signature_is_hmac_sha1_over_the_documented_text() -> None:
    body = b'{"deviceId":"d1"}'
    text = b"application:app\ntimestamp:1700000000000\nMasterKey:mk\nb:2\n" + body + b"\n"
    expected = base64.b64encode(hmac.new(b"sec", text, hashlib.sha1).digest()).decode()
    assert aep_signature(app_key="app", app_secret="sec", timestamp_ms=1700000000000,
                         params={"b": "2", "MasterKey": "mk"}, body=body) == expected


def test_the_onenet_signature_is_base64_md5_of_token_nonce_msg() -> None:
    assert onenet_signature("tok", "abc", "hello") == base64.b64encode(hashlib.md5(b"tokabchello").digest()).decode()


class OneNet:
    def __init__(self, context: InboxContext, sim: OneNetSimulator, connector: OneNetConnector) -> None:
        self.context, self.sim, self.connector = context, sim, connector


@pytest.fixture
async def onenet() -> AsyncIterator[OneNet]:
    devs = devices(2, "cjt188-2004")
    context = InboxContext("onenet")
    connector = ConnectorRegistry().build("onenet", {"kind": "onenet", "token": ONENET_TOKEN,
                                                     "devices": bindings(devs, "cjt188-2004")}, context)
    assert isinstance(connector, OneNetConnector)
    served = Served(context)
    await served.start("/partners/onenet/push")
    sim = OneNetSimulator(served.url, ONENET_TOKEN, devs)
    try:
        yield OneNet(context, sim, connector)
    finally:
        await sim.aclose()
        await served.aclose()


async def test_onenet_url_verification_echoes_msg_only_when_signed_right(onenet: OneNet) -> None:
    assert await onenet.sim.verify_url("hello+world/=") == (200, "hello+world/=")
    onenet.sim.forge = True
    status, text = await onenet.sim.verify_url("x")
    assert (status, text) == (401, "URL verification with a wrong signature")
    assert [r for r, _, _ in onenet.context.rejected] == ["URL verification with a wrong signature"]


async def test_onenet_points_become_readings_and_a_forged_push_nothing(onenet: OneNet) -> None:
    status, answer = await onenet.sim.push([onenet.sim.volume_point(0), onenet.sim.frame_point(1)])
    assert (status, answer["readings"]) == (200, 2)
    readings = {r.meter_id: r for r in onenet.context.readings()}
    assert readings["NB-0001"].volume_m3 == Decimal("101.25")
    assert readings["NB-0001"].source == "onenet"
    assert readings["NB-0002"].volume_m3 == Decimal("102.25")
    assert readings["NB-0002"].valve == "open"
    point = onenet.sim.volume_point(0)
    assert (await onenet.sim.push(point))[1]["duplicates"] == 0
    assert (await onenet.sim.push(point))[1]["duplicates"] == 1
    onenet.sim.forge = True
    status, answer = await onenet.sim.push(onenet.sim.volume_point(1))
    assert status == 401
    assert answer["msg"].startswith("forged or missing msg_signature")
    assert len(onenet.context.received) == 3
    assert [r for r, _, _ in onenet.context.rejected] == [answer["msg"]]


async def test_onenet_online_offline_and_other_streams_publish_nothing(onenet: OneNet) -> None:
    online = {**onenet.sim.volume_point(0), "type": 2, "status": 1}
    other = {**onenet.sim.volume_point(1), "ds_id": "temperature", "value": 21}
    status, answer = await onenet.sim.push([online, other])
    assert (status, answer["readings"]) == (200, 0)
    assert onenet.connector.health().extra["online"] == ["NB-0001"]
    stranger = {**onenet.sim.volume_point(0), "dev_id": 424242, "imei": "860000000000000"}
    assert (await onenet.sim.push(stranger))[0] == 403
    assert onenet.context.received == []


@pytest.mark.parametrize(("body", "expected"), [
    ('{"msg": {"a": 101.250, "b": [1, 2]}, "nonce": "n"}', '{"a": 101.250, "b": [1, 2]}'),
    ('{ "nonce" : "n" , "msg":"text, with {braces}" }', '"text, with {braces}"'),
    ('{"nonce": "n"}', None),
    ('[{"msg": 1}]', None),
    ('{"msg": {"a": ', None),
])
def test_the_raw_text_of_msg_is_found_as_sent(body: str, expected: str | None) -> None:
    assert raw_member(body, "msg") == expected


async def test_a_onenet_push_signed_over_its_text_as_sent_is_taken(onenet: OneNet) -> None:
    point = onenet.sim.volume_point(0)
    msg_text = (f'{{ "type": 1, "dev_id": "{point["dev_id"]}", "ds_id": "volume", "at": {point["at"]}, '
                f'"value": 101.250, "imei": "{point["imei"]}" }}')
    body = (f'{{"msg": {msg_text}, "nonce": "abc", '
            f'"msg_signature": "{onenet_signature(ONENET_TOKEN, "abc", msg_text)}"}}').encode()
    session = onenet.sim._client()
    async with session.post(onenet.sim.push_url, data=body) as resp:
        assert resp.status == 200
    [reading] = onenet.context.readings()
    assert reading.volume_m3 == Decimal("101.250")


STANDARD_WIDTH = sorted(n for n, p in PROFILES.profiles.items() if p.address_bytes == 7)


@settings(max_examples=200, deadline=None)
@given(profile=st.sampled_from(STANDARD_WIDTH), cents=st.integers(0, 99_999_999), closed=st.booleans(),
       address=st.integers(0, 10**14 - 1))
def test_any_meters_appdata_frame_reads_back_as_its_register(profile: str, cents: int, closed: bool,
                                                             address: int) -> None:
    """Property: for every standard-width profile, a meter's own 901F reply (with its radio header)
    is read back as exactly its register and valve; one flipped checksum bit makes it a refusal."""
    meter = SimulatedMeter(f"{address:014d}", PROFILES.get(profile), volume_m3=Decimal(cents) / 100,
                           valve_closed=closed)
    device = NbDevice("d", "861234567890001", meter)
    binding = DeviceBinding(meter_id="M", device_id="d", address=meter.address, profile=profile)
    at = datetime(2026, 5, 1, tzinfo=UTC)
    raw = device.metering_frame()
    data = reading_from_frame(binding, PROFILES.get(profile), raw, received_at=at, tz=UTC, source=ReadingSource.CTWING)
    assert Decimal(data["volume_m3"]) == Decimal(cents) / 100
    assert data["valve"] == ("closed" if closed else "open")
    broken = bytearray(raw)
    broken[-2] ^= 0x01
    with pytest.raises(Refused, match="garbled frame"):
        reading_from_frame(binding, PROFILES.get(profile), bytes(broken), received_at=at, tz=UTC,
                           source=ReadingSource.CTWING)


async def test_a_register_past_four_bcd_bytes_goes_in_a_larger_unit(ctwing: Ctwing) -> None:
    # A large industrial meter past 999,999.99 m³ reports in m³ × 10 (unit byte 2D): 0.1 m³ steps.
    ctwing.sim.devices["dev0003"].meter.volume_m3 = Decimal("2759545.17")
    status, _ = await ctwing.sim.push(ctwing.sim.report("dev0003"))
    assert status == 200
    [reading] = ctwing.context.readings()
    assert reading.volume_m3 == Decimal("2759545.1")
