"""What a hub process does (``gashub run``, ``gashub worker``, ``gashub api``)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    RUN = "run"
    """Everything: HTTP (ops, partners, API), route consumers, outbox relay, scheduler, connectors."""
    WORKER = "worker"
    """Route consumers only, to scale out beside a RabbitMQ cluster and PostgreSQL."""
    API = "api"
    """The normalised REST API (``/api/v1``) with ``/health``, ``/ready`` and ``/metrics`` only: no broker, no
    consumers. Several such processes can share one port (``gashub api --processes N``)."""
