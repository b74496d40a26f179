"""UnionPay online payment (全渠道, ACP) 5.1.0 signatures with ``signMethod=01`` (RSA certificate).

What is signed: every field but ``signature``, sorted by name, as ``name=value`` joined by ``&``
(values as received, not URL-encoded; an empty field takes part as ``name=``). Its SHA-256 digest
as lower-case hex is what the RSA key signs, SHA256withRSA (PKCS#1 v1.5), base64 in ``signature``.

Which key: version 5.1.0 sends the signing certificate itself in ``signPubKeyCert`` (PEM). It is
believed when it is one of the certificates we pinned (``sign_certs``), or when it chains to
UnionPay's middle and root certificates we hold (each directly issued by the next, all within their
validity) and its subject CN names the signer (``041@…@中国银联股份有限公司@…``: the third ``@`` field;
``00040000:SIGN`` in UnionPay's test environment). Verified certificates are kept by their PEM.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from connectors.payments.wechatpay.signing import sign as rsa_sign
from connectors.payments.wechatpay.signing import verify as rsa_verify

VERSION = "5.1.0"
SIGN_METHOD_RSA = "01"
SIGNER_NAME = "中国银联股份有限公司"
_KEPT = 16


class SignatureError(Exception):
    """What was sent as UnionPay's cannot be trusted; the message says why (for the audit record)."""


def signing_string(fields: Mapping[str, str]) -> str:
    """``k1=v1&k2=v2…`` over every field but ``signature``, sorted by name."""
    return "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "signature")


def digest(fields: Mapping[str, str]) -> bytes:
    """What the RSA key signs: the lower-case hex SHA-256 of :func:`signing_string`, as bytes."""
    return hashlib.sha256(signing_string(fields).encode()).hexdigest().encode()


def sign(fields: Mapping[str, str], key: rsa.RSAPrivateKey) -> str:
    """The ``signature`` of ``fields`` (the platform's side; for the simulator and tests)."""
    return rsa_sign(key, digest(fields))


def load_certificate(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.strip().encode())
    except ValueError:
        raise SignatureError("signPubKeyCert is not a PEM certificate") from None


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _current(cert: x509.Certificate, now: datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SignatureError(f"the {what} certificate is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d}"
                             f" to {cert.not_valid_after_utc:%Y-%m-%d})")


def _issued(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        raise SignatureError(f"the {what} certificate is not issued by the certificate above it") from None


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class UnionPayTrust:
    """The certificates a ``signPubKeyCert`` is checked against: pinned signing certificates, and/or
    UnionPay's root and middle certificates with the signer's name."""

    root: x509.Certificate | None = None
    middle: x509.Certificate | None = None
    pinned: Sequence[x509.Certificate] = ()
    signer_name: str = SIGNER_NAME
    _verified: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)

    @classmethod
    def from_pem(cls, *, root: str | None, middle: str | None, pinned: Sequence[str] = (),
                 signer_name: str = SIGNER_NAME) -> UnionPayTrust:
        return cls(x509.load_pem_x509_certificate(root.encode()) if root else None,
                   x509.load_pem_x509_certificate(middle.encode()) if middle else None,
                   [x509.load_pem_x509_certificate(p.encode()) for p in pinned], signer_name)

    def key_for(self, pem: str, *, now: datetime | None = None) -> rsa.RSAPublicKey:
        """The RSA key of a ``signPubKeyCert`` we trust; ``SignatureError`` naming what is wrong."""
        now = now or datetime.now(UTC)
        known = self._verified.get(pem)
        cert = load_certificate(pem)
        _current(cert, now, "signing")
        if known is not None:
            return known
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SignatureError("signPubKeyCert does not hold an RSA key (signMethod 01 is RSA)")
        if not any(_spki(p) == _spki(cert) for p in self.pinned):
            self._chain(cert, now)
        if len(self._verified) >= _KEPT:
            self._verified.pop(next(iter(self._verified)))
        self._verified[pem] = key
        return key

    def _chain(self, cert: x509.Certificate, now: datetime) -> None:
        if self.root is None or self.middle is None:
            raise SignatureError("signPubKeyCert is not a certificate we pinned (and no root/middle are configured)")
        _issued(cert, self.middle, "signing")
        _issued(self.middle, self.root, "middle")
        _current(self.middle, now, "middle")
        _current(self.root, now, "root")
        parts = _cn(cert).split("@")
        if len(parts) < 3 or parts[2] != self.signer_name:
            raise SignatureError(f"signPubKeyCert's CN {_cn(cert)[:80]!r} does not name {self.signer_name}")


def verify(fields: Mapping[str, str], trust: UnionPayTrust, *, now: datetime | None = None) -> None:
    """Check a notification's signature; ``SignatureError`` naming what is wrong."""
    if fields.get("version") != VERSION:
        raise SignatureError(f"version {fields.get('version', '')[:10]!r} is not {VERSION}")
    if fields.get("signMethod") != SIGN_METHOD_RSA:
        raise SignatureError(f"signMethod {fields.get('signMethod', '')[:10]!r} is not 01 (RSA certificate)")
    signature, cert = fields.get("signature", ""), fields.get("signPubKeyCert", "")
    if not signature or not cert:
        raise SignatureError("missing signature or signPubKeyCert")
    key = trust.key_for(cert, now=now)
    if not rsa_verify(key, digest(fields), signature):
        raise SignatureError("signature does not verify with signPubKeyCert's key")
