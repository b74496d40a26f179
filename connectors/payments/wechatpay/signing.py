"""WeChat Pay API v3 signatures and the encrypted resource.

Requests we send are signed over ``"{METHOD}\\n{path?query}\\n{timestamp}\\n{nonce}\\n{body}\\n"`` with the
merchant's private key (SHA256withRSA, PKCS#1 v1.5) and carry ``Authorization: WECHATPAY2-SHA256-RSA2048
mchid="…",nonce_str="…",signature="…",timestamp="…",serial_no="…"``. What the platform sends us (answers
and notifications) is signed over ``"{timestamp}\\n{nonce}\\n{body}\\n"`` with the key that
``Wechatpay-Serial`` names: a platform certificate's serial or a platform public-key id. Notification
resources are AES-256-GCM under the APIv3 key (nonce: the resource's 12 characters; AAD:
``associated_data``; ciphertext: base64 of ciphertext and tag).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"
PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"


class SignatureError(Exception):
    """What the platform sent cannot be trusted; ``reason`` says why (for the audit record)."""


class UnknownSerial(SignatureError):
    """``Wechatpay-Serial`` names no key we hold (a new platform certificate, or not the platform)."""


def _pem(text: str, label: str) -> bytes:
    """A PEM block, or the bare base64 body the merchant platform hands out, as PEM bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        return text.encode()
    return f"-----BEGIN {label}-----\n{text}\n-----END {label}-----\n".encode()


