"""``SmsGatewaySimulator``: a stand-in SMS gateway for the demo and the tests.

Speaks the protocol of :mod:`connectors.http_sms.connector`; keeps what it was asked to send;
deduplicates by ``out_id`` as a real gateway with idempotency would; can be told to fail the next N
sends (503) or to be down altogether.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson
from aiohttp import web

from hub.connectors.simulation import HttpSimulator


class SmsGatewaySimulator(HttpSimulator):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, fail_next: int = 0) -> None:
        super().__init__(host, port)
        self.fail_next = fail_next
        self.down = False
        self.sent: list[dict[str, Any]] = []
        self.by_out_id: dict[str, str] = {}
        self.requests = 0
        self.request_times: list[float] = []
        self._ids = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/sms/send", self._send)]

    async def _send(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.request_times.append(time.monotonic())
        if self.down:
            return web.Response(status=503, text="gateway down (simulated)")
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503, text="temporarily unavailable (simulated)")
        body = orjson.loads(await request.read())
        out_id = body["out_id"]
        if out_id not in self.by_out_id:
            self.by_out_id[out_id] = f"SIM{next(self._ids):08d}"
            self.sent.append(body)
        return web.json_response({"code": "OK", "biz_id": self.by_out_id[out_id]})
