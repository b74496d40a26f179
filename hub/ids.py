"""Sortable unique identifiers (ULID): time-ordered, so message ids sort by creation."""

from __future__ import annotations

import hashlib

from ulid import ULID


def new_id() -> str:
    return str(ULID())


def derived_id(parent: str, salt: str) -> str:
    """A ULID fixed by ``(parent, salt)``: the parent's timestamp, a hash for the rest. Publishing
    the same consequence twice yields the same id, which consumers deduplicate."""
    try:
        stamp = ULID.from_str(parent).bytes[:6]
    except ValueError:
        stamp = hashlib.sha256(parent.encode()).digest()[:6]
    return str(ULID.from_bytes(stamp + hashlib.sha256(f"{parent}\x1f{salt}".encode()).digest()[:10]))
