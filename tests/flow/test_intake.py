"""Inbound messages written and published in groups (``hub/connectors/inbound.py``), on both stacks:
requests handed over in the same turn of the loop share a group, and the group keeps each request's
own answer: copies of one partner key are one message, one nonce is claimed once, and a message the
broker refuses fails only its own request."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from hub.envelope import Envelope
from hub.errors import HubError
from hub.store.tables import hop, inbox, message
from tests.flow.conftest import Stack, equals, eventually
from tests.flow.payflow import count


def _delivered(n: int) -> Envelope:
    return Envelope(type="notification.delivered", source="test", data={
        "notification_id": f"intake-{n}", "status": "accepted", "at": "2026-11-27T09:30:00+08:00"})


def _unrouted() -> Envelope:  # the stack's routes take no payment.received
    return Envelope(type="payment.received", source="test", subject="A1", data={
        "channel": "wechat", "transaction_id": "4200000000000000000000000001", "out_trade_no": "A1-X1",
        "account_id": "A1", "amount": "1.00", "paid_at": "2026-11-27T09:30:00+08:00"})


async def test_one_group_answers_each_request_for_itself(stack: Stack) -> None:
    hub = await stack.start_hub()
    a, b = hub.context.for_connector("partner-a"), hub.context.for_connector("partner-b")
    copy_one, copy_two = _delivered(1), _delivered(1)
    results: list[Any] = await asyncio.gather(
        a.receive(copy_one, partner_key="K1"), a.receive(copy_two, partner_key="K1"),
        b.receive(_delivered(2), partner_key="K1"),  # the same key from another partner is another message
        a.receive(_unrouted(), partner_key="K2"), b.receive(_delivered(3)),
        return_exceptions=True)
    first, again, other, refused, unkeyed = results
    assert (first.message_id, first.duplicate) == (copy_one.id, False)
    assert (again.message_id, again.duplicate) == (copy_one.id, True)  # one message for the two copies
    assert not other.duplicate
    assert not unkeyed.duplicate
    assert isinstance(refused, HubError)  # the broker took no payment.received: only this one fails
    await eventually(lambda: equals(count(hub, hop, hop.c.route == "sms-delivered", hop.c.outcome == "delivered"), 3),
                     what="the three routed messages delivered")

    async def marks() -> dict[tuple[str, str], bool]:
        async with hub.db.read() as conn:
            return {(r.source, r.partner_key): r.published_us is not None for r in await conn.execute(select(inbox))}

    expected = {("partner-a", "K1"): True, ("partner-b", "K1"): True, ("partner-a", "K2"): False}
    await eventually(lambda: equals(marks(), expected), what="the confirmed entries marked, the refused one not")
    assert await count(hub, message, message.c.type == "payment.received") == 1  # stored, to publish on a resend
    again_later = await a.receive(_delivered(1), partner_key="K1")
    assert (again_later.message_id, again_later.duplicate) == (copy_one.id, True)


@pytest.mark.parametrize("copies", [2, 5])
async def test_one_nonce_claimed_in_one_group_wins_once(stack: Stack, copies: int) -> None:
    hub = await stack.start_hub()
    ctx = hub.context.for_connector("partner-a")
    won = await asyncio.gather(*(ctx.claim_once("nonce:N1") for _ in range(copies)), ctx.claim_once("nonce:N2"))
    assert sorted(won[:copies]) == [False] * (copies - 1) + [True]
    assert won[-1] is True
    assert await ctx.claim_once("nonce:N1") is False
