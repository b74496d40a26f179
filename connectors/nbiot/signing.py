"""The platforms' signatures.

CTWing AEP API calls: headers ``application`` (App Key), ``timestamp`` (ms), ``signature`` and
``version``; the signature is Base64(HMAC-SHA1(App Secret, text)) where text is
``application:<key>\\ntimestamp:<ms>\\n``, then every signed header and query parameter as
``name:value\\n`` in byte order of the names (``MasterKey`` among them), then the body and ``\\n``
when there is a body (as the platform's published SDKs sign).

OneNET push (legacy data push): Base64(MD5(token + nonce + msg)), for the URL check (``GET
?msg=&nonce=&signature=``) and for every push (``msg_signature`` over the ``msg`` it carries: its
text as it stands in the body, or its compact JSON, which is what the platform's SDK re-serialises).
meters.md gives the same scheme.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import orjson


def aep_signature(*, app_key: str, app_secret: str, timestamp_ms: int, params: Mapping[str, str],
                  body: bytes | None) -> str:
    text = f"application:{app_key}\ntimestamp:{timestamp_ms}\n"
    for name in sorted(params):
        text += f"{name}:{params[name]}\n"
    raw = text.encode()
    if body:
        raw += body + b"\n"
    return base64.b64encode(hmac.new(app_secret.encode(), raw, hashlib.sha1).digest()).decode()


def onenet_text(msg: Any) -> str:
    """The text OneNET signs for a ``msg``: itself when text, compact JSON otherwise."""
    return msg if isinstance(msg, str) else orjson.dumps(msg).decode()


_DECODER = json.JSONDecoder()


def raw_member(body: str, key: str) -> str | None:
    """The text of a top-level member's value exactly as sent (``None`` when absent or not an object)."""
    at = _skip(body, 0)
    if body[at:at + 1] != "{":
        return None
    at = _skip(body, at + 1)
    try:
        while body[at:at + 1] == '"':
            name, at = _DECODER.raw_decode(body, at)
            at = _skip(body, at)
            if body[at:at + 1] != ":":
                return None
            start = _skip(body, at + 1)
            _, end = _DECODER.raw_decode(body, start)
            if name == key:
                return body[start:end]
            at = _skip(body, end)
            if body[at:at + 1] != ",":
                return None
            at = _skip(body, at + 1)
    except json.JSONDecodeError:
        return None
    return None


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def onenet_signed_texts(body: bytes, msg: Any) -> list[str]:
    """What a push's ``msg_signature`` may cover: ``msg`` as it stands in the body (a JSON string's
    content when it is one), and ``msg`` as compact JSON (what the platform's SDK re-serialises)."""
    texts = [onenet_text(msg)]
    raw = raw_member(body.decode("utf-8", errors="replace"), "msg")
    if raw is not None and not raw.startswith('"') and raw not in texts:
        texts.insert(0, raw)
    return texts


def onenet_signature(token: str, nonce: str, msg: str) -> str:
    return base64.b64encode(hashlib.md5((token + nonce + msg).encode()).digest()).decode()  # noqa: S324 - the platform's scheme


def onenet_valid(token: str, nonce: str, msg: str, signature: str) -> bool:
    """Constant-time check; a ``+`` turned into a space by form decoding of the query still matches."""
    expected = onenet_signature(token, nonce, msg)
    return hmac.compare_digest(expected.encode(), signature.replace(" ", "+").encode())
