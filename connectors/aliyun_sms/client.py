"""``SendSms`` (Dysmsapi 2017-05-25, RPC style) over HTTP, signed with ACS3-HMAC-SHA256.

The parameters travel in the query string of ``POST /`` with an empty body, as the official SDK sends
them. One HTTP call per delivery attempt and no resend inside it: SendSms is not idempotent, and Aliyun
advises against retrying a call whose outcome is unknown; the route's retry policy decides.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import orjson
from yarl import URL

from connectors.aliyun_sms import signing
from hub.errors import ConnectorTimeout, PermanentError, TransientError

ACTION = "SendSms"
VERSION = "2017-05-25"

TRANSIENT_CODES = frozenset({"isp.SYSTEM_ERROR", "ServiceUnavailable", "InternalError", "isp.GATEWAY_ERROR"})
"""Aliyun's "try later" answers (besides ``Throttling*``, 5xx and 429)."""
LIMIT_CODES = frozenset({"isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL"})
"""Aliyun's own per-number flow control: the message waits like one over our own limits."""


@dataclass(frozen=True, slots=True)
class SendAnswer:
    code: str
    message: str
    biz_id: str
    request_id: str

    @property
    def ok(self) -> bool:
        return self.code == "OK"

    @property
    def limited(self) -> bool:
        return self.code in LIMIT_CODES

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT_CODES or self.code.startswith("Throttling")


class DysmsClient:
    def __init__(self, endpoint: str, access_key_id: str, access_key_secret: str, *, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        parts = urlsplit(endpoint)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None

    def signed(self, query: Mapping[str, str], *, nonce: str | None = None) -> tuple[URL, dict[str, str]]:
        """The URL and headers of one signed SendSms call."""
        headers = signing.sign("POST", self.host, "/", query, action=ACTION, version=VERSION,
                               access_key_id=self.access_key_id, access_key_secret=self._secret,
                               now=self.clock(), nonce=nonce)
        url = URL(f"{self.base}/?{signing.canonical_query(query)}", encoded=True)
        return url, {**headers, "accept": "application/json"}

    async def send_sms(self, *, phone: str, sign_name: str, template_code: str, template_param: str,
                       out_id: str) -> SendAnswer:
        query = {"PhoneNumbers": phone, "SignName": sign_name, "TemplateCode": template_code,
                 "TemplateParam": template_param, "OutId": out_id}
        url, headers = self.signed(query)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.post(url, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except TimeoutError:
            raise ConnectorTimeout(f"Dysmsapi did not answer within {self.timeout.total}s") from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"Dysmsapi unreachable: {type(exc).__name__}: {exc}") from None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or "Code" not in doc:
            if status == 429 or status >= 500:
                raise TransientError(f"Dysmsapi answered {status}: {raw[:200]!r}")
            raise PermanentError(f"Dysmsapi answered {status} without a SendSms result: {raw[:200]!r}")
        answer = SendAnswer(str(doc.get("Code", "")), str(doc.get("Message", ""))[:300],
                            str(doc.get("BizId", "") or ""), str(doc.get("RequestId", "") or ""))
        if not answer.ok and (status == 429 or status >= 500):
            raise TransientError(f"Dysmsapi answered {status} {answer.code}: {answer.message}")
        return answer

    async def aclose(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):  # aclose must not raise
                await self._session.close()
            self._session = None
