"""CTWing AEP command API: create a device command and ask for its status.

``POST /aep_device_command/command`` (API version ``20190712225145``) with ``{content, deviceId,
operator, productId, ttl, level}`` answers ``{code: 0, result: {commandId, commandStatus}}``;
``GET /aep_device_command/command?commandId=&productId=&deviceId=`` (``20190712225241``) answers the
command with its ``commandStatus``. Every call is signed (:func:`~.signing.aep_signature`) and carries
the product's ``MasterKey``. Timeouts become ``ConnectorTimeout``, 429/5xx and lost connections
``TransientError``, other refusals ``PermanentError``.

A create call that times out may still have reached the platform, so it is sent again with the very
same body (the same frame, the same SER): never a second, different command.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from connectors.nbiot.signing import aep_signature
from hub.errors import ConnectorTimeout, PermanentError, TransientError

log = logging.getLogger(__name__)

COMMAND_PATH = "/aep_device_command/command"
CREATE_VERSION = "20190712225145"
QUERY_VERSION = "20190712225241"


class AepClient:
    def __init__(self, base_url: str, *, app_key: str, app_secret: str, master_key: str, timeout_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_key = app_key
        self.app_secret = app_secret
        self.master_key = master_key
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    def _headers(self, version: str, params: Mapping[str, str], body: bytes | None) -> dict[str, str]:
        stamp = int(self.clock() * 1000)
        signed = {"MasterKey": self.master_key, **params}
        return {"application": self.app_key, "timestamp": str(stamp), "version": version,
                "MasterKey": self.master_key, "Content-Type": "application/json; charset=UTF-8",
                "signature": aep_signature(app_key=self.app_key, app_secret=self.app_secret, timestamp_ms=stamp,
                                           params=signed, body=body)}

    async def _call(self, method: str, version: str, *, params: Mapping[str, str] | None = None,
                    body: bytes | None = None) -> dict[str, Any]:
        url = f"{self.base_url}{COMMAND_PATH}"
        query = dict(params or {})
        try:
            async with self._client().request(method, url, params=query or None, data=body,
                                               headers=self._headers(version, query, body)) as resp:
                raw = await resp.read()
                if resp.status == 429 or resp.status >= 500:
                    raise TransientError(f"CTWing {method} {COMMAND_PATH} answered {resp.status}")
                if resp.status >= 400:
                    raise PermanentError(f"CTWing {method} {COMMAND_PATH} answered {resp.status}: {raw[:200]!r}")
        except TimeoutError:
            raise ConnectorTimeout(f"CTWing {COMMAND_PATH} did not answer within {self.timeout.total} s") from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"CTWing {COMMAND_PATH} unreachable: {type(exc).__name__}: {exc}") from None
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise PermanentError(f"CTWing {COMMAND_PATH} answered with a body that is not JSON") from None
        if not isinstance(answer, dict) or answer.get("code") != 0 or not isinstance(answer.get("result"), dict):
            code, detail = (answer.get("code"), answer.get("msg")) if isinstance(answer, dict) else ("?", None)
            raise PermanentError(f"CTWing refused the call: code {code} {str(detail)[:200]!r}")
        result: dict[str, Any] = answer["result"]
        return result

    async def create_command(self, body: Mapping[str, Any], *, attempts: int) -> str:
        """Create the command (the same body on every attempt) and return the platform's command id."""
        raw = orjson.dumps(dict(body))
        last: TransientError | None = None
        for attempt in range(1, attempts + 1):
            try:
                result = await self._call("POST", CREATE_VERSION, body=raw)
            except TransientError as exc:  # ConnectorTimeout included: the same body goes again
                last = exc
                log.info("ctwing.command_retry", extra={"attempt": attempt, "error": str(exc)})
                continue
            command_id = result.get("commandId")
            if not isinstance(command_id, str | int) or not str(command_id):
                raise PermanentError("CTWing accepted the command without a commandId")
            return str(command_id)
        assert last is not None
        if isinstance(last, ConnectorTimeout):
            raise ConnectorTimeout(f"CTWing did not take the command in {attempts} call(s): {last}")
        raise TransientError(f"CTWing did not take the command in {attempts} call(s): {last}")

    async def command_status(self, command_id: str, *, product_id: str, device_id: str) -> str | None:
        """The command's status as the platform reports it (``None`` when it reports none)."""
        result = await self._call("GET", QUERY_VERSION, params={"commandId": command_id, "productId": product_id,
                                                                "deviceId": device_id})
        status = result.get("commandStatus")
        return str(status) if status is not None else None

    async def aclose(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()
            self._session = None
