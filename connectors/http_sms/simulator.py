"""``SmsGatewaySimulator``: a stand-in SMS gateway for the demo and the tests.

Speaks the protocol of :mod:`connectors.http_sms.connector`; keeps what it was asked to send;
deduplicates by ``out_id`` as a real gateway with idempotency would; can be told to fail the next N
sends (503) or to be down altogether.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class SmsGatewaySimulator:
    host: str = "127.0.0.1"
    port: int = 0
    fail_next: int = 0
    down: bool = False
    sent: list[dict[str, Any]] = field(default_factory=list)
    by_out_id: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    request_times: list[float] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

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

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/sms/send", self._send)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
