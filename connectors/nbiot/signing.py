"""The platforms' signatures.

CTWing AEP API calls: headers ``application`` (App Key), ``timestamp`` (ms), ``signature`` and
``version``; the signature is Base64(HMAC-SHA1(App Secret, text)) where text is
``application:<key>\\ntimestamp:<ms>\\n``, then every signed header and query parameter as
``name:value\\n`` in byte order of the names (``MasterKey`` among them), then the body and ``\\n``
when there is a body (as the platform's published SDKs sign).

OneNET push (legacy data push): Base64(MD5(token + nonce + msg)), for the URL check (``GET
?msg=&nonce=&signature=``) and for every push (``msg_signature`` over the ``msg`` it carries, as
compact JSON in the order sent when ``msg`` is an object). meters.md states the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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


def onenet_signature(token: str, nonce: str, msg: str) -> str:
    return base64.b64encode(hashlib.md5((token + nonce + msg).encode()).digest()).decode()  # noqa: S324 - the platform's scheme


def onenet_valid(token: str, nonce: str, msg: str, signature: str) -> bool:
    """Constant-time check; a ``+`` turned into a space by form decoding of the query still matches."""
    expected = onenet_signature(token, nonce, msg)
    return hmac.compare_digest(expected.encode(), signature.replace(" ", "+").encode())
