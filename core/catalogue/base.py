"""The catalogue's building blocks: entries, lookup and the personal-data marker."""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Lane(StrEnum):
    """Which queues carry a message: safety traffic never waits behind billing traffic."""

    SAFETY = "safety"
    NORMAL = "normal"


class CanonicalModel(BaseModel):
    """Base of every ``data`` model: strict about unknown fields, immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def Personal(**kwargs: Any) -> Any:
    """A field holding personal information (GB/T 35273): masked in logs and in ops output."""
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra["x-personal"] = True
    return Field(json_schema_extra=extra, **kwargs)


class UnknownMessageType(LookupError):
    """The catalogue has no entry for this type and version."""


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    type: str
    version: int
    model: builtins.type[CanonicalModel]
    lane: Lane
    summary: str

    @property
    def personal_fields(self) -> frozenset[str]:
        return frozenset(
            name
            for name, field in self.model.model_fields.items()
            if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("x-personal")
        )


class Catalogue(Mapping[tuple[str, int], CatalogueEntry]):
    """An immutable lookup of entries by ``(type, version)``."""

    def __init__(self, entries: list[CatalogueEntry]) -> None:
        self._entries: dict[tuple[str, int], CatalogueEntry] = {}
        for entry in entries:
            key = (entry.type, entry.version)
            if key in self._entries:
                raise ValueError(f"catalogue entry {entry.type} v{entry.version} is defined twice")
            self._entries[key] = entry
        self._latest_by_type: dict[str, CatalogueEntry] = {}
        for (name, _version), entry in sorted(self._entries.items()):
            self._latest_by_type[name] = entry

    def __getitem__(self, key: tuple[str, int]) -> CatalogueEntry:
        try:
            return self._entries[key]
        except KeyError:
            raise UnknownMessageType(f"no catalogue entry for {key[0]} v{key[1]}") from None

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def types(self) -> list[str]:
        return sorted(self._latest_by_type)

    def latest(self, type_: str) -> CatalogueEntry:
        try:
            return self._latest_by_type[type_]
        except KeyError:
            raise UnknownMessageType(f"no catalogue entry for {type_}") from None

    def validate(self, type_: str, version: int, data: Mapping[str, Any]) -> CanonicalModel:
        """Validate ``data`` against the entry; raises ``UnknownMessageType`` or pydantic's error."""
        return self[(type_, version)].model.model_validate(data)
