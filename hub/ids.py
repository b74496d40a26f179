"""Sortable unique identifiers (ULID): time-ordered, so message ids sort by creation."""

from __future__ import annotations

from ulid import ULID


def new_id() -> str:
    return str(ULID())
