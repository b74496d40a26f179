"""Alipay open platform RSA2 signatures: requests we send, answers and notifications we receive.

Three signed strings, all SHA256withRSA (PKCS#1 v1.5, base64):

* **A request** (``gateway.do``): every parameter but ``sign`` whose value is not empty
  (``sign_type`` included), sorted by name, joined as ``k=v`` with ``&``, raw (not URL-encoded)
  values; signed with the application's private key.
* **A synchronous answer** ``{"alipay_trade_query_response": {…}, "sign": "…"}``: the exact text of
  the ``…_response`` value as it came over the wire; verified with the Alipay public key.
* **An asynchronous notification** (form POST): every parameter but ``sign`` and ``sign_type``,
  URL-decoded in the notification's ``charset``, sorted by name, ``k=v`` joined with ``&``; verified
  with the Alipay public key. Alipay's Java SDK (``rsaCheckV1``) and python-alipay-sdk keep empty
  values in that string, Alipay's signing side leaves them out: :func:`verify_notification` tries the
  first and, only when the notification carries empty values, the second.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.payments.wechatpay.signing import sign, verify

__all__ = ["SIGN_TYPE", "Form", "FormError", "SignatureError", "answer_node", "load_private_key", "load_public_key",
           "notification_content", "parse_form", "request_content", "sign", "sign_request", "verify",
           "verify_notification"]

SIGN_TYPE = "RSA2"
CHARSETS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk", "gb2312": "gbk", "gb18030": "gb18030"}


class SignatureError(Exception):
    """What arrived cannot be trusted; the message says why (for the audit record)."""


class FormError(ValueError):
    """A body that is not a form Alipay would send (the message says why)."""


def _key_bytes(text: str) -> tuple[bool, bytes]:
    """(is PEM, bytes): a PEM block, or the bare base64 DER that Alipay's key tool hands out."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        return True, text.encode()
    try:
        return False, base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error:
        raise ValueError("a key is PEM or base64 DER") from None


def load_private_key(text: str) -> rsa.RSAPrivateKey:
    """The application private key: PEM, or bare base64 of PKCS#8 or PKCS#1 DER."""
    pem, raw = _key_bytes(text)
    key = (serialization.load_pem_private_key(raw, password=None) if pem
           else serialization.load_der_private_key(raw, password=None))
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the application private key must be an RSA key")
    return key


def load_public_key(text: str) -> rsa.RSAPublicKey:
    """The Alipay public key (or an application's): PEM, or bare base64 of the DER public key."""
    pem, raw = _key_bytes(text)
    key = serialization.load_pem_public_key(raw) if pem else serialization.load_der_public_key(raw)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("an Alipay public key must be an RSA key")
    return key


def _joined(items: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(items))


def request_content(params: Mapping[str, str]) -> str:
    """What a request's ``sign`` covers: non-empty parameters but ``sign``, sorted, raw values."""
    return _joined((k, v) for k, v in params.items() if k != "sign" and v != "")


def sign_request(private_key: rsa.RSAPrivateKey, params: Mapping[str, str]) -> dict[str, str]:
    """``params`` with their ``sign`` added."""
    return {**params, "sign": sign(private_key, request_content(params).encode())}


def notification_content(params: Mapping[str, str], *, drop_empty: bool = False) -> str:
    """What a notification's ``sign`` covers: every parameter but ``sign`` and ``sign_type``."""
    return _joined((k, v) for k, v in params.items()
                   if k not in ("sign", "sign_type") and not (drop_empty and v == ""))


def verify_notification(public_key: rsa.RSAPublicKey, params: Mapping[str, str]) -> None:
    """Raise ``SignatureError`` unless ``params`` (URL-decoded) carry Alipay's RSA2 signature."""
    signature = params.get("sign", "")
    if not signature:
        raise SignatureError("no sign parameter")
    kind = params.get("sign_type", "")
    if kind != SIGN_TYPE:
        raise SignatureError(f"sign_type {kind[:20]!r} is not {SIGN_TYPE} (SHA256withRSA)")
    if verify(public_key, notification_content(params).encode(), signature):
        return
    if any(v == "" for v in params.values()) and verify(
            public_key, notification_content(params, drop_empty=True).encode(), signature):
        return
    raise SignatureError("signature does not verify with the Alipay public key")


@dataclass(frozen=True, slots=True)
class Form:
    """A decoded ``application/x-www-form-urlencoded`` body: each name once."""

    params: dict[str, str]
    charset: str


def parse_form(body: bytes) -> Form:
    """Decode a form body as Alipay sends it: percent-encoded bytes in the ``charset`` it names
    (``utf-8`` when it names none). A name given twice, or bytes the charset cannot read, is a
    ``FormError``."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise FormError("the body is not URL-encoded (raw non-ASCII bytes)") from None
    named = {k: v for k, v in parse_qsl(text, keep_blank_values=True, encoding="latin-1") if k == "charset"}
    label = named.get("charset", "utf-8").strip().lower()
    charset = CHARSETS.get(label)
    if charset is None:
        raise FormError(f"charset {label[:20]!r} is not one Alipay uses")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), encoding=charset,
                          errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(f"not a form in {charset}: {str(exc)[:80]}") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise FormError(f"parameter {name[:40]!r} appears twice")
        params[name] = value
    return Form(params, charset)


def answer_node(raw: str, node: str) -> tuple[str | None, str | None]:
    """From a synchronous answer's text, the exact text of the top-level ``node`` value (what Alipay
    signed) and the top-level ``sign``; ``None`` for either when absent. Walks the top-level object
    with the JSON decoder, so a brace inside a string value cannot move the boundaries."""
    decoder = json.JSONDecoder()
    found: dict[str, tuple[int, int]] = {}
    i = _skip(raw, 0)
    if raw[i:i + 1] != "{":
        raise ValueError("the answer is not a JSON object")
    i = _skip(raw, i + 1)
    while raw[i:i + 1] != "}":
        key, i = decoder.raw_decode(raw, i)
        i = _skip(raw, i)
        if not isinstance(key, str) or raw[i:i + 1] != ":":
            raise ValueError("the answer is not a JSON object")
        start = _skip(raw, i + 1)
        _, end = decoder.raw_decode(raw, start)
        found[key] = (start, end)
        i = _skip(raw, end)
        if raw[i:i + 1] == ",":
            i = _skip(raw, i + 1)
        elif raw[i:i + 1] != "}":
            raise ValueError("the answer is not a JSON object")
    text = raw[found[node][0]:found[node][1]] if node in found else None
    signature = None
    if "sign" in found:
        value = json.loads(raw[found["sign"][0]:found["sign"][1]])
        signature = value if isinstance(value, str) else None
    return text, signature


def _skip(raw: str, i: int) -> int:
    while i < len(raw) and raw[i] in " \t\r\n":
        i += 1
    return i
