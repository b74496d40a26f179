"""What the core receives from the hub and what it emits, without knowing about envelopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue import CanonicalModel, Lane
from core.errors import CoreError

if TYPE_CHECKING:
    from core.accounts.models import Privacy


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


HandlerFn = Callable[[AsyncConnection, Sequence[Incoming]], Awaitable[Sequence[Mapping[str, Any] | None]]]
"""Applies a batch in the caller's transaction; returns, per item, reply data or ``None``."""


@dataclass(frozen=True, slots=True)
class CoreServices:
    """What some handlers need besides their connection, given by whoever runs the core (the hub
    builds it from its settings at start-up and binds it with ``CoreHandler.bind``)."""

    privacy: Privacy | None = None
    """The field cipher and blind index of personal data; ``None`` when no key is configured."""

    def require_privacy(self, what: str) -> Privacy:
        if self.privacy is None:
            raise ServicesMissing(
                f"{what} needs the personal-data key: set GASHUB_CORE__KEYS__<id> (and GASHUB_CORE__CURRENT_KEY "
                "when there are several), restart, then replay this dead letter"
            )
        return self.privacy


class ServicesMissing(CoreError):
    """A handler ran without a service it needs (a configuration problem, not the message's)."""


ServicedFn = Callable[
    [AsyncConnection, Sequence[Incoming], CoreServices], Awaitable[Sequence[Mapping[str, Any] | None]]
]
"""A handler that also takes the core's services."""


@dataclass(frozen=True, slots=True)
class CoreHandler:
    """A core use case that routes can target as ``core:<name>``."""

    name: str
    accepts: str
    fn: HandlerFn
    summary: str
    emits: tuple[str, ...] = ()
    """Message types the handler writes to the outbox: routes must take each of them."""
    serviced: ServicedFn | None = None
    """Set for handlers that need ``CoreServices``; ``fn`` then refuses to run until ``bind``."""

    @classmethod
    def with_services(cls, name: str, accepts: str, fn: ServicedFn, summary: str,
                      emits: tuple[str, ...] = ()) -> CoreHandler:
        async def unbound(conn: AsyncConnection, items: Sequence[Incoming]) -> Sequence[Mapping[str, Any] | None]:
            return await fn(conn, items, CoreServices())

        return cls(name, accepts, unbound, summary, emits, serviced=fn)

    def bind(self, services: CoreServices) -> CoreHandler:
        """This handler with ``services`` given to it (itself when it needs none)."""
        serviced = self.serviced
        if serviced is None:
            return self

        async def bound(conn: AsyncConnection, items: Sequence[Incoming]) -> Sequence[Mapping[str, Any] | None]:
            return await serviced(conn, items, services)

        return replace(self, fn=bound)


def bind_handlers(handlers: Mapping[str, CoreHandler], services: CoreServices) -> dict[str, CoreHandler]:
    return {name: handler.bind(services) for name, handler in handlers.items()}
