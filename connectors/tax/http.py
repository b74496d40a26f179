"""One POST to the tax platform, with what can go wrong on the way mapped onto the hub's errors:
a timeout is ``ConnectorTimeout``, a refused or dropped connection ``TransientError``. What the status
and body mean is the provider's to read (a SOAP fault comes with 500)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from hub.connectors.http import read_capped
from hub.errors import ConnectorTimeout, TransientError

MAX_ANSWER = 4_000_000


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class TaxHttp:
    def __init__(self, *, timeout_s: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.post(url, data=body, headers=dict(headers)) as resp:
                raw = await read_capped(resp.content, MAX_ANSWER)
                if len(raw) > MAX_ANSWER:
                    raise TransientError(f"{url} answered more than {MAX_ANSWER} bytes")
                return Answer(resp.status, {k: v for k, v in resp.headers.items()}, raw)
        except TimeoutError:
            raise ConnectorTimeout(f"{url} did not answer within {self.timeout.total}s") from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"{url} unreachable: {type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):  # aclose must not raise
                await self._session.close()
            self._session = None