def load_private_key(text: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(_pem(text, "PRIVATE KEY"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the merchant key must be an RSA private key")
    return key


def load_public_key(text: str) -> rsa.RSAPublicKey:
    """A platform public key (PEM) or a platform certificate (PEM) → its RSA public key."""
    raw = _pem(text, "PUBLIC KEY")
    key = (x509.load_pem_x509_certificate(raw).public_key() if b"CERTIFICATE" in raw
           else serialization.load_pem_public_key(raw))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("a platform key must be an RSA public key")
    return key


def sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    """SHA256withRSA (PKCS#1 v1.5), base64."""
    return base64.b64encode(private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(public_key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def platform_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """What the platform signs: ``timestamp\\nnonce\\nbody\\n`` over the raw body bytes."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def request_message(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """What a merchant signs: ``METHOD\\npath?query\\ntimestamp\\nnonce\\nbody\\n`` (empty body for GET)."""
    return f"{method.upper()}\n{path}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"


def new_nonce() -> str:
    return secrets.token_hex(16).upper()


def authorization(*, mchid: str, serial_no: str, private_key: rsa.RSAPrivateKey, method: str, path: str,
                  body: bytes, timestamp: int | None = None, nonce: str | None = None) -> str:
    """The ``Authorization`` header of one request to the platform."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or new_nonce()
    signature = sign(private_key, request_message(method, path, ts, nonce, body))
    return (f'{SIGNATURE_TYPE} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{ts}",serial_no="{serial_no}"')


def parse_authorization(header: str) -> dict[str, str]:
    """The fields of an ``Authorization`` header; ``ValueError`` when it is not a v3 one."""
    scheme, _, params = header.partition(" ")
    if scheme != SIGNATURE_TYPE:
        raise ValueError(f"not a {SIGNATURE_TYPE} authorization")
    fields: dict[str, str] = {}
    for part in params.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or len(value) < 2 or value[0] != '"' or value[-1] != '"':
            raise ValueError(f"malformed authorization parameter {part.strip()[:40]!r}")
        fields[name] = value[1:-1]
    missing = {"mchid", "nonce_str", "signature", "timestamp", "serial_no"} - set(fields)
    if missing:
        raise ValueError(f"authorization lacks {sorted(missing)}")
    return fields


KeyFetcher = Callable[[str], "rsa.RSAPublicKey | None"]


@dataclass
class PlatformKeys:
    """The platform's verification keys by ``Wechatpay-Serial``.

    ``fetch`` is the hook for serials we do not hold yet: a deployment on platform certificates can
    download them (``GET /v3/certificates``, decrypted with the APIv3 key) and return the one asked
    for. Without it an unknown serial is refused, and the platform sends the notification again later.
    """

    keys: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)
    fetch: KeyFetcher | None = None

    @classmethod
    def from_pem(cls, pems: Mapping[str, str], fetch: KeyFetcher | None = None) -> PlatformKeys:
        return cls({serial.upper(): load_public_key(pem) for serial, pem in pems.items()}, fetch)

    def key_for(self, serial: str) -> rsa.RSAPublicKey:
        key = self.keys.get(serial.upper())
        if key is None and self.fetch is not None:
            key = self.fetch(serial)
            if key is not None:
                self.keys[serial.upper()] = key
        if key is None:
            raise UnknownSerial(f"Wechatpay-Serial {serial[:70]!r} names no platform certificate or public key we hold")
        return key


@dataclass(frozen=True, slots=True)
class Signed:
    """The signature headers of a platform message that verified."""

    timestamp: int
    nonce: str
    serial: str


def check_freshness(stamp: str, nonce: str, *, now: float, window_s: int, prefix: str = "Wechatpay-") -> int:
    """The timestamp (epoch seconds) of a signed message, when it is within ``window_s`` of ``now`` and
    the nonce is at most 64 characters; ``SignatureError`` otherwise (``prefix`` names the headers)."""
    if not stamp.isdigit() or len(stamp) > 12:
        raise SignatureError(f"{prefix}Timestamp {stamp[:20]!r} is not epoch seconds")
    skew = now - int(stamp)
    if abs(skew) > window_s:
        raise SignatureError(f"stale timestamp: signed {int(skew)}s from our clock (window {window_s}s)")
    if len(nonce) > 64:
        raise SignatureError(f"{prefix}Nonce is longer than 64 characters")
    return int(stamp)


def verify_platform(keys: PlatformKeys, headers: Mapping[str, str], body: bytes, *, now: float,
                    window_s: int) -> Signed:
    """Check a platform message's signature headers; raise ``SignatureError`` naming what is wrong.

    Order: probes first (they must fail however they are signed), then the clock (no RSA work for a
    stale copy), then the key the serial names, then the signature over the raw body.
    """
    signature = headers.get("Wechatpay-Signature", "")
    stamp = headers.get("Wechatpay-Timestamp", "")
    nonce = headers.get("Wechatpay-Nonce", "")
    serial = headers.get("Wechatpay-Serial", "")
    if not (signature and stamp and nonce and serial):
        raise SignatureError("missing Wechatpay-Signature, -Timestamp, -Nonce or -Serial")
    if signature.startswith(SIGNTEST_PREFIX):
        raise SignatureError("a WECHATPAY/SIGNTEST/ probe signature (it must fail verification)")
    kind = headers.get("Wechatpay-Signature-Type", SIGNATURE_TYPE)
    if kind != SIGNATURE_TYPE:
        raise SignatureError(f"signature type {kind[:40]!r} is not {SIGNATURE_TYPE}")
    check_freshness(stamp, nonce, now=now, window_s=window_s)
    key = keys.key_for(serial)
    if not verify(key, platform_message(stamp, nonce, body), signature):
        raise SignatureError(f"signature does not verify with the key of serial {serial[:70]!r}")
    return Signed(int(stamp), nonce, serial.upper())


def decrypt_resource(api_v3_key: bytes, resource: Mapping[str, Any]) -> bytes:
    """The plaintext of an ``encrypt-resource``; ``SignatureError`` when it does not authenticate."""
    if resource.get("algorithm") != "AEAD_AES_256_GCM":
        raise SignatureError(f"resource algorithm {str(resource.get('algorithm'))[:40]!r} is not AEAD_AES_256_GCM")
    nonce, ciphertext = resource.get("nonce"), resource.get("ciphertext")
    associated = resource.get("associated_data") or ""
    if not (isinstance(nonce, str) and isinstance(ciphertext, str) and isinstance(associated, str)):
        raise SignatureError("resource lacks its nonce or ciphertext")
    try:
        return AESGCM(api_v3_key).decrypt(nonce.encode(), base64.b64decode(ciphertext, validate=True),
                                          associated.encode())
    except (InvalidTag, binascii.Error, ValueError):
        raise SignatureError("resource does not decrypt with our APIv3 key (wrong key or altered)") from None


def encrypt_resource(api_v3_key: bytes, plaintext: bytes, *, associated_data: str, original_type: str,
                     nonce: str | None = None) -> dict[str, str]:
    """The platform's side of :func:`decrypt_resource` (for the simulator)."""
    nonce = nonce or secrets.token_hex(6)
    ciphertext = AESGCM(api_v3_key).encrypt(nonce.encode(), plaintext, associated_data.encode())
    return {"algorithm": "AEAD_AES_256_GCM", "ciphertext": base64.b64encode(ciphertext).decode(),
            "associated_data": associated_data, "nonce": nonce, "original_type": original_type}
