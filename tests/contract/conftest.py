"""Fixtures of the transport contract suite: each transport, unique names, and a broker-side admin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from broker_admin import BrokerAdmin, Names

from hub.transport.base import Transport
from hub.transport.memory import MemoryTransport
from hub.transport.pika import PikaTransport


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.fixture
def broker(amqp_url: str) -> BrokerAdmin:
    return BrokerAdmin(amqp_url)


async def _pika_transport(request: pytest.FixtureRequest, names: Names) -> AsyncIterator[PikaTransport]:
    url: str = request.getfixturevalue("amqp_url")
    transport = PikaTransport(url, client_name=names.client_name, reconnect_backoff=(0.1, 0.2, 0.5))
    await transport.connect()
    try:
        yield transport
    finally:
        await transport.aclose()
        await BrokerAdmin(url).delete(names.queues, names.exchange)


@pytest.fixture(params=["memory", "rabbitmq"])
async def transport(request: pytest.FixtureRequest, names: Names) -> AsyncIterator[Transport]:
    """Each transport in turn; the contract suite runs against both."""
    if request.param == "memory":
        memory = MemoryTransport()
        await memory.connect()
        yield memory
        await memory.aclose()
        return
    async for pika_transport in _pika_transport(request, names):
        yield pika_transport


@pytest.fixture
async def rabbitmq(request: pytest.FixtureRequest, names: Names) -> AsyncIterator[PikaTransport]:
    """``PikaTransport`` alone, for what only a real broker does (tests marked ``broker``)."""
    async for pika_transport in _pika_transport(request, names):
        yield pika_transport
