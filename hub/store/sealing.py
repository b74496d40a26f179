"""Personal data in stored message bodies (A3): sealed with the core's field cipher, or redacted.

A message whose catalogue model marks fields ``Personal`` (a phone, a name) is written to the
message store and to dead-letter records *sealed*: the whole body encrypted with AES-256-GCM under
the current personal-data key, bound to its table and row (``hub_message.body:<id>``), behind a
``gashub:sealed:1:`` prefix. The SHA-256 kept beside it is the plain body's, so integrity checks
still hold. Reading it back (the trace, a replay) opens it with any key of the ring, and ops output
masks the personal fields as before.

With no key configured there is nothing to seal with: the personal fields are *redacted* (replaced
by ``"[redacted]"``) before the body is stored, behind a ``gashub:redacted:1:`` prefix, so no
personal data reaches the disk; such a dead letter cannot be replayed, and the replay says why.
Messages without personal fields (readings, alarms, valve commands) are stored as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from core.catalogue import Catalogue
from core.privacy import DecryptionError, FieldCipher

SEALED = b"gashub:sealed:1:"
REDACTED = b"gashub:redacted:1:"
REDACTED_VALUE = "[redacted]"


class SealedBodyError(Exception):
    """A stored body cannot be opened: no key for it, or it was stored redacted."""


@dataclass
class BodySealer:
    catalogue: Catalogue
    cipher: FieldCipher | None = None
    _personal: dict[tuple[str, int], frozenset[str]] = field(default_factory=dict, repr=False)

    def personal_fields(self, type_: str | None, version: int | None) -> frozenset[str]:
        """The personal fields of ``type_`` at ``version``; of every version when ``version`` is None."""
        if type_ is None:
            return frozenset()
        key = (type_, version or 0)
        found = self._personal.get(key)
        if found is None:
            if version is None:
                found = frozenset().union(*(self.catalogue[key].personal_fields for key in self.catalogue
                                            if key[0] == type_))
            else:
                found = self.catalogue[(type_, version)].personal_fields if (type_, version) in self.catalogue \
                    else frozenset()
            self._personal[key] = found
        return found

    def seal(self, table: str, row_id: str, body: bytes, type_: str | None, version: int | None) -> bytes:
        """What to store for ``body``: itself, sealed, or redacted (see the module notes)."""
        fields = self.personal_fields(type_, version)
        if not fields:
            return body
        if self.cipher is not None:
            token = self.cipher.encrypt(body.decode("utf-8", "surrogateescape"), context=_context(table, row_id))
            return SEALED + token.encode("ascii")
        return REDACTED + _redact(body, fields)

    def seal_for_resend(self, table: str, row_id: str, body: bytes, type_: str | None, version: int | None) -> bytes:
        """Like ``seal``, but a body that must be sent again (the inbox's, until the broker confirmed it)
        stays whole when there is no key; ``redact`` it once it has gone."""
        if self.cipher is None:
            return body
        return self.seal(table, row_id, body, type_, version)

    def redact(self, stored: bytes, type_: str | None, version: int | None) -> bytes | None:
        """The redacted form of a plain ``stored`` body with personal data; None when nothing to do."""
        fields = self.personal_fields(type_, version)
        if not fields or stored.startswith((SEALED, REDACTED)):
            return None
        return REDACTED + _redact(stored, fields)

    def open(self, table: str, row_id: str, stored: bytes) -> bytes:
        """The body as it was received; ``SealedBodyError`` when that cannot be had."""
        if stored.startswith(SEALED):
            if self.cipher is None:
                raise SealedBodyError("the body is sealed and no personal-data key is configured "
                                      "(GASHUB_CORE__KEYS__<id>)")
            try:
                plain = self.cipher.decrypt(stored[len(SEALED):].decode("ascii"), context=_context(table, row_id))
            except DecryptionError as exc:
                raise SealedBodyError(f"the sealed body does not open: {exc}") from None
            return plain.encode("utf-8", "surrogateescape")
        if stored.startswith(REDACTED):
            raise SealedBodyError("the body was stored with its personal fields redacted (no personal-data key "
                                  "was configured then); the original is not kept")
        return stored

    def readable(self, table: str, row_id: str, stored: bytes) -> bytes:
        """For people (ops output, masked afterwards): the opened body, or the redacted one."""
        if stored.startswith(REDACTED):
            return stored[len(REDACTED):]
        try:
            return self.open(table, row_id, stored)
        except SealedBodyError as exc:
            return orjson.dumps({"sealed": str(exc)})


def _context(table: str, row_id: str) -> str:
    return f"{table}.body:{row_id}"


def _redact(body: bytes, fields: frozenset[str]) -> bytes:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return orjson.dumps({"redacted": "the body was not JSON"})
    data = doc.get("data") if isinstance(doc, dict) else None
    if isinstance(data, dict):
        for name in fields:
            if data.get(name) is not None:
                data[name] = REDACTED_VALUE
    return orjson.dumps(doc)
