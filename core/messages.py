"""What the core receives from the hub and what it emits, without knowing about envelopes."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue import CanonicalModel, Lane


class Incoming(NamedTuple):
    """A validated message handed to a core handler (a tuple: one per message on the hot path)."""

    message_id: str
    type: str
    subject: str | None
    correlation_id: str
    data: CanonicalModel


class Cause(Protocol):
    """What an event is caused by: it joins the cause's business flow (``correlation_id``) and names
    it as its ``causation_id``. An :class:`Incoming` message is one."""

    @property
    def message_id(self) -> str: ...

    @property
    def correlation_id(self) -> str: ...

    @property
    def subject(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Caused:
    """A cause that is not a message handed to a handler: an event already written to the outbox
    (``message_id``) in the flow ``correlation_id``, e.g. the close command a reopen answers."""

    message_id: str
    correlation_id: str
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """An event the core emits; written to the outbox in the handler's transaction."""

    type: str
    data: Mapping[str, Any] | CanonicalModel
    subject: str | None = None
    lane: Lane | None = None
    version: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)


ID_LIMIT = 64


def derived_id(prefix: str, message_id: str) -> str:
    """``<prefix>-<message id>``, or a digest of the message id when that would be longer than 64: the
    id of something a message causes at most once (an alarm, a notification, a valve command)."""
    key = f"{prefix}-{message_id}"
    if len(key) <= ID_LIMIT:
        return key
    return f"{prefix}-{hashlib.sha256(message_id.encode()).hexdigest()[:40]}"


HandlerFn = Callable[[AsyncConnection, Sequence[Incoming]], Awaitable[Sequence[Mapping[str, Any] | None]]]
"""Applies a batch in the caller's transaction; returns, per item, reply data or ``None``."""


@dataclass(frozen=True, slots=True)
class CoreHandler:
    """A core use case that routes can target as ``core:<name>``."""

    name: str
    accepts: str
    fn: HandlerFn
    summary: str
    emits: tuple[str, ...] = ()
    """Message types the handler writes to the outbox: routes must take each of them."""
    personal_data: bool = False
    """The handler encrypts or decrypts personal data: a route to it needs the core's keys."""
