"""ACS3-HMAC-SHA256: Alibaba Cloud's V3 request signature, for signing our calls and for the simulator
that verifies them.

::

    CanonicalRequest = METHOD \\n path \\n query \\n headers \\n signed header names \\n hex(sha256(body))
    StringToSign     = "ACS3-HMAC-SHA256" \\n hex(sha256(CanonicalRequest))
    Authorization    = ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<a;b;c>,Signature=<hex hmac>

The canonical query sorts the parameters by name and percent-encodes names and values as RFC 3986
unreserved (``~`` kept, space ``%20``, never ``+``); the canonical headers are the signed ones,
lower-cased and sorted, values trimmed, one ``name:value`` per line. ``host``, ``content-type`` (when
there is a body) and every ``x-acs-*`` header are signed. ``x-acs-content-sha256`` carries the body's
hash, so the signature covers the body.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class SignatureError(Exception):
    """A request whose ACS3 signature is missing, malformed, stale or wrong."""


def encode(value: str) -> str:
    return quote(value, safe="~", encoding="utf-8")


def canonical_query(query: Mapping[str, str]) -> str:
    return "&".join(f"{encode(k)}={encode(query[k])}" for k in sorted(query))


def canonical_headers(headers: Mapping[str, str], signed: list[str]) -> str:
    lower = {k.lower(): v for k, v in headers.items()}
    missing = [name for name in signed if name not in lower]
    if missing:
        raise SignatureError(f"signed header {missing[0]!r} is not in the request")
    return "".join(f"{name}:{lower[name].strip()}\n" for name in signed)


def canonical_request(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
                      signed: list[str], payload_sha256: str) -> str:
    return "\n".join([method.upper(), path or "/", canonical_query(query),
                      canonical_headers(headers, signed), ";".join(signed), payload_sha256])


def signature(secret: str, request: str) -> str:
    to_sign = f"{ALGORITHM}\n{hashlib.sha256(request.encode()).hexdigest()}"
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def acs_date(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign(method: str, host: str, path: str, query: Mapping[str, str], *, action: str, version: str,
         access_key_id: str, access_key_secret: str, body: bytes = b"", content_type: str | None = None,
         now: float | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers of a signed request (``Authorization`` included)."""
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": acs_date(time.time() if now is None else now),
        "x-acs-signature-nonce": nonce or secrets.token_hex(16),
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    if content_type:
        headers["content-type"] = content_type
    signed = sorted(headers)
    request = canonical_request(method, path, query, headers, signed, headers["x-acs-content-sha256"])
    headers["Authorization"] = (f"{ALGORITHM} Credential={access_key_id},SignedHeaders={';'.join(signed)},"
                                f"Signature={signature(access_key_secret, request)}")
    return headers


@dataclass(frozen=True, slots=True)
class Signed:
    """What a verified request says about itself."""

    access_key_id: str
    nonce: str
    date: datetime
    action: str


def parse_authorization(value: str) -> tuple[str, list[str], str]:
    """``(access key id, signed headers, signature)`` from an ACS3 ``Authorization`` header."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != ALGORITHM:
        raise SignatureError(f"Authorization is not {ALGORITHM}")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            raise SignatureError("Authorization is malformed")
        parts[key] = val
    try:
        return parts["Credential"], parts["SignedHeaders"].split(";"), parts["Signature"]
    except KeyError as exc:
        raise SignatureError(f"Authorization lacks {exc.args[0]}") from None


def verify(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes, *,
           secrets_by_key: Mapping[str, str], now: float, window_s: float = 900) -> Signed:
    """Check a request signed with ACS3-HMAC-SHA256; raise ``SignatureError`` at the first defect."""
    lower = {k.lower(): v for k, v in headers.items()}
    auth = lower.get("authorization")
    if not auth:
        raise SignatureError("no Authorization header")
    key_id, signed, given = parse_authorization(auth)
    secret = secrets_by_key.get(key_id)
    if secret is None:
        raise SignatureError(f"unknown AccessKeyId {key_id[:40]!r}")
    required = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce",
                "x-acs-content-sha256"}
    lacking = sorted(required - set(signed))
    if lacking:
        raise SignatureError(f"header {lacking[0]!r} is not signed")
    if signed != sorted(signed):
        raise SignatureError("SignedHeaders is not sorted")
    if not hmac.compare_digest(lower["x-acs-content-sha256"], hashlib.sha256(body).hexdigest()):
        raise SignatureError("x-acs-content-sha256 does not match the body")
    try:
        date = datetime.strptime(lower["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError("x-acs-date is not yyyy-MM-ddTHH:mm:ssZ") from None
    if abs(date.timestamp() - now) > window_s:
        raise SignatureError("x-acs-date is outside the allowed window")
    request = canonical_request(method, path, query, lower, signed, lower["x-acs-content-sha256"])
    if not hmac.compare_digest(signature(secret, request), given):
        raise SignatureError("signature does not match")
    return Signed(key_id, lower["x-acs-signature-nonce"], date, lower["x-acs-action"])
