"""Calling partners over HTTP: one place that maps what can go wrong onto the hub's error tree.

Timeouts become ``ConnectorTimeout``; connection failures, 429 and 5xx ``TransientError``; other
4xx ``PermanentError``. Transient failures are retried briefly inside the call (tenacity); longer
waits are the route's retry policy, through the broker's delay queues.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from hub.errors import ConnectorTimeout, PermanentError, TransientError


async def read_capped(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole body, or its first ``limit + 1`` bytes when it is longer (so that the caller can say
    it is too long). ``StreamReader.read(n)`` returns what has arrived so far: a body that comes in
    several TCP segments needs the loop."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class PartnerHttp:
    def __init__(self, base_url: str, *, timeout_s: float = 5.0, in_call_attempts: int = 3,
                 headers: Mapping[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.in_call_attempts = in_call_attempts
        self.headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self.headers)
        return self._session

    async def post_json(self, path: str, payload: Mapping[str, Any], *,
                        headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """POST JSON, return the JSON answer; retries transient failures a few times, quickly."""
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.in_call_attempts),
            wait=wait_exponential(multiplier=0.05, max=0.5),
            retry=retry_if_exception_type(TransientError),
            reraise=True,
        ):
            with attempt:
                return await self._post_once(path, payload, headers)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post_once(self, path: str, payload: Mapping[str, Any],
                         headers: Mapping[str, str] | None) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        body = orjson.dumps(dict(payload), default=str)
        try:
            async with self._client().post(url, data=body, headers={"Content-Type": "application/json",
                                                                    **(headers or {})}) as resp:
                raw = await resp.read()
                if resp.status == 429 or resp.status >= 500:
                    raise TransientError(f"{url} answered {resp.status}: {raw[:200]!r}")
                if resp.status >= 400:
                    raise PermanentError(f"{url} answered {resp.status}: {raw[:200]!r}")
                try:
                    answer = orjson.loads(raw) if raw else {}
                except orjson.JSONDecodeError:
                    raise PermanentError(f"{url} answered {resp.status} with a body that is not JSON") from None
                if not isinstance(answer, dict):
                    raise PermanentError(f"{url} answered JSON {type(answer).__name__}, expected an object")
                return answer
        except TimeoutError:
            raise ConnectorTimeout(f"{url} did not answer within {self.timeout.total}s") from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"{url} unreachable: {type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):  # aclose must not raise
                await self._session.close()
            self._session = None
