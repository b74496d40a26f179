"""Blind indexes: keyed HMAC-SHA256 of a normalised phone or ID number, for exact lookup without decryption.

An index looks like ``<key_id>:<32 hex>``, e.g. ``k2025:3f9a…``. Store it beside the encrypted value
(``customers.phone_bidx``), index that column, and look up with
``WHERE phone_bidx IN (:candidates)`` using ``BlindIndex.candidates`` (one value per key in the ring,
so lookups keep working while a rotation is rebuilding the indexes).

Keys: each purpose (``phone``, ``id_number``) has its own HMAC key derived from the ring's master key
with HKDF (``info = "gashub/blind-index/v1/<purpose>"``), so equal strings indexed for different
purposes do not match, and the index keys are independent of the field-encryption key. A separate
ring (its own settings and rotation schedule) may be given instead of the cipher's.

Truncation to 128 bits (32 hex characters): keeps the column short while collisions stay
negligible — by the birthday bound, about 2⁶⁴ distinct values before one collision is likely
(≈ 3·10⁻²⁰ for a million customers). Truncation is not a privacy measure: a shorter index (e.g. 16
bits) would give deliberate false positives and some k-anonymity, but would force every lookup to
decrypt and compare many rows. The trade-off chosen is exact lookup; a caller may still decrypt and
compare the matched row.

Limits: phones (≈10¹⁰ values) and ID numbers have little entropy, so the index protects them only as
long as the index key is secret — anyone holding it can hash every possible number in minutes. Keep
the keys out of the database and its backups, and treat equal indexes as revealing equal values.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Literal

from core.privacy.keys import KeyRing, canonical_key_id
from core.privacy.normalise import normalise_id_number, normalise_phone

Purpose = Literal["phone", "id_number"]
HEX_CHARS = 32
"""Hex characters kept from the HMAC-SHA256 (128 bits)."""

_NORMALISERS: dict[str, Callable[[str], str]] = {"phone": normalise_phone, "id_number": normalise_id_number}


def normalise(value: str, purpose: Purpose) -> str:
    """``value`` in the canonical form indexed for ``purpose``."""
    try:
        normaliser = _NORMALISERS[purpose]
    except KeyError:
        raise ValueError(f"unknown blind-index purpose {purpose!r} (known: {', '.join(_NORMALISERS)})") from None
    return normaliser(value)


class BlindIndex:
    """Computes blind indexes of phones and ID numbers with the keys of a ``KeyRing``."""

    __slots__ = ("_ring",)

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring

    @property
    def ring(self) -> KeyRing:
        """The key ring in use."""
        return self._ring

    def __repr__(self) -> str:
        return f"BlindIndex({self._ring!r})"

    def compute(self, value: str, *, purpose: Purpose, key_id: str | None = None) -> str:
        """The index ``<key_id>:<32 hex>`` of ``value`` for ``purpose``, under the current key by default.

        Raises ``ValueError`` when ``value`` is empty once normalised (an empty index would match every
        empty value), ``KeyError`` for a key id not in the ring.
        """
        canonical = normalise(value, purpose)
        if not canonical:
            raise ValueError(f"nothing to index: the {purpose} is empty once normalised")
        kid = self._ring.current if key_id is None else canonical_key_id(key_id)
        if kid not in self._ring:
            raise KeyError(f"key id {kid!r} is not in the ring (known: {', '.join(self._ring.ids)})")
        key = self._ring.subkey(kid, b"gashub/blind-index/v1/" + purpose.encode("ascii"))
        digest = hmac.new(key, canonical.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return f"{kid}:{digest[:HEX_CHARS]}"

    def phone(self, value: str) -> str:
        """``compute(value, purpose="phone")`` under the current key."""
        return self.compute(value, purpose="phone")

    def id_number(self, value: str) -> str:
        """``compute(value, purpose="id_number")`` under the current key."""
        return self.compute(value, purpose="id_number")

    def candidates(self, value: str, *, purpose: Purpose) -> list[str]:
        """The index of ``value`` under every key of the ring, the current one first.

        Use as ``WHERE <col> IN (…)``: rows indexed under an older key still match during a rebuild.
        """
        return [self.compute(value, purpose=purpose, key_id=kid) for kid in self._ring.ids]

    def matches(self, value: str, index: str, *, purpose: Purpose) -> bool:
        """True when ``index`` (under whichever key of the ring it names) is the index of ``value``."""
        kid, _, _ = index.partition(":")
        if kid not in self._ring:
            return False
        try:
            expected = self.compute(value, purpose=purpose, key_id=kid)
        except ValueError:
            return False
        return hmac.compare_digest(expected.encode(), index.encode("utf-8", "surrogatepass"))

    def needs_rebuild(self, index: str) -> bool:
        """True when ``index`` was computed under a key other than the current one."""
        return index.partition(":")[0].lower() != self._ring.current
