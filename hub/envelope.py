"""The envelope every message travels in.

Compatible in spirit with CloudEvents and the IEC 61968-100 header: ``id`` is the message id,
``correlation_id`` ties a whole business flow together, ``causation_id`` names the message that
caused this one. Serialised as JSON; AMQP properties mirror id, correlation id, type and time so
that other tools can read them without parsing the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from core.catalogue import Lane
from hub.errors import MalformedMessage
from hub.ids import new_id

MessageTypeName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_-]*)+$", max_length=100)]
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.:-]+$")]


class Envelope(BaseModel):
    """One message: routing metadata plus ``data``, validated against the catalogue by the hub."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier = Field(default_factory=new_id)
    type: MessageTypeName
    version: int = Field(default=1, ge=1, le=1000)
    source: Identifier
    subject: str | None = Field(default=None, max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")
    time: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    correlation_id: str = Field(default="", max_length=64, pattern=r"^[0-9A-Za-z_.:-]*$")
    """Filled with ``id`` when empty: a message with no flow starts its own."""
    causation_id: Identifier | None = None
    priority: Lane = Lane.NORMAL
    attempt: int = Field(default=1, ge=1, le=1000)
    data: dict[str, Any]

    def model_post_init(self, context: Any, /) -> None:
        if not self.correlation_id:
            object.__setattr__(self, "correlation_id", self.id)

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, body: bytes | str) -> Envelope:
        """Parse and validate; any defect becomes ``MalformedMessage`` with a readable reason."""
        try:  # the common case in one pass (pydantic parses the JSON itself); defects take the slow path
            return cls.model_validate_json(body)
        except ValidationError:
            pass
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessage(f"body is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise MalformedMessage(f"body is JSON {type(raw).__name__}, expected an object (the envelope)")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise MalformedMessage(f"not a valid envelope: {describe_validation_error(exc)}") from None

    def caused(self, type_: str, data: Mapping[str, Any], *, source: str, **extra: Any) -> Envelope:
        """A new message caused by this one: same flow (correlation id), this one as its cause."""
        return Envelope(
            type=type_,
            source=source,
            subject=extra.pop("subject", self.subject),
            correlation_id=self.correlation_id,
            causation_id=self.id,
            priority=extra.pop("priority", self.priority),
            data=dict(data),
            **extra,
        )

    def next_attempt(self) -> Envelope:
        return self.model_copy(update={"attempt": self.attempt + 1})


def describe_validation_error(exc: ValidationError, limit: int = 5) -> str:
    """``field.path: message`` for the first few problems, in one line."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
