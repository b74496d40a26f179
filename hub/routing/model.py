"""Routes: which message goes where, through which mapping, with which retry policy and lane."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from core.catalogue import Lane

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def parse_duration_ms(value: Any) -> int:
    """``250ms``, ``5s``, ``2m``, ``1h`` or a number of milliseconds."""
    if isinstance(value, bool):
        raise ValueError("a duration, like '5s', not a boolean")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return int(float(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"{value!r} is not a duration: write e.g. '500ms', '5s', '2m' or '1h'")


DurationMs = Annotated[int, BeforeValidator(parse_duration_ms), Field(ge=1, le=86_400_000)]


class RetryPolicy(BaseModel):
    """``max_attempts`` counts the first try; ``backoff[n-1]`` is the wait before attempt ``n+1``
    (the last entry repeats)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=5, ge=1, le=100)
    backoff: tuple[DurationMs, ...] = (1000, 5000, 30000, 120000)

    def delay_before(self, next_attempt: int) -> int:
        if not self.backoff:
            return 1000
        return self.backoff[min(next_attempt - 2, len(self.backoff) - 1)]

    def delays(self) -> list[int]:
        return sorted({self.delay_before(n) for n in range(2, self.max_attempts + 1)})


class RouteSpec(BaseModel):
    """One ``[[route]]`` table of a ``routes/*.toml`` file, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    from_: str = Field(alias="from", min_length=1, max_length=100)
    where: str | None = None
    map: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_.-]*(@\d+)?$")
    to: str = Field(pattern=r"^[a-z][a-z0-9_.-]*:[a-z][a-z0-9_]*$")
    reply: str | None = None
    retry: RetryPolicy = RetryPolicy()
    lane: Lane = Lane.NORMAL
    dedup: str | None = None
    batch: int = Field(default=500, ge=1, le=5000)
    description: str = ""

    @field_validator("from_")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9_#*-]+(\.[a-z0-9_#*-]+)*", v):
            raise ValueError("a message type like 'meter.reading' or a topic pattern like 'alarm.*'")
        return v

    @property
    def target_kind(self) -> Literal["core", "connector"]:
        return "core" if self.to.startswith("core:") else "connector"

    @property
    def target_name(self) -> str:
        return self.to.split(":", 1)[0] if self.target_kind == "connector" else self.to.split(":", 1)[1]

    @property
    def target_action(self) -> str:
        return self.to.split(":", 1)[1]

    @property
    def mapping_name(self) -> str | None:
        return self.map.split("@", 1)[0] if self.map else None

    @property
    def mapping_version(self) -> int | None:
        if self.map and "@" in self.map:
            return int(self.map.split("@", 1)[1])
        return None


@dataclass(frozen=True, slots=True)
class QueueNames:
    main: str
    dead: str
    delay_prefix: str

    @classmethod
    def for_route(cls, prefix: str, name: str) -> QueueNames:
        base = f"{prefix}.route.{name}"
        return cls(main=base, dead=f"{base}.dlq", delay_prefix=f"{base}.delay.")

    def delay(self, ms: int) -> str:
        return f"{self.delay_prefix}{ms}"
