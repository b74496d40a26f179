"""Stand-ins for the NB-IoT platforms, with CJ/T 188 meters behind them.

``CtwingSimulator`` plays CTWing: it pushes ``dataReport`` messages for its meters (``APPdata`` with the
meter's real ``901F`` reply, or decoded fields), online/offline events, and runs the AEP command API:
it checks each call's signature, takes a command once per distinct body (a resend of the same body
gets the same ``commandId``), hands the frame to the meter, and after ``answer_delay_s`` pushes the
``commandResponse`` with the meter's reply in ``resultDetail.APPdata``. Faults: ``garble`` (the next
report's APPdata is corrupt), :meth:`CtwingSimulator.replay` (a captured push sent again, its
timestamp aged), ``api_silent`` (the command API never answers), ``meter_silent`` (commands are taken
but never answered), ``push_responses = False`` (the answer shows only in the command's status).

``OneNetSimulator`` plays OneNET's push: signed data points and the URL check, with ``forge`` to sign
with the wrong token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
from aiohttp import web

from connectors.meters.cjt188 import (
    MeterClock,
    MeteringData,
    ValveControl,
    Volume,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
)
from connectors.meters.simulator import SimulatedMeter
from connectors.nbiot.aep import COMMAND_PATH
from connectors.nbiot.signing import aep_signature, onenet_signature, onenet_text
from hub.connectors.simulation import HttpSimulator

TZ = ZoneInfo("Asia/Shanghai")


@dataclass
class NbDevice:
    """A meter behind an NB-IoT module: its platform ids and the meter itself."""

    device_id: str
    imei: str
    meter: SimulatedMeter
    packet_sn: int = 0

    def metering_frame(self) -> bytes:
        m = self.meter
        volume = register(m.volume_m3)
        clock = MeterClock.from_datetime(datetime.now(TZ))
        data = MeteringData(m.profile.meter_type, m.address, 0, volume, volume, clock, m.status())
        return m.profile.radio_header + encode_frame(encode_message(data, m.profile.dialect), preamble=2)


def register(volume_m3: Decimal) -> Volume:
    """The register as a meter sends it: m³ with two decimals, or m³ × 10 or × 100 when that does not fit
    the four BCD bytes (a large industrial meter past 999,999.99 m³)."""
    for unit, factor in ((0x2C, Decimal(1)), (0x2D, Decimal(10)), (0x2E, Decimal(100))):
        value = (volume_m3 / factor).quantize(Decimal("0.01"), ROUND_DOWN)
        if value <= Decimal("999999.99"):
            return Volume(value, unit)
    raise ValueError(f"register {volume_m3} m³ does not fit a CJ/T 188 volume field")


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        raw = await resp.read()
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = {"text": raw.decode(errors="replace")}
        return resp.status, doc if isinstance(doc, dict) else {"value": doc}


class CtwingSimulator(HttpSimulator):
    def __init__(self, push_url: str, devices: list[NbDevice], *, app_key: str = "sim-app",
                 app_secret: str = "sim-secret",  # noqa: S107 - the simulated platform's own secret
                 master_key: str = "sim-master", product_id: str = "15000001",
                 answer_delay_s: float = 0.05, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.push_url = push_url
        self.devices = {d.device_id: d for d in devices}
        self.app_key, self.app_secret, self.master_key, self.product_id = app_key, app_secret, master_key, product_id
        self.answer_delay_s = answer_delay_s
        self.garble = False
        self.api_silent = False
        self.meter_silent = False
        self.push_responses = True
        """When false, a command's answer shows only in its status (the push is lost)."""
        self.calls: list[dict[str, Any]] = []
        """Every create-command call that arrived: its body (parsed) and whether its signature held."""
        self.commands: dict[bytes, str] = {}
        """Command id by distinct body: what the platform took."""
        self.status: dict[str, str] = {}
        self.pushed: list[tuple[dict[str, Any], int, dict[str, Any]]] = []
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._release = asyncio.Event()

    def routes(self) -> list[web.RouteDef]:
        return [web.post(COMMAND_PATH, self._create), web.get(COMMAND_PATH, self._query)]

    # uplink ---------------------------------------------------------------------------------

    def _envelope(self, device: NbDevice, kind: str, **extra: Any) -> dict[str, Any]:
        return {"tenantId": "2000000", "productId": self.product_id, "deviceId": device.device_id,
                "IMEI": device.imei, "IMSI": "undefined", "protocol": "lwm2m", "messageType": kind,
                "timestamp": int(time.time() * 1000), **extra}

    def report(self, device_id: str) -> dict[str, Any]:
        """A pass-through ``dataReport``: the meter's ``901F`` reply, base64, in ``APPdata``."""
        device = self.devices[device_id]
        device.packet_sn += 1
        frame = bytearray(device.metering_frame())
        if self.garble:
            self.garble = False
            frame[-2] ^= 0xFF
        return self._envelope(device, "dataReport", upPacketSN=device.packet_sn, upDataSN=-1, topic="v1/up/ad",
                              serviceId="", payload={"APPdata": base64.b64encode(bytes(frame)).decode()})

    def report_fields(self, device_id: str) -> dict[str, Any]:
        """An object-model ``dataReport``: decoded fields (register in m³, battery, RSRP, valve)."""
        device = self.devices[device_id]
        device.packet_sn += 1
        m = device.meter
        return self._envelope(device, "dataReport", upPacketSN=device.packet_sn, upDataSN=-1, serviceId="meter",
                              payload={"cumulative_volume": float(m.volume_m3), "battery_voltage": 3.6,
                                       "RSRP": -95, "valve_status": 1 if m.valve_closed else 0})

    def online(self, device_id: str, up: bool) -> dict[str, Any]:
        return self._envelope(self.devices[device_id], "deviceOnlineOfflineReport", eventType=1 if up else 0)

    @staticmethod
    def replay(doc: dict[str, Any], *, age_s: float) -> dict[str, Any]:
        """A captured push sent again later: the same message, its timestamp ``age_s`` old."""
        return {**doc, "timestamp": int((time.time() - age_s) * 1000)}

    async def push(self, doc: dict[str, Any] | bytes, *, url: str | None = None) -> tuple[int, dict[str, Any]]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        status, answer = await _post(self._session, url or self.push_url, body)
        if isinstance(doc, dict):
            self.pushed.append((doc, status, answer))
        return status, answer

    # command API ----------------------------------------------------------------------------

    def _signed(self, request: web.Request, body: bytes) -> bool:
        h = request.headers
        try:
            stamp = int(h.get("timestamp", ""))
        except ValueError:
            return False
        params = {"MasterKey": h.get("MasterKey", ""), **dict(request.query)}
        expected = aep_signature(app_key=self.app_key, app_secret=self.app_secret, timestamp_ms=stamp,
                                 params=params, body=body or None)
        return h.get("application") == self.app_key and h.get("MasterKey") == self.master_key \
            and secrets.compare_digest(expected, h.get("signature", ""))

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.read()
        signed = self._signed(request, body)
        self.calls.append({"body": orjson.loads(body), "signed": signed, "at": time.monotonic()})
        if self.api_silent:
            await self._release.wait()  # until the simulator closes: the caller has timed out by then
            return web.Response(status=503)
        if not signed:
            return web.json_response({"code": 1002, "msg": "signature check failed"}, status=401)
        doc = orjson.loads(body)
        command_id = self.commands.get(body)
        if command_id is None:
            command_id = self.commands[body] = hashlib.sha256(body).hexdigest()[:24]
            self.status[command_id] = "SENT"
            self._spawn(self._execute(command_id, doc))
        return web.json_response({"code": 0, "msg": "ok", "result": {"commandId": command_id,
                                                                     "commandStatus": self.status[command_id]}})

    async def _query(self, request: web.Request) -> web.Response:
        if not self._signed(request, b""):
            return web.json_response({"code": 1002, "msg": "signature check failed"}, status=401)
        command_id = request.query.get("commandId", "")
        if command_id not in self.status:
            return web.json_response({"code": 8001, "msg": "no such command"})
        return web.json_response({"code": 0, "msg": "ok", "result": {"commandId": command_id,
                                                                     "commandStatus": self.status[command_id]}})

    async def _execute(self, command_id: str, doc: dict[str, Any]) -> None:
        device = self.devices.get(str(doc.get("deviceId")))
        if device is None or self.meter_silent:
            return
        await asyncio.sleep(self.answer_delay_s)
        meter = device.meter
        frame = decode_frame(bytes.fromhex(doc["content"]["payload"]), address_bytes=meter.profile.address_bytes)
        request = decode_message(frame, meter.profile.dialect)
        meter.received.append((time.monotonic(), request))
        if meter.silent:
            return
        reply = meter.answer(request, frame.control, TZ)
        wire = encode_frame(encode_message(reply, meter.profile.dialect), preamble=2)
        code = "DELIVERED" if isinstance(request, ValveControl) else "FAILED"
        self.status[command_id] = code
        if not self.push_responses:
            return
        await self.push(self._envelope(device, "commandResponse", taskId=command_id, result={
            "resultCode": code, "resultDetail": {"APPdata": base64.b64encode(wire).decode()}}))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        self._release.set()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().aclose()


