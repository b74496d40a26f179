"""The connector contract: what every partner connector implements.

A connector translates one partner system's protocol. Its lifecycle, driven by the hub::

    __init__(settings, context)   built by the registry from its validated settings model
    start()                       after the topology is declared, before route consumers start
    ... deliver() / run()         while the hub runs
    stop()                        on a graceful shutdown, before consumers are cancelled
    aclose()                      always, last; must not raise

Outbound connectors implement ``deliver``; inbound ones implement ``run`` and hand what partners
send to ``context.receive``, which answers only after the broker confirmed the message. Vendor
exceptions never leave a connector: they are translated into ``TransientError`` (retry later),
``PermanentError`` (dead letter) or ``ConnectorTimeout``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from hub.envelope import Envelope


class Capability(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    REQUEST_REPLY = "request-reply"
    HTTP_ENDPOINT = "http-endpoint"


class ConnectorSettings(BaseModel):
    """Base of every connector's settings model: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid")
    kind: str


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a partner answered. ``reply`` becomes the route's reply message, when it has one."""

    partner_ref: str | None = None
    reply: Mapping[str, Any] | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReceiveResult:
    """The outcome of handing an inbound message to the hub."""

    message_id: str
    duplicate: bool


class ConnectorContext(Protocol):
    """What the hub offers a connector. Built by the composition root."""

    name: str

    async def receive(self, envelope: Envelope, *, partner_key: str | None = None) -> ReceiveResult:
        """Store, deduplicate by ``partner_key`` and publish with confirm. Returns after the broker
        confirmed (the partner may be told "OK" then) or raises a ``HubError``."""

    async def reject(self, reason: str, *, body: bytes, source: str) -> None:
        """Audit input refused at the door (bad signature, malformed frame)."""

    async def claim_once(self, key: str) -> bool:
        """True the first time this connector claims ``key``, in any process; False ever after.
        For one-time values a partner must never send twice, such as a signed request's nonce."""

    def add_routes(self, routes: Sequence[web.RouteDef]) -> None:
        """Mount partner-facing HTTP endpoints on the hub's web server (before ``start``)."""


S = TypeVar("S", bound=ConnectorSettings)


class Connector(abc.ABC, Generic[S]):
    """Base of every connector, generic in its settings model."""

    kind: ClassVar[str]
    settings_model: ClassVar[type[ConnectorSettings]]
    capabilities: ClassVar[frozenset[Capability]]
    actions: ClassVar[Mapping[str, str]] = {}
    """Outbound actions routes may name as ``<connector>:<action>``, each with the message type it takes."""
    delivers_where_started: ClassVar[bool] = False
    """True when ``deliver`` needs what ``start``/``run`` hold — partners' own connections to this
    process, like the DTUs dialled in to a TCP server. Only the process that starts connectors
    (``gashub run``) then consumes the routes to it; a ``gashub worker`` leaves them alone, since every
    message it took would wait for its retry."""

    def __init__(self, settings: S, context: ConnectorContext) -> None:
        self.settings = settings
        self.context = context

    async def start(self) -> None:
        """Called once, after the topology is declared and before route consumers start."""

    async def stop(self) -> None:
        """Called on a graceful shutdown: finish what is in hand, accept nothing new."""

    async def aclose(self) -> None:
        """Release every resource. Called last, always; must not raise."""

    def health(self) -> Health:
        return Health(ok=True)


class OutboundConnector(Connector[S]):
    @abc.abstractmethod
    async def deliver(self, envelope: Envelope, action: str) -> Receipt:
        """Send one message to the partner. Called concurrently; idempotent per ``envelope.id``."""


class InboundConnector(Connector[S]):
    @abc.abstractmethod
    async def run(self) -> None:
        """Receive from the partner until cancelled (pollers, TCP servers). HTTP-only inbound
        connectors mount their endpoints in ``__init__`` and return at once."""

