"""What the core receives from the hub and what it emits, without knowing about envelopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue import CanonicalModel, Lane


@dataclass(frozen=True, slots=True)
class Incoming:
    """A validated message handed to a core handler."""

    message_id: str
    type: str
    subject: str | None
    correlation_id: str
    data: CanonicalModel


@dataclass(frozen=True, slots=True)
class Event:
    """An event the core emits; written to the outbox in the handler's transaction."""

    type: str
    data: Mapping[str, Any] | CanonicalModel
    subject: str | None = None
    lane: Lane | None = None
    version: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    """The flow the event joins when it has no incoming cause (a billing run's bill joins the flow of
    the reading that closed it); otherwise the cause's flow, or a new one."""


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
