"""A meter vendor's HTTP push of readings and alarms (JSON).

Partner: a meter vendor's cloud that pushes what its meters report. Protocol: ``POST
{path}`` with a JSON object ``{event: "reading"|"alarm", devId, seq, ts, …}``; we answer
``{"code": 0}`` only after the broker confirmed the message, otherwise an error JSON with a non-zero
``code`` so that the vendor sends again. Authentication: a shared token in ``X-Vendor-Token``
(``GASHUB_CONNECTORS__VENDOR__TOKEN``). Duplicates are dropped by ``devId`` + ``seq``.
Readings are published as ``vendor.demo.reading`` and alarms as ``vendor.demo.alarm``; mappings turn
them into canonical messages. Settings: :class:`VendorPushSettings`.
"""

from __future__ import annotations

import hmac
import logging

import orjson
from aiohttp import web

from connectors.vendor_push.settings import VendorPushSettings
from hub.connectors.contract import Capability, ConnectorContext, InboundConnector
from hub.connectors.http import read_capped
from hub.envelope import Envelope
from hub.errors import HubError

log = logging.getLogger(__name__)

EVENT_TYPES = {"reading": "vendor.demo.reading", "alarm": "vendor.demo.alarm"}


def _answer(status: int, code: int, msg: str) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


class VendorPushConnector(InboundConnector[VendorPushSettings]):
    kind = "vendor_push"
    settings_model = VendorPushSettings
    capabilities = frozenset({Capability.INBOUND, Capability.HTTP_ENDPOINT})

    def __init__(self, settings: VendorPushSettings, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        context.add_routes([web.post(settings.path, self.push)])
        self.accepted = 0

    async def push(self, request: web.Request) -> web.Response:
        body = await read_capped(request.content, self.settings.max_body_bytes)
        if len(body) > self.settings.max_body_bytes:
            await self.context.reject("body over the size limit", body=body[:1024], source="vendor")
            return _answer(413, 413, f"body over {self.settings.max_body_bytes} bytes")
        token = request.headers.get("X-Vendor-Token", "")
        if not hmac.compare_digest(token.encode(), self.settings.token.get_secret_value().encode()):
            await self.context.reject("bad or missing X-Vendor-Token", body=body, source="vendor")
            return _answer(401, 401, "bad token")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            await self.context.reject(f"not JSON: {exc}", body=body, source="vendor")
            return _answer(400, 400, "body is not JSON")
        if not isinstance(doc, dict) or doc.get("event") not in EVENT_TYPES or not doc.get("devId") \
                or not isinstance(doc.get("seq"), int):
            await self.context.reject("not a vendor event (needs event, devId, integer seq)", body=body,
                                      source="vendor")
            return _answer(400, 400, "needs event (reading|alarm), devId and an integer seq")
        envelope = Envelope(type=EVENT_TYPES[doc["event"]], source=self.context.name,
                            subject=str(doc["devId"])[:64], data=doc)
        try:
            result = await self.context.receive(envelope, partner_key=f"{doc['devId']}:{doc['seq']}")
        except HubError as exc:
            log.warning("vendor_push.not_accepted", extra={"error": str(exc)})
            return _answer(503, 503, "not accepted, send again later")
        self.accepted += 1
        return web.json_response({"code": 0, "msg": "duplicate" if result.duplicate else "ok",
                                  "message_id": result.message_id})

    async def run(self) -> None:
        return None
