"""The REST provider's request signature: HMAC-SHA256 with the appSecret over the canonical string.

Every request is a JSON object ``{appKey, method, timestamp, nonce, signType, bizContent, sign}``:
``bizContent`` is the business JSON as a string; ``timestamp`` milliseconds since the epoch as a
string. The canonical string is the non-empty fields other than ``sign`` and ``signType``, sorted by
name, joined as ``name=value`` with ``&``; ``sign`` is the upper-case hex of
HMAC-SHA256(appSecret, canonical string). The platform refuses a stale timestamp (5 minutes) and a
nonce it has seen before. (partners.md: MD5 or HMAC signatures occur; we implement HMAC-SHA256.)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

SIGN_TYPE = "HMAC-SHA256"
UNSIGNED = frozenset({"sign", "signType"})
WINDOW_MS = 300_000


class SignatureError(ValueError):
    """A request whose signature, timestamp or nonce does not hold."""


def canonical(fields: Mapping[str, Any]) -> str:
    return "&".join(f"{k}={fields[k]}" for k in sorted(fields)
                    if k not in UNSIGNED and fields[k] not in (None, ""))


def sign(fields: Mapping[str, Any], secret: str) -> str:
    return hmac.new(secret.encode(), canonical(fields).encode(), hashlib.sha256).hexdigest().upper()


def signed_request(method: str, biz_content: str, *, app_key: str, secret: str, now_ms: int) -> dict[str, str]:
    fields = {"appKey": app_key, "method": method, "timestamp": str(now_ms), "nonce": secrets.token_hex(16),
              "signType": SIGN_TYPE, "bizContent": biz_content}
    return {**fields, "sign": sign(fields, secret)}


def verify(fields: Mapping[str, Any], secret: str, *, now_ms: int) -> None:
    """The platform's check (used by the simulator): ``SignatureError`` saying what is wrong."""
    given = fields.get("sign")
    if not isinstance(given, str) or not given:
        raise SignatureError("no sign")
    if fields.get("signType") != SIGN_TYPE:
        raise SignatureError(f"signType must be {SIGN_TYPE}")
    if not hmac.compare_digest(given.upper(), sign(fields, secret)):
        raise SignatureError("sign does not match")
    try:
        stamp = int(str(fields.get("timestamp")))
    except ValueError:
        raise SignatureError("timestamp is not milliseconds") from None
    if abs(now_ms - stamp) > WINDOW_MS:
        raise SignatureError("timestamp outside the 5-minute window")
