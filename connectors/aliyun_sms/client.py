"""``SendSms`` and ``QuerySendDetails`` (Dysmsapi 2017-05-25, RPC style) over HTTP, signed with
ACS3-HMAC-SHA256.

The parameters travel in the query string of ``POST /`` with an empty body, as the official SDK sends
them. One HTTP call per delivery attempt and no resend inside it: SendSms is not idempotent, and Aliyun
advises against retrying a call whose outcome is unknown. The route's retry policy decides, and a
retry first asks ``QuerySendDetails`` whether Aliyun took the message already (by ``OutId``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from yarl import URL

from connectors.aliyun_sms import signing
from hub.errors import ConnectorTimeout, PermanentError, TransientError

SEND = "SendSms"
QUERY = "QuerySendDetails"
VERSION = "2017-05-25"
PAGE_SIZE = 50

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

    def signed(self, query: Mapping[str, str], *, action: str = SEND,
               nonce: str | None = None) -> tuple[URL, dict[str, str]]:
        """The URL and headers of one signed call of ``action``."""
        headers = signing.sign("POST", self.host, "/", query, action=action, version=VERSION,
                               access_key_id=self.access_key_id, access_key_secret=self._secret,
                               now=self.clock(), nonce=nonce)
        url = URL(f"{self.base}/?{signing.canonical_query(query)}", encoded=True)
        return url, {**headers, "accept": "application/json"}

    async def _call(self, action: str, query: Mapping[str, str]) -> dict[str, Any]:
        """One signed call; the answer's JSON object (with its ``Code``), or the hub's error."""
        url, headers = self.signed(query, action=action)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.post(url, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except TimeoutError:
            raise ConnectorTimeout(f"Dysmsapi {action} did not answer within {self.timeout.total}s") from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"Dysmsapi unreachable: {type(exc).__name__}: {exc}") from None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or "Code" not in doc:
            if status == 429 or status >= 500:
                raise TransientError(f"Dysmsapi {action} answered {status}: {raw[:200]!r}")
            raise PermanentError(f"Dysmsapi answered {status} without a {action} result: {raw[:200]!r}")
        if doc.get("Code") != "OK" and (status == 429 or status >= 500):
            raise TransientError(f"Dysmsapi {action} answered {status} {doc.get('Code')}: {doc.get('Message')}")
        return doc

    async def send_sms(self, *, phone: str, sign_name: str, template_code: str, template_param: str,
                       out_id: str) -> SendAnswer:
        doc = await self._call(SEND, {"PhoneNumbers": phone, "SignName": sign_name, "TemplateCode": template_code,
                                      "TemplateParam": template_param, "OutId": out_id})
        return SendAnswer(str(doc.get("Code", "")), str(doc.get("Message", ""))[:300],
                          str(doc.get("BizId", "") or ""), str(doc.get("RequestId", "") or ""))

    async def sent_out_ids(self, phone: str, day: date, *, max_pages: int = 20) -> set[str]:
        """The ``OutId`` of every SMS Aliyun took for ``phone`` on ``day`` (China date), by
        ``QuerySendDetails``, page by page. Any answer but OK is an error: never guess "not sent"."""
        found: set[str] = set()
        for page in range(1, max_pages + 1):
            doc = await self._call(QUERY, {"PhoneNumber": phone, "SendDate": day.strftime("%Y%m%d"),
                                           "PageSize": str(PAGE_SIZE), "CurrentPage": str(page)})
            if doc.get("Code") != "OK":
                code = str(doc.get("Code"))
                error = TransientError if code.startswith("Throttling") or code in TRANSIENT_CODES else PermanentError
                raise error(f"QuerySendDetails answered {code}: {str(doc.get('Message', ''))[:200]}")
            box = doc.get("SmsSendDetailDTOs")
            items = box.get("SmsSendDetailDTO") if isinstance(box, dict) else None
            items = items if isinstance(items, list) else []
            found.update(str(i["OutId"]) for i in items if isinstance(i, dict) and i.get("OutId"))
            try:
                total = int(doc.get("TotalCount") or 0)
            except (TypeError, ValueError):
                total = 0
            if page * PAGE_SIZE >= total or not items:
                return found
        raise TransientError(f"QuerySendDetails: more than {max_pages * PAGE_SIZE} SMS to one number in a day")

    async def aclose(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):  # aclose must not raise
                await self._session.close()
            self._session = None
