"""NB-IoT meters through China Mobile's OneNET (legacy data push): URL verification and signed pushes.

Partner: OneNET, the platform NB-IoT meters on China Mobile's network report to. Protocol: when the
push URL ``{path}`` (``/partners/onenet/push``) is configured, OneNET checks it with ``GET
?msg=&nonce=&signature=``; we answer ``msg`` when the signature is right. Pushes are ``POST``
``{"msg": {…} or [{…}, …], "msg_signature", "nonce"}``; each ``msg`` has ``type`` (1 data point,
2 online/offline), ``dev_id``, ``ds_id``, ``at`` (ms), ``value``, ``imei``, ``status``.
Authentication: Base64(MD5(token + nonce + msg)) with the token configured on OneNET
(``GASHUB_CONNECTORS__ONENET__TOKEN``), for the URL check and every push (:mod:`.signing`).

A data point of the ``volume_stream`` (the register in m³) or the ``frame_stream`` (a CJ/T 188 frame,
hex or base64, decoded with the device's profile) becomes a ``meter.reading`` (source ``onenet``),
read at ``at``; other streams are acknowledged and dropped. Online/offline is acknowledged and kept
in :meth:`OneNetConnector.health` (see the CTWing connector for why nothing is published).
Duplicates are dropped by ``dev_id`` + ``ds_id`` + ``at`` (the inbox). A wrong signature (401),
an unknown device (403) and a malformed push (400) are refused, audited and store nothing; the
answer is 200 only after the broker confirmed. Settings: :class:`~connectors.nbiot.settings.OneNetSettings`.
"""

from __future__ import annotations

import logging
import string
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from connectors.meters.cjt188 import load_meter_profiles
from connectors.nbiot.settings import FieldMap, OneNetSettings
from connectors.nbiot.signing import onenet_signed_texts, onenet_valid
from connectors.nbiot.uplink import Devices, Refused, frame_bytes, reading_from_fields, reading_from_frame
from core.catalogue.messages import MessageType, ReadingSource
from hub.connectors.contract import Capability, ConnectorContext, Health, InboundConnector
from hub.connectors.http import read_capped
from hub.envelope import Envelope
from hub.errors import HubError

log = logging.getLogger(__name__)

DATA_POINT, ONLINE_OFFLINE = 1, 2
_HEX = set(string.hexdigits + " ")