@dataclass
class OneNetSimulator:
    """OneNET's data push: signed data points for its meters, and the check of the push URL."""

    push_url: str
    token: str
    devices: list[NbDevice] = field(default_factory=list)
    volume_stream: str = "volume"
    frame_stream: str = "meter_frame"
    forge: bool = False
    """Sign with a wrong token (a forged push)."""
    _session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._session

    def _token(self) -> str:
        return self.token + "-forged" if self.forge else self.token

    def volume_point(self, n: int) -> dict[str, Any]:
        d = self.devices[n]
        return {"type": 1, "dev_id": int(d.device_id) if d.device_id.isdigit() else d.device_id, "ds_id":
                self.volume_stream, "at": int(time.time() * 1000), "value": float(d.meter.volume_m3), "imei": d.imei}

    def frame_point(self, n: int) -> dict[str, Any]:
        d = self.devices[n]
        return {**self.volume_point(n), "ds_id": self.frame_stream, "value": d.metering_frame().hex().upper()}

    def signed(self, msg: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
        nonce = secrets.token_urlsafe(6)
        return {"msg": msg, "nonce": nonce, "msg_signature": onenet_signature(self._token(), nonce, onenet_text(msg))}

    async def push(self, msg: dict[str, Any] | list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        return await _post(self._client(), self.push_url, orjson.dumps(self.signed(msg)))

    async def verify_url(self, msg: str = "verify-me") -> tuple[int, str]:
        """OneNET's URL check: ``GET ?msg=&nonce=&signature=``; returns the status and the text answered."""
        nonce = secrets.token_urlsafe(6)
        params = {"msg": msg, "nonce": nonce, "signature": onenet_signature(self._token(), nonce, msg)}
        async with self._client().get(self.push_url, params=params) as resp:
            return resp.status, await resp.text()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

