"""The key ring: named 256-bit master keys, one of them current.

Keys come from settings (in production from environment variables such as
``GASHUB_CORE__KEYS__K2025``), each a base64 encoding of 32 random bytes. This module only takes the
mapping ``key_id → base64`` and the id of the current key; it never reads the environment itself.

Key ids are short (1–16 characters of ``a-z``, ``0-9``, ``_``) and case-insensitive: they are stored
lower-case, because settings loaders fold the case of environment variable names
(``GASHUB_CORE__KEYS__K2025`` arrives as ``k2025``) and a token written under ``K2025`` must still
find its key after such a reload.

Master keys are never used directly: each use (field encryption, each blind-index purpose) gets its
own subkey derived with HKDF-SHA256 and a distinct ``info`` label, so one master key serves several
purposes without the purposes sharing key material.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
"""Master keys are 256 bits."""

GENERATE_COMMAND = 'python -c "import secrets,base64;print(base64.b64encode(secrets.token_bytes(32)).decode())"'
"""The command the error messages suggest for making a new key."""

_KEY_ID = re.compile(r"[a-z0-9_]{1,16}", re.ASCII)


class KeyRingError(ValueError):
    """The key configuration is unusable (bad id, bad encoding, wrong length, no current key).

    Messages name the key id and say how to fix it; they never contain key material.
    """


@runtime_checkable
class SecretLike(Protocol):
    """Anything holding a secret string, such as pydantic's ``SecretStr``."""

    def get_secret_value(self) -> str:
        """The secret in clear."""
        ...


def generate_key() -> str:
    """A fresh random key, base64-encoded: what ``GENERATE_COMMAND`` prints."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def canonical_key_id(key_id: str) -> str:
    """``key_id`` lower-cased and checked: 1–16 characters of ``a-z``, ``0-9``, ``_``.

    Raises ``KeyRingError`` otherwise (a colon, for instance, would break the token format).
    """
    canonical = key_id.lower() if isinstance(key_id, str) else ""
    if not _KEY_ID.fullmatch(canonical):
        raise KeyRingError(
            f"key id {key_id!r} is not valid: use 1-16 characters among a-z, 0-9 and _ (ids are case-insensitive)"
        )
    return canonical


def _decode_key(key_id: str, value: str | bytes | SecretLike) -> bytes:
    """The 32 raw bytes of a base64 key (standard or URL-safe alphabet, padding optional), or a ``KeyRingError``."""
    if isinstance(value, SecretLike):
        value = value.get_secret_value()
    text = value.decode("ascii", errors="replace") if isinstance(value, bytes) else value
    if not isinstance(text, str):
        raise KeyRingError(f"key {key_id!r} must be a base64 string. Generate one with: {GENERATE_COMMAND}")
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)  # padding is optional
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise KeyRingError(f"key {key_id!r} is not valid base64. Generate one with: {GENERATE_COMMAND}") from None
    if len(raw) != KEY_BYTES:
        raise KeyRingError(
            f"key {key_id!r} is {len(raw)} bytes after base64 decoding; AES-256 needs exactly {KEY_BYTES}. "
            f"Generate one with: {GENERATE_COMMAND}"
        )
    if len(set(raw)) == 1:
        raise KeyRingError(
            f"key {key_id!r} is one byte repeated (a placeholder?). Generate a random one with: {GENERATE_COMMAND}"
        )
    return raw


class KeyRing:
    """Master keys by id, and which one is current (used for all new encryption and indexing).

    Older keys stay in the ring so that data written under them can still be read, until a rotation
    has rewritten everything under the current key; then they can be removed.
    """

    __slots__ = ("_current", "_derived", "_keys")

    def __init__(self, keys: Mapping[str, bytes], *, current: str) -> None:
        """A ring from raw 32-byte keys. Most callers want ``KeyRing.from_settings``."""
        if not keys:
            raise KeyRingError(
                f"the key ring is empty: configure at least one key (e.g. GASHUB_CORE__KEYS__K1). "
                f"Generate one with: {GENERATE_COMMAND}"
            )
        ring: dict[str, bytes] = {}
        for key_id, raw in keys.items():
            canonical = canonical_key_id(key_id)
            if canonical in ring:
                raise KeyRingError(f"key id {key_id!r} appears twice (ids are case-insensitive)")
            if not isinstance(raw, bytes) or len(raw) != KEY_BYTES:
                raise KeyRingError(
                    f"key {key_id!r} must be exactly {KEY_BYTES} raw bytes. Generate one with: {GENERATE_COMMAND}"
                )
            ring[canonical] = bytes(raw)
        current_id = canonical_key_id(current)
        if current_id not in ring:
            raise KeyRingError(
                f"the current key id {current!r} is not in the ring (known ids: {', '.join(sorted(ring))})"
            )
        self._keys = ring
        self._current = current_id
        self._derived: dict[tuple[str, bytes], bytes] = {}

    @classmethod
    def from_settings(cls, keys: Mapping[str, str | bytes | SecretLike], *, current: str) -> KeyRing:
        """A ring from ``key_id → base64 key`` (strings, bytes or ``SecretStr``), as settings hold them.

        Every key must decode to exactly 32 bytes; a wrong one raises ``KeyRingError`` with the command
        that generates a correct one.
        """
        return cls({key_id: _decode_key(str(key_id), value) for key_id, value in keys.items()}, current=current)

    @property
    def current(self) -> str:
        """The id of the key that new ciphertexts and indexes use."""
        return self._current

    @property
    def ids(self) -> tuple[str, ...]:
        """All key ids, the current one first, the others in sorted order."""
        return (self._current, *sorted(k for k in self._keys if k != self._current))

    def __contains__(self, key_id: object) -> bool:
        return isinstance(key_id, str) and key_id.lower() in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyRing(current={self._current!r}, ids={list(self.ids)!r})"

    def subkey(self, key_id: str, purpose: bytes) -> bytes:
        """The 32-byte key for ``purpose`` derived from master key ``key_id`` (HKDF-SHA256, cached).

        Raises ``KeyError`` for an id the ring does not hold.
        """
        canonical = key_id.lower()
        cached = self._derived.get((canonical, purpose))
        if cached is None:
            master = self._keys[canonical]
            cached = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose).derive(master)
            self._derived[(canonical, purpose)] = cached
        return cached
