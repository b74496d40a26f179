"""Calling a payment platform's signed API: what the WeChat Pay, e-CNY and UnionPay clients share.

A subclass says how a request is signed (:meth:`SignedHttpClient.signature_headers`, or in the body),
how an answer is read (:meth:`SignedHttpClient.decode`: JSON by default) and how its signature is
checked (:meth:`SignedHttpClient.answer_problem`); this base sends, retries and translates. What
can go wrong becomes the hub's errors: timeouts ``ConnectorTimeout``; connection failures, 429 and
5xx ``TransientError`` (retried a few times in the call, then by the route's policy); other 4xx
become the subclass's ``error`` (a :class:`PlatformError` carrying the platform's ``code``); an
answer that does not decode to an object, or a 2xx answer whose signature does not verify,
``PermanentError``.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp
import orjson
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from hub.errors import ConnectorTimeout, PermanentError, TransientError


class PlatformError(PermanentError):
    """The platform refused the request; ``code`` is its error code (empty when it gave none)."""

    def __init__(self, message: str, *, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class HttpSession:
    """One aiohttp session per client, made when first needed and closed by ``aclose`` (which never
    raises)."""

    def __init__(self, *, timeout_s: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):  # aclose must not raise
                await self._session.close()
            self._session = None


class SignedHttpClient(HttpSession, abc.ABC):
    error: ClassVar[type[PlatformError]] = PlatformError
    user_agent: ClassVar[str] = "gashub/1"
    content_type: ClassVar[str] = "application/json"

    def __init__(self, *, base_url: str, timeout_s: float, in_call_attempts: int) -> None:
        super().__init__(timeout_s=timeout_s)
        self.base_url = base_url.rstrip("/")
        self.in_call_attempts = in_call_attempts

    @abc.abstractmethod
    def signature_headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        """The headers that sign one request (``path`` with its query, ``body`` as sent)."""

    def decode(self, raw: bytes) -> dict[str, Any] | None:
        """The answer as an object; ``None`` when it is not one."""
        try:
            doc = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return None
        return doc if isinstance(doc, dict) else None

    @abc.abstractmethod
    def answer_problem(self, headers: Mapping[str, str], raw: bytes) -> str | None:
        """Why a 2xx answer's signature cannot be trusted, or ``None`` when it verifies."""

    async def call(self, method: str, path: str, body: bytes = b"") -> dict[str, Any]:
        """Sign, send and verify one call, retrying transient failures a few times, quickly."""
        async for attempt in AsyncRetrying(stop=stop_after_attempt(self.in_call_attempts),
                                           wait=wait_exponential(multiplier=0.05, max=0.5),
                                           retry=retry_if_exception_type(TransientError), reraise=True):
            with attempt:
                return await self._once(method, path, body)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, method: str, path: str, body: bytes) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        headers = {**self.signature_headers(method, path, body), "Accept": "application/json",
                   "User-Agent": self.user_agent}
        if body:
            headers["Content-Type"] = self.content_type
        try:
            async with self._client().request(method, url, data=body or None, headers=headers) as resp:
                return self._read(url, resp.status, resp.headers, await resp.read())
        except TimeoutError:
            raise ConnectorTimeout(f"{url} did not answer within {self.timeout.total}s") from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"{url} unreachable: {type(exc).__name__}: {exc}") from None

    def _read(self, url: str, status: int, headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
        if status == 429 or status >= 500:
            raise TransientError(f"{url} answered {status}: {raw[:200]!r}")
        doc = self.decode(raw)
        if doc is None:
            raise PermanentError(f"{url} answered {status} with a body that is not an object ({self.content_type})")
        if status >= 400:
            code = str(doc.get("code") or "")
            raise self.error(f"{url} answered {status} {code}: {str(doc.get('message') or '')[:200]}",
                             status=status, code=code)
        problem = self.answer_problem(headers, raw)
        if problem is not None:
            raise PermanentError(f"{url} answered {status}, but the answer's signature is not valid: {problem}")
        return doc