class OneNetConnector(InboundConnector[OneNetSettings]):
    kind = "onenet"
    settings_model = OneNetSettings
    capabilities = frozenset({Capability.INBOUND, Capability.HTTP_ENDPOINT})

    def __init__(self, settings: OneNetSettings, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self.tz = ZoneInfo(settings.timezone)
        self.token = settings.token.get_secret_value()
        self.devices = Devices(settings.devices, load_meter_profiles(settings.profiles_file))
        self.online: dict[str, tuple[bool, datetime]] = {}
        self.accepted = 0
        context.add_routes([web.get(settings.path, self.verify_url), web.post(settings.path, self.push)])

    async def run(self) -> None:
        return None

    def health(self) -> Health:
        return Health(ok=True, extra={"accepted": self.accepted,
                                      "online": sorted(m for m, (up, _) in self.online.items() if up)})

    async def verify_url(self, request: web.Request) -> web.Response:
        """OneNET's check of the push URL: echo ``msg`` when the signature is right."""
        msg, nonce, signature = (request.query.get(k, "") for k in ("msg", "nonce", "signature"))
        if not (msg and nonce and signature) or not onenet_valid(self.token, nonce, msg, signature):
            reason = ("URL verification with a wrong signature" if signature
                      else "URL verification without msg, nonce and signature")
            await self.context.reject(reason, body=request.query_string.encode()[:2048], source="onenet")
            return web.Response(status=401, text=reason)
        return web.Response(text=msg)

    async def push(self, request: web.Request) -> web.Response:
        body = await read_capped(request.content, self.settings.max_body_bytes)
        try:
            return await self._push(body)
        except Refused as refused:
            await self.context.reject(refused.reason, body=body[:self.settings.max_body_bytes], source="onenet")
            return web.json_response({"code": refused.status, "msg": refused.reason}, status=refused.status)

    async def _push(self, body: bytes) -> web.Response:
        if len(body) > self.settings.max_body_bytes:
            raise Refused(413, f"body over {self.settings.max_body_bytes} bytes")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Refused(400, f"body is not JSON: {exc}") from None
        if not isinstance(doc, dict) or "msg" not in doc:
            raise Refused(400, "not a OneNET push: needs msg, msg_signature and nonce")
        nonce, signature = doc.get("nonce"), doc.get("msg_signature")
        if not isinstance(nonce, str) or not isinstance(signature, str) or not any(
                onenet_valid(self.token, nonce, text, signature) for text in onenet_signed_texts(body, doc["msg"])):
            raise Refused(401, "forged or missing msg_signature: it does not match Base64(MD5(token + nonce + msg))")
        msg = doc["msg"]
        if isinstance(msg, str):
            try:
                msg = orjson.loads(msg)
            except orjson.JSONDecodeError:
                raise Refused(400, "msg is text but not JSON") from None
        points = msg if isinstance(msg, list) else [msg]
        if not points or not all(isinstance(p, dict) for p in points):
            raise Refused(400, "msg is neither an object nor a list of objects")
        envelopes = [e for e in (self._point(p) for p in points) if e is not None]
        duplicates = 0
        for envelope, key in envelopes:
            try:
                result = await self.context.receive(envelope, partner_key=key)
            except HubError as exc:
                log.warning("onenet.not_accepted", extra={"error": str(exc)})
                return web.json_response({"code": 503, "msg": "not accepted, send again later"}, status=503)
            duplicates += result.duplicate
            self.accepted += 1
        return web.json_response({"code": 0, "msg": "ok", "readings": len(envelopes), "duplicates": duplicates})

    def _point(self, point: dict[str, Any]) -> tuple[Envelope, str] | None:
        """A data point's reading and its dedup key; ``None`` for what publishes nothing."""
        device = self.devices.find(point.get("dev_id"), point.get("imei"))
        stamp = point.get("at")
        if isinstance(stamp, bool) or not isinstance(stamp, int):
            raise Refused(400, f"point of device {device.device_id} has no integer at (ms)")
        at = datetime.fromtimestamp(stamp / 1000, UTC)
        kind = point.get("type")
        if kind == ONLINE_OFFLINE:
            online = point.get("status") in (1, "1")
            self.online[device.meter_id] = (online, at)
            log.info("onenet.device_online" if online else "onenet.device_offline", extra={"meter": device.meter_id})
            return None
        if kind != DATA_POINT:
            raise Refused(400, f"msg type {str(kind)[:10]!r} is neither 1 (data point) nor 2 (online/offline)")
        stream, value = point.get("ds_id"), point.get("value")
        if stream is not None and stream == self.settings.volume_stream:
            data = reading_from_fields(device, {"volume": value}, FieldMap(volume="volume", battery_voltage=None,
                                                                          rsrp=None, valve=None),
                                       read_at=at, source=ReadingSource.ONENET)
        elif stream is not None and stream == self.settings.frame_stream:
            text = value if isinstance(value, str) else ""
            raw = frame_bytes(text, encoding="hex" if text and set(text) <= _HEX else "base64")
            data = reading_from_frame(device, self.devices.profile(device), raw, received_at=at, tz=self.tz,
                                      source=ReadingSource.ONENET)
        else:
            log.info("onenet.stream_ignored", extra={"stream": str(stream)[:40], "meter": device.meter_id})
            return None
        envelope = Envelope(type=MessageType.METER_READING.value, source=self.context.name,
                            subject=device.meter_id, data=data)
        return envelope, f"{device.device_id}:{stream}:{stamp}"
