"""SM2 signatures with SM3 digests (GB/T 32918.2, GM/T 0003), through ``gmssl``.

``gmssl`` (pure Python) does the curve arithmetic and SM3; this module puts the guards around it that
it lacks: keys are parsed strictly and public keys must lie on the curve (its constructor strips a
``04`` prefix with ``lstrip``, which eats more than the prefix, so the key is set after it); the
per-signature secret ``k`` comes from :mod:`secrets` (``gmssl`` draws it from :mod:`random` when
not given one); signatures are DER ``SEQUENCE {r, s}`` (GM/T 0009), decoded strictly by
``cryptography``, and ``r``, ``s`` are checked to lie in ``[1, n-1]`` before ``gmssl`` sees them.
The signer's identity is the default ID ``1234567812345678`` (what ``gmssl`` and most banks use), so
``e = SM3(Z_A || M)`` with ``Z_A = SM3(ENTL || ID || a || b || x_G || y_G || x_A || y_A)``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from gmssl import sm2 as gm_sm2
from gmssl import sm3 as gm_sm3

CURVE = gm_sm2.default_ecc_table
P = int(CURVE["p"], 16)
A = int(CURVE["a"], 16)
B = int(CURVE["b"], 16)
N = int(CURVE["n"], 16)
G = CURVE["g"]
DEFAULT_ID = b"1234567812345678"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HEX128 = re.compile(r"(04)?([0-9a-fA-F]{128})")


def sm3(data: bytes) -> bytes:
    """The SM3 digest of ``data`` (GB/T 32905)."""
    return bytes.fromhex(gm_sm3.sm3_hash(list(data)))


def on_curve(x: int, y: int) -> bool:
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An SM2 public key: ``x || y``, 128 hex digits (upper case kept as given is irrelevant)."""

    xy: str

    @classmethod
    def from_hex(cls, text: str) -> PublicKey:
        """128 hex digits (``x || y``), optionally after ``04`` (uncompressed point)."""
        m = _HEX128.fullmatch(text.strip())
        if m is None:
            raise ValueError("an SM2 public key is 128 hex digits (x || y), optionally prefixed by 04")
        xy = m.group(2).lower()
        if not on_curve(int(xy[:64], 16), int(xy[64:], 16)):
            raise ValueError("the SM2 public key is not a point on the SM2 curve")
        return cls(xy)

    def z(self, ident: bytes = DEFAULT_ID) -> bytes:
        """``Z_A``, the digest of the signer's identity and key."""
        entl = (len(ident) * 8).to_bytes(2, "big")
        return sm3(entl + ident + bytes.fromhex(CURVE["a"] + CURVE["b"] + G + self.xy))


@dataclass(frozen=True, slots=True)
class PrivateKey:
    d: int

    @classmethod
    def from_hex(cls, text: str) -> PrivateKey:
        text = text.strip()
        if not _HEX64.fullmatch(text) or not 1 <= int(text, 16) < N - 1:
            raise ValueError("an SM2 private key is 64 hex digits, in [1, n-2]")
        return cls(int(text, 16))

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(secrets.randbelow(N - 2) + 1)

    @property
    def hex(self) -> str:
        return f"{self.d:064x}"

    def public_key(self) -> PublicKey:
        crypt = _crypt(self.hex, "")
        return PublicKey(crypt._kg(self.d, G))


def _crypt(private_hex: str, public_xy: str) -> gm_sm2.CryptSM2:
    crypt = gm_sm2.CryptSM2(private_key=private_hex, public_key="")
    crypt.public_key = public_xy  # set after the constructor: its lstrip("04") would eat key digits
    return crypt


def sign(key: PrivateKey, message: bytes, *, k: int | None = None, public: PublicKey | None = None) -> bytes:
    """The DER signature of ``message`` (SM3 with ``Z_A`` of the default ID). ``public`` saves deriving
    the key's public half each time; ``k`` only for test vectors."""
    public = public or key.public_key()
    crypt = _crypt(key.hex, public.xy)
    e = sm3(public.z() + message)
    while True:
        nonce = k if k is not None else secrets.randbelow(N - 1) + 1
        raw = crypt.sign(e, f"{nonce:064x}")
        if raw is not None:  # r = 0, r + k = n or s = 0: draw again (never with a fixed k)
            return encode_dss_signature(int(raw[:64], 16), int(raw[64:], 16))
        if k is not None:
            raise ValueError("this k gives no signature")


def verify(key: PublicKey, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` (DER) is ``key``'s SM2 signature of ``message``."""
    try:
        r, s = decode_dss_signature(signature)
    except ValueError:
        return False
    if not (1 <= r < N and 1 <= s < N):
        return False
    e = sm3(key.z() + message)
    try:
        return bool(_crypt("", key.xy).verify(f"{r:064x}{s:064x}", e))
    except (TypeError, ValueError):  # a point at infinity on the way: not a valid signature
        return False
