"""The e-CNY bank adapter's signed JSON: one scheme for notifications, requests and answers.

There is no public standard merchant API for digital RMB: a merchant integrates through its
operating bank's own API. This adapter speaks a generic signed-JSON variant whose signature scheme is
a setting (:class:`SignType`): ``rsa-sha256`` (SHA256withRSA, PKCS#1 v1.5) or ``sm2-sm3`` (SM2 with SM3
and the default ID, :mod:`.sm2`). The signature is base64 (of the DER ``SEQUENCE {r, s}`` for SM2)
and travels in headers:

``Ecny-Timestamp`` (epoch seconds), ``Ecny-Nonce`` (≤ 64 characters), ``Ecny-Sign-Type``,
``Ecny-Signature``; requests also carry ``Ecny-Merchant``.

What the bank sends (notifications, answers) is signed over ``"{timestamp}\\n{nonce}\\n{body}\\n"``;
what we send over ``"{METHOD}\\n{path?query}\\n{timestamp}\\n{nonce}\\n{body}\\n"`` (the raw body bytes).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from connectors.payments.ecny import sm2
from connectors.payments.wechatpay.signing import SignatureError as WeChatSignatureError
from connectors.payments.wechatpay.signing import (
    check_freshness,
    load_private_key,
    load_public_key,
    platform_message,
    request_message,
)
from connectors.payments.wechatpay.signing import sign as rsa_sign
from connectors.payments.wechatpay.signing import verify as rsa_verify

TIMESTAMP, NONCE, SIGN_TYPE, SIGNATURE, MERCHANT = (
    "Ecny-Timestamp", "Ecny-Nonce", "Ecny-Sign-Type", "Ecny-Signature", "Ecny-Merchant")


class SignType(StrEnum):
    RSA_SHA256 = "rsa-sha256"
    SM2_SM3 = "sm2-sm3"


class SignatureError(Exception):
    """What was sent as the bank's cannot be trusted; the message says why (for the audit record)."""


class Signer(Protocol):
    sign_type: SignType

    def sign(self, message: bytes) -> str:
        """The base64 signature of ``message``."""


class Verifier(Protocol):
    sign_type: SignType

    def verify(self, message: bytes, signature: str) -> bool:
        """True when ``signature`` (base64) is the key holder's signature of ``message``."""


class RsaSigner:
    sign_type = SignType.RSA_SHA256

    def __init__(self, pem: str) -> None:
        self.key = load_private_key(pem)

    def sign(self, message: bytes) -> str:
        return rsa_sign(self.key, message)


class RsaVerifier:
    sign_type = SignType.RSA_SHA256

    def __init__(self, pem: str) -> None:
        self.key = load_public_key(pem)

    def verify(self, message: bytes, signature: str) -> bool:
        return rsa_verify(self.key, message, signature)


class Sm2Signer:
    sign_type = SignType.SM2_SM3

    def __init__(self, private_hex: str) -> None:
        self.key = sm2.PrivateKey.from_hex(private_hex)
        self.public = self.key.public_key()

    def sign(self, message: bytes) -> str:
        return base64.b64encode(sm2.sign(self.key, message, public=self.public)).decode()


class Sm2Verifier:
    sign_type = SignType.SM2_SM3

    def __init__(self, public_hex: str) -> None:
        self.key = sm2.PublicKey.from_hex(public_hex)

    def verify(self, message: bytes, signature: str) -> bool:
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        return sm2.verify(self.key, message, raw)


def signer(sign_type: SignType, private_key: str) -> Signer:
    """Our signing key: a PEM RSA private key, or an SM2 private key as 64 hex digits."""
    return RsaSigner(private_key) if sign_type is SignType.RSA_SHA256 else Sm2Signer(private_key)


def verifier(sign_type: SignType, public_key: str) -> Verifier:
    """The bank's key: a PEM RSA public key or certificate, or an SM2 public key as hex (``04``+x+y)."""
    return RsaVerifier(public_key) if sign_type is SignType.RSA_SHA256 else Sm2Verifier(public_key)


def new_nonce() -> str:
    return secrets.token_hex(16)


def bank_headers(key: Signer, body: bytes, *, timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers of a bank notification or answer ``body`` (the bank's side: simulator, tests)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or new_nonce()
    return {TIMESTAMP: stamp, NONCE: nonce, SIGN_TYPE: key.sign_type.value,
            SIGNATURE: key.sign(platform_message(stamp, nonce, body))}


def request_headers(key: Signer, merchant_no: str, method: str, path: str, body: bytes) -> dict[str, str]:
    """The headers of one request of ours to the bank."""
    stamp, nonce = str(int(time.time())), new_nonce()
    return {TIMESTAMP: stamp, NONCE: nonce, SIGN_TYPE: key.sign_type.value, MERCHANT: merchant_no,
            SIGNATURE: key.sign(request_message(method, path, stamp, nonce, body))}


@dataclass(frozen=True, slots=True)
class Signed:
    timestamp: int
    nonce: str


def _checked_stamp(headers: Mapping[str, str], key: Verifier, *, now: float, window_s: int) -> tuple[str, str, str]:
    signature, stamp, nonce = headers.get(SIGNATURE, ""), headers.get(TIMESTAMP, ""), headers.get(NONCE, "")
    if not (signature and stamp and nonce):
        raise SignatureError(f"missing {SIGNATURE}, {TIMESTAMP} or {NONCE}")
    kind = headers.get(SIGN_TYPE, key.sign_type.value)
    if kind != key.sign_type.value:
        raise SignatureError(f"sign type {kind[:20]!r} is not the configured {key.sign_type.value}")
    try:
        check_freshness(stamp, nonce, now=now, window_s=window_s, prefix="Ecny-")
    except WeChatSignatureError as exc:
        raise SignatureError(str(exc)) from None
    return signature, stamp, nonce


def verify_bank(key: Verifier, headers: Mapping[str, str], body: bytes, *, now: float, window_s: int) -> Signed:
    """Check what the bank sent (a notification or an answer); ``SignatureError`` naming what is wrong.
    The clock is checked before the (costlier) signature."""
    signature, stamp, nonce = _checked_stamp(headers, key, now=now, window_s=window_s)
    if not key.verify(platform_message(stamp, nonce, body), signature):
        raise SignatureError(f"signature does not verify with the bank's {key.sign_type.value} key")
    return Signed(int(stamp), nonce)


def verify_request(key: Verifier, headers: Mapping[str, str], method: str, path: str, body: bytes, *, now: float,
                   window_s: int) -> Signed:
    """Check one of our requests (the bank's side: the simulator)."""
    signature, stamp, nonce = _checked_stamp(headers, key, now=now, window_s=window_s)
    if not key.verify(request_message(method, path, stamp, nonce, body), signature):
        raise SignatureError("request signature does not verify with the merchant's key")
    return Signed(int(stamp), nonce)
