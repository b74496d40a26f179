"""Encryption of personal fields at rest: AES-256-GCM with a key ring and row-bound associated data.

Token format (ASCII, safe in any text column)::

    v1:<key_id>:<base64url(nonce ‖ ciphertext ‖ tag), unpadded>

* ``v1`` — format version; a future format gets ``v2`` and ``decrypt`` dispatches on it.
* ``key_id`` — which master key of the ``KeyRing`` encrypted it (so rotation can find old tokens).
* nonce — 96 random bits per encryption (never a counter: several processes encrypt at once). With
  random nonces one key should encrypt fewer than 2³² values; rotate well before that.
* tag — the 128-bit GCM tag.

The associated data is ``"gashub/field/v1" ‖ key_id ‖ context`` where ``context`` names where the
value lives: ``field_context("customers", "phone", row_id)`` → ``"customers.phone:<row_id>"``. A token
copied to another row or column, or with its header edited, fails to decrypt. The row id must
therefore be known before the insert (the project's ULIDs are).

What it does not hide: the length of the value (ciphertext length = UTF-8 length + 28 bytes) and
whether two tokens were written under the same key. Exact lookup goes through ``BlindIndex``,
never through the tokens.

Every failure to decrypt is a ``DecryptionError`` with a ``reason``; no exception of the
``cryptography`` package escapes, and no message contains plaintext or key material.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import CoreError
from core.privacy.keys import KeyRing

VERSION = "v1"
NONCE_BYTES = 12
TAG_BYTES = 16
_SUBKEY_LABEL = b"gashub/field-cipher/v1"
_AAD_LABEL = b"gashub/field/v1"
_B64URL = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?", re.ASCII)
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)

Reason = Literal["malformed", "unsupported_version", "unknown_key", "authentication_failed"]
RowId = TypeVar("RowId")


class DecryptionError(CoreError):
    """A token could not be decrypted. ``reason`` says why:

    * ``malformed`` — not a token at all (wrong shape, bad or non-canonical base64, too short);
    * ``unsupported_version`` — a format version this code does not know;
    * ``unknown_key`` — the key id is not in the ring (a key removed too early, or another ring);
    * ``authentication_failed`` — tampered token, wrong context (copied to another row/column), or
      a different key under the same id.

    Not retriable: trying again gives the same answer.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


def field_context(table: str, column: str, row_id: object) -> str:
    """The canonical context of a field: ``"<table>.<column>:<row_id>"``.

    ``table`` is an identifier, optionally schema-qualified (``core.customers``); ``column`` an
    identifier; ``row_id`` anything with a non-empty ``str()``. Because the table and column cannot
    contain ``:`` and the column cannot contain ``.``, distinct fields never share a context.
    """
    if not _TABLE.fullmatch(table):
        raise ValueError(f"table {table!r} is not an identifier (optionally schema-qualified)")
    if not _COLUMN.fullmatch(column):
        raise ValueError(f"column {column!r} is not an identifier")
    row = str(row_id)
    if not row:
        raise ValueError("the row id is empty: encrypt once the row id is known")
    return f"{table}.{column}:{row}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes | None:
    """The bytes of canonical unpadded base64url ``text``, or None (so every edit of a token shows)."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return data if _b64url(data) == text else None


def _aad(key_id: str, context: str) -> bytes:
    return b"\x00".join((_AAD_LABEL, key_id.encode("ascii"), context.encode("utf-8", "surrogatepass")))


def _check_context(context: str) -> None:
    if not isinstance(context, str) or not context:
        raise ValueError("context must be a non-empty string naming the field, e.g. field_context(table, column, id)")


@dataclass(frozen=True, slots=True)
class Token:
    """A parsed token: version, key id and the raw ``nonce ‖ ciphertext ‖ tag``."""

    version: str
    key_id: str
    blob: bytes

    @classmethod
    def parse(cls, token: str) -> Token:
        """Split and decode ``token``; ``DecryptionError`` (``malformed``/``unsupported_version``) if it is not one."""
        if not isinstance(token, str):
            raise DecryptionError("malformed", f"a token is a string, not {type(token).__name__}")
        parts = token.split(":")
        if len(parts) != 3:
            raise DecryptionError("malformed", "not an encrypted field token (expected v1:<key_id>:<data>)")
        version, key_id, data = parts
        if version != VERSION:
            raise DecryptionError(
                "unsupported_version", f"token format {version[:8]!r} is not supported (this code reads {VERSION})"
            )
        blob = _unb64url(data)
        if blob is None or len(blob) < NONCE_BYTES + TAG_BYTES:
            raise DecryptionError("malformed", "the token's data is not canonical base64url of nonce|ciphertext|tag")
        return cls(version, key_id, blob)


def key_id_of(token: str) -> str:
    """The key id a token was written under (``DecryptionError`` if it is not a token)."""
    return Token.parse(token).key_id


class FieldCipher:
    """Encrypts and decrypts personal fields (name, phone, ID number, address) with a ``KeyRing``.

    New tokens use the ring's current key; tokens under any key still in the ring decrypt.
    """

    __slots__ = ("_aead", "_ring")

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring
        self._aead: dict[str, AESGCM] = {}

    @property
    def ring(self) -> KeyRing:
        """The key ring in use."""
        return self._ring

    def __repr__(self) -> str:
        return f"FieldCipher({self._ring!r})"

    def _cipher(self, key_id: str) -> AESGCM:
        aead = self._aead.get(key_id)
        if aead is None:
            aead = AESGCM(self._ring.subkey(key_id, _SUBKEY_LABEL))
            self._aead[key_id] = aead
        return aead

    def encrypt(self, value: str, *, context: str) -> str:
        """``value`` encrypted under the current key and bound to ``context``, as a ``v1:…`` token."""
        _check_context(context)
        if not isinstance(value, str):
            raise TypeError(f"encrypt takes a str, not {type(value).__name__}")
        try:
            plaintext = value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the value is not encodable as UTF-8 (it contains a lone surrogate)") from None
        key_id = self._ring.current
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._cipher(key_id).encrypt(nonce, plaintext, _aad(key_id, context))
        return f"{VERSION}:{key_id}:{_b64url(nonce + sealed)}"

    def decrypt(self, token: str, *, context: str) -> str:
        """The plaintext of ``token``, which must have been encrypted for this same ``context``.

        Raises ``DecryptionError`` on anything else: malformed, unknown version or key id, tampering,
        wrong context.
        """
        _check_context(context)
        parsed = Token.parse(token)
        if parsed.key_id not in self._ring:
            raise DecryptionError(
                "unknown_key",
                f"token key id {parsed.key_id[:20]!r} is not in the key ring (known: {', '.join(self._ring.ids)})",
            )
        key_id = parsed.key_id.lower()
        nonce, sealed = parsed.blob[:NONCE_BYTES], parsed.blob[NONCE_BYTES:]
        try:
            plaintext = self._cipher(key_id).decrypt(nonce, sealed, _aad(parsed.key_id, context))
            return plaintext.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            raise DecryptionError(
                "authentication_failed",
                f"token does not authenticate for context {context[:80]!r}: tampered, copied from another "
                f"field, or key {key_id!r} differs from the one that wrote it",
            ) from None

    def needs_rotation(self, token: str) -> bool:
        """True when ``token`` was written under a key other than the current one."""
        return key_id_of(token).lower() != self._ring.current

    def rotate(self, token: str, *, context: str) -> str:
        """``token`` re-encrypted under the current key, or ``token`` itself if it already uses it.

        The old token is authenticated first, so rotation never launders a tampered value.
        """
        if not self.needs_rotation(token):
            _check_context(context)
            return token
        return self.encrypt(self.decrypt(token, context=context), context=context)


def rotate(token: str, *, context: str, ring: KeyRing) -> str:
    """``token`` re-encrypted under ``ring``'s current key when it uses an older one; a no-op otherwise."""
    return FieldCipher(ring).rotate(token, context=context)


