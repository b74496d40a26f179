"""The hub's exception tree.

::

    HubError
    ├── ConfigError                      found at start-up or by ``gashub check``
    ├── MessageError                     permanent for that message (dead-lettered at once)
    │   ├── MalformedMessage             not JSON, not an envelope, too large
    │   ├── InvalidMessage               ``data`` fails the catalogue's model
    │   └── UnmappableMessage            a mapping cannot produce its target
    ├── ConnectorError
    │   ├── TransientError               retried through delay queues
    │   │   ├── ConnectorTimeout         also a ``TimeoutError``
    │   │   └── CircuitOpen              the partner's breaker is open
    │   └── PermanentError               dead-lettered at once
    └── TransportError                   the broker or its connection
        ├── ConnectionLost               retriable: publish again after reconnecting
        ├── PublishNacked                the broker refused a message
        └── Unroutable                   no queue is bound for the routing key

Only ``retriable`` decides between a retry and a dead letter; no code matches on messages.
Vendor exceptions are translated into these where they enter the hub.
"""

from __future__ import annotations


class HubError(Exception):
    """Root of every error the hub raises on purpose."""

    retriable: bool = False


class ConfigError(HubError):
    """Settings, routes or mappings are wrong. ``where`` names the file, route and field."""

    def __init__(self, message: str, *, where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.detail = message


class MessageError(HubError):
    """The message itself is wrong: retrying it cannot help."""


class MalformedMessage(MessageError):
    """Not JSON, not a valid envelope, or larger than the limit."""


class InvalidMessage(MessageError):
    """The envelope is sound but ``data`` fails the catalogue's model for its type."""


class UnmappableMessage(MessageError):
    """A mapping cannot build its output from this message."""


class ConnectorError(HubError):
    """A partner call failed."""


class TransientError(ConnectorError):
    """Worth trying again later (timeouts, 5xx, the partner being down)."""

    retriable = True


class ConnectorTimeout(TransientError, TimeoutError):
    """The partner did not answer in time."""


class CircuitOpen(TransientError):
    """The connector's circuit breaker is open: the partner is considered down."""


class PermanentError(ConnectorError):
    """The partner refused the request for good (4xx, business rejection)."""


class TransportError(HubError):
    """The message broker or the connection to it."""


class ConnectionLost(TransportError):
    """The connection dropped before the broker confirmed; publish again after reconnecting."""

    retriable = True


class PublishNacked(TransportError):
    """The broker answered ``basic.nack``: it did not take responsibility for the message."""

    retriable = True


class Unroutable(TransportError):
    """The broker returned a ``mandatory`` message: no queue is bound for its routing key."""
