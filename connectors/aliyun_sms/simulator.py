"""``AliyunSmsSimulator``: a local Dysmsapi for the demo and the tests.

It verifies the ACS3-HMAC-SHA256 signature of every call (the official SDK's requests pass, so do
ours), refuses a signature nonce used before, accepts ``SendSms`` and ``QuerySendDetails`` (Aliyun's
answer shapes and error codes: ``SignatureDoesNotMatch``, ``SignatureNonceUsed``, ``InvalidAccessKeyId.NotFound``,
``isv.MOBILE_NUMBER_ILLEGAL``, ``isv.SMS_TEMPLATE_ILLEGAL``, ``isv.TEMPLATE_MISSING_PARAMETERS``,
``isv.INVALID_JSON_PARAM``), and keeps every message it accepted. Unlike a gateway with idempotency
keys it does **not** deduplicate by ``OutId`` (Aliyun does not): two calls are two SMS, so a test sees a
double send. It plays the platform's side of the pushes too: :meth:`post_report` (SmsReport) and
:meth:`post_upstream` (SmsUp) POST JSON arrays to the hub. Fault injection: ``down`` (503),
``fail_next`` (503 ``ServiceUnavailable``), ``answer_next`` (codes to answer instead of OK),
``stall_next`` (take the SMS, then answer after ``stall_s``: a caller's timeout with the SMS sent).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from connectors.aliyun_sms import signing
from hub.connectors.simulation import HttpSimulator

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
ACTIONS = ("SendSms", "QuerySendDetails")
SIM_KEY_ID = "LTAI5tSimulator0000000000"
SIM_KEY_SECRET = "simulator-secret-0123456789abcdef"  # noqa: S105 - the simulator's own, public


@dataclass(frozen=True, slots=True)
class SentSms:
    biz_id: str
    phone: str
    sign_name: str
    template_code: str
    params: dict[str, Any]
    out_id: str | None
    at: datetime


def _china(at: datetime) -> str:
    return at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


class AliyunSmsSimulator(HttpSimulator):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 access_keys: Mapping[str, str] | None = None,
                 templates: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__(host, port)
        self.access_keys = dict(access_keys or {SIM_KEY_ID: SIM_KEY_SECRET})
        self.templates = {code: list(names) for code, names in (templates or {}).items()}
        """Known template codes and their variables; empty, any ``SMS_…`` code is accepted."""
        self.sent: list[SentSms] = []
        self.refused: list[str] = []
        self.requests = 0
        self.down = False
        self.fail_next = 0
        self.answer_next: list[str] = []
        self.stall_next = 0
        self.stall_s = 2.0
        self._nonces: set[str] = set()
        self._ids = itertools.count(1)
        self._sequence = itertools.count(int(time.time()))

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/", self._call)]

    def _error(self, status: int, code: str, message: str) -> web.Response:
        self.refused.append(code)
        return web.json_response({"Code": code, "Message": message, "RequestId": str(uuid.uuid4()).upper()},
                                 status=status)

    async def _call(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if self.down:
            return web.Response(status=503, text="service down (simulated)")
        query = dict(request.query)
        try:
            signed = signing.verify(request.method, request.path, query, request.headers, body,
                                    secrets_by_key=self.access_keys, now=time.time())
        except signing.SignatureError as exc:
            code = "InvalidAccessKeyId.NotFound" if "unknown AccessKeyId" in str(exc) else "SignatureDoesNotMatch"
            return self._error(400 if code == "SignatureDoesNotMatch" else 404, code, str(exc))
        if signed.nonce in self._nonces:
            return self._error(400, "SignatureNonceUsed", "the signature nonce was used before")
        self._nonces.add(signed.nonce)
        if signed.action not in ACTIONS or request.headers.get("x-acs-version") != "2017-05-25":
            return self._error(400, "InvalidAction.NotFound", f"{signed.action[:40]} is not served here")
        if self.fail_next > 0:
            self.fail_next -= 1
            return self._error(503, "ServiceUnavailable", "the request failed due to an unknown error (simulated)")
        if signed.action == "QuerySendDetails":
            return self._details(query)
        if self.answer_next:
            code = self.answer_next.pop(0)
            return self._error(200, code, f"{code} (simulated)")
        answer = self._send(query)
        if self.stall_next > 0:  # the SMS is taken, the answer comes too late for the caller
            self.stall_next -= 1
            await asyncio.sleep(self.stall_s)
        return answer

    def _details(self, query: dict[str, str]) -> web.Response:
        """``QuerySendDetails``: what was sent to ``PhoneNumber`` on ``SendDate`` (yyyyMMdd, China), paged."""
        try:
            day = datetime.strptime(query.get("SendDate", ""), "%Y%m%d").date()
            size, page = int(query.get("PageSize", "10")), int(query.get("CurrentPage", "1"))
        except ValueError:
            return self._error(400, "isv.INVALID_PARAMETERS", "SendDate, PageSize or CurrentPage is invalid")
        if not 1 <= size <= 50 or page < 1:
            return self._error(400, "isv.INVALID_PARAMETERS", "PageSize is 1 to 50")
        rows = [s for s in self.sent if s.phone == query.get("PhoneNumber") and s.at.date() == day]
        items = [{"PhoneNum": s.phone, "SendStatus": 3, "ErrCode": "DELIVERED", "TemplateCode": s.template_code,
                  "Content": f"【{s.sign_name}】…", "SendDate": _china(s.at), "ReceiveDate": _china(s.at),
                  "OutId": s.out_id} for s in rows[(page - 1) * size: page * size]]
        return web.json_response({"Code": "OK", "Message": "OK", "RequestId": str(uuid.uuid4()).upper(),
                                  "TotalCount": len(rows), "SmsSendDetailDTOs": {"SmsSendDetailDTO": items}})

    def _send(self, query: dict[str, str]) -> web.Response:
        phone = query.get("PhoneNumbers", "")
        if not phone.isdigit() or len(phone) != 11:
            return self._error(200, "isv.MOBILE_NUMBER_ILLEGAL", "invalid mobile number")
        code = query.get("TemplateCode", "")
        if not code.startswith("SMS_") or (self.templates and code not in self.templates):
            return self._error(200, "isv.SMS_TEMPLATE_ILLEGAL", f"template {code[:40]} is not approved")
        if not query.get("SignName"):
            return self._error(200, "isv.SMS_SIGNATURE_ILLEGAL", "no sign name")
        try:
            params = orjson.loads(query.get("TemplateParam") or "{}")
        except orjson.JSONDecodeError:
            params = None
        if not isinstance(params, dict):
            return self._error(200, "isv.INVALID_JSON_PARAM", "TemplateParam is not a JSON object")
        lacking = [name for name in self.templates.get(code, []) if name not in params]
        if lacking:
            return self._error(200, "isv.TEMPLATE_MISSING_PARAMETERS", f"template variable {lacking[0]} is missing")
        biz_id = f"{next(self._ids):06d}^{int(time.time() * 1000)}"
        self.sent.append(SentSms(biz_id, phone, query["SignName"], code, params, query.get("OutId"),
                                 datetime.now(CHINA_TZ)))
        return web.json_response({"Code": "OK", "Message": "OK", "BizId": biz_id,
                                  "RequestId": str(uuid.uuid4()).upper()})

    # the platform's pushes ----------------------------------------------------------------------

    def report_items(self, sent: Sequence[SentSms] | None = None, *, success: bool = True,
                     err_code: str = "DELIVERED") -> list[dict[str, Any]]:
        """SmsReport items for ``sent`` (default: everything sent so far)."""
        now = datetime.now(CHINA_TZ)
        return [{"phone_number": s.phone, "send_time": _china(s.at), "report_time": _china(now),
                 "success": success, "err_code": err_code if not success else "DELIVERED",
                 "err_msg": "用户接收成功" if success else "失败", "sms_size": "1", "biz_id": s.biz_id,
                 "out_id": s.out_id} for s in (self.sent if sent is None else sent)]

    def upstream_item(self, phone: str, content: str, *, sequence_id: int | None = None) -> dict[str, Any]:
        return {"phone_number": phone, "content": content, "send_time": _china(datetime.now(CHINA_TZ)),
                "dest_code": "1234", "sequence_id": next(self._sequence) if sequence_id is None else sequence_id,
                "sign_name": "绍兴燃气"}

    @staticmethod
    async def push(url: str, items: Any) -> tuple[int, Any]:
        """POST ``items`` (a JSON array, or anything for a test of what the hub refuses) to ``url``."""
        body = items if isinstance(items, bytes) else orjson.dumps(items)
        async with aiohttp.ClientSession() as session, session.post(
                url, data=body, headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
            try:
                return resp.status, orjson.loads(raw)
            except orjson.JSONDecodeError:
                return resp.status, raw

    async def post_report(self, url: str, sent: Sequence[SentSms] | None = None, **kw: Any) -> tuple[int, Any]:
        return await self.push(url, self.report_items(sent, **kw))

    async def post_upstream(self, url: str, phone: str, content: str, *,
                            sequence_id: int | None = None) -> tuple[int, Any]:
        return await self.push(url, [self.upstream_item(phone, content, sequence_id=sequence_id)])
