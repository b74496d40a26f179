"""Transports: RabbitMQ through pika, and in-memory for the embedded default."""

from hub.transport.base import (
    DEFAULT_EXCHANGE,
    BatchHandler,
    ConsumerHandle,
    Delivery,
    OutboundMessage,
    QueueInfo,
    QueueSpec,
    Topology,
    Transport,
)

__all__ = [
    "DEFAULT_EXCHANGE",
    "BatchHandler",
    "ConsumerHandle",
    "Delivery",
    "OutboundMessage",
    "QueueInfo",
    "QueueSpec",
    "Topology",
    "Transport",
]