@dataclass(frozen=True, slots=True)
class RowRotation(Generic[RowId]):
    """What ``rotate_rows`` did to one row.

    ``tokens``: the columns whose token changed, with the new token (write these back).
    ``indexes``: for columns given in ``reindex``, the fresh blind index of the decrypted value.
    ``failures``: column → reason, for columns that could not be decrypted (``strict=False`` only).
    """

    row_id: RowId
    tokens: dict[str, str] = field(default_factory=dict)
    indexes: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """True when the row needs an UPDATE."""
        return bool(self.tokens or self.indexes)


def rotate_rows(
    rows: Iterable[tuple[RowId, Mapping[str, str | None]]],
    *,
    table: str,
    ring: KeyRing,
    context: Callable[[str, str, RowId], str] = field_context,
    reindex: Mapping[str, Callable[[str], str]] | None = None,
    strict: bool = True,
) -> Iterator[RowRotation[RowId]]:
    """Re-encrypt the tokens of many rows under the current key, yielding one result per input row.

    ``rows`` yields ``(row_id, {column: token or None})``; ``None`` (a NULL column) is skipped. The
    context of each field is ``context(table, column, row_id)`` (``field_context`` by default). Being a
    generator that yields once per row, it drives a progress bar directly::

        for result in track(rotate_rows(rows, table="customers", ring=ring), total=count):
            if result.changed:
                update(result.row_id, result.tokens, result.indexes)

    ``reindex`` maps a column to a function computing its blind index from the plaintext (e.g.
    ``{"phone": index.phone}``); those columns are always decrypted and their index recomputed, which
    is how blind indexes move to a new key. With ``strict`` (the default) the first field that does not
    decrypt raises ``DecryptionError`` (and a value the index function refuses, its ``ValueError``);
    otherwise the column is reported in ``failures`` (the ``DecryptionError.reason``, or
    ``"index_failed"``) and the rest of the row still rotates.
    """
    cipher = FieldCipher(ring)
    reindex = reindex or {}
    for row_id, fields in rows:
        result: RowRotation[RowId] = RowRotation(row_id)
        for column, token in fields.items():
            if token is None:
                continue
            ctx = context(table, column, row_id)
            try:
                if column in reindex:
                    plaintext = cipher.decrypt(token, context=ctx)
                    result.indexes[column] = reindex[column](plaintext)
                    if cipher.needs_rotation(token):
                        result.tokens[column] = cipher.encrypt(plaintext, context=ctx)
                else:
                    new = cipher.rotate(token, context=ctx)
                    if new != token:
                        result.tokens[column] = new
            except DecryptionError as exc:
                if strict:
                    raise
                result.failures[column] = exc.reason
            except ValueError:
                if strict:
                    raise
                result.failures[column] = "index_failed"
        yield result
