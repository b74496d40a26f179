"""UnionPay back-end notifications through the whole hub, on both stacks (embedded; RabbitMQ +
PostgreSQL): signed by the simulator's certificate chain, POSTed as a form over TCP to
``/partners/unionpay/notify``, credited by the core once per ``queryId``; everything refused is audited
and credits nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.payments.unionpay.client import UnionPayError
from connectors.payments.unionpay.simulator import UnionPaySimulator
from tests.flow.conftest import Stack, eventually
from tests.flow.payflow import payment_hub
from tests.flow.payment_checks import (
    credited,
    credited_count_is,
    kept,
    payments_stored,
    post_in_two_pieces,
    postpaid_account,
    rejections,
)
from tests.flow.tax_stand_in import PAYMENT_ROUTES
from tests.unionpay_peer import connector_settings, forger, simulator

PATH = "/partners/unionpay/notify"


@pytest.fixture
async def unionpay() -> AsyncIterator[UnionPaySimulator]:
    """UnionPay, serving transaction queries too (the connector's ``base_url`` points at it)."""
    sim = simulator()
    await sim.start()
    yield sim
    await sim.aclose()


async def _hub(stack: Stack, routes: str = PAYMENT_ROUTES) -> Any:
    return await payment_hub(stack, "unionpay", connector_settings(), routes=routes)


def _order() -> str:
    return f"GAS{time.monotonic_ns()}"[:32]


async def _post(url: str, body: bytes) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.read()


async def test_a_notification_is_credited_once_and_its_resend_answered_ok(stack: Stack,
                                                                        unionpay: UnionPaySimulator) -> None:
    hub = await _hub(stack)
    account_id = await postpaid_account(hub, "up")
    fields = unionpay.pay(_order(), 20050, account_id)
    url = stack.base_url(hub) + PATH
    assert await unionpay.send(url, fields) == (200, b"ok")
    await eventually(lambda: credited_count_is(hub, 1), what="the payment credited")
    assert await unionpay.send(url, fields) == (200, b"ok")  # UnionPay's resend (it sends up to five)
    await asyncio.sleep(0.3)
    assert await credited(hub) == [("unionpay", fields["queryId"], Decimal("200.50"))]
    assert await kept(hub, account_id) == Decimal("200.50")
    (stored,) = await payments_stored(hub)
    assert b"6221****0000" not in stored  # the card number is sealed at rest
    assert hub.connectors["unionpay"].health().extra["accepted"] == 2


async def test_five_concurrent_identical_notifications_credit_once(stack: Stack, unionpay: UnionPaySimulator) -> None:
    hub = await _hub(stack)
    account_id = await postpaid_account(hub, "up")
    fields = unionpay.pay(_order(), 16800, account_id)
    url = stack.base_url(hub) + PATH
    answers = await asyncio.gather(*(unionpay.send(url, fields) for _ in range(5)))
    assert answers == [(200, b"ok")] * 5
    await eventually(lambda: credited_count_is(hub, 1), what="the payment credited")
    await asyncio.sleep(0.5)
    assert await credited(hub) == [("unionpay", fields["queryId"], Decimal("168.00"))]
    assert await kept(hub, account_id) == Decimal("168.00")
    assert len(await payments_stored(hub)) == 1


CASES = {
    # case: (status, words of the audited reason)
    "tampered amount": (401, "does not verify"),
    "wrong key": (401, "does not verify"),
    "forged chain": (401, "not issued by"),
    "replayed old": (401, "replayed"),
    "another merchant": (400, "not ours"),
    "not a form": (400, "not a UTF-8 form"),
    "payment failed": (200, "is not a success"),
}


def _notification(sim: UnionPaySimulator, case: str, account_id: str) -> dict[str, str]:
    """A notification of 1.00 yuan, made wrong as ``case`` says."""
    if case == "replayed old":
        return sim.pay(_order(), 100, account_id, txn_time=datetime.now(UTC) - timedelta(days=4))
    if case == "payment failed":
        return sim.pay(_order(), 100, account_id, resp_code="05")
    fields = sim.pay(_order(), 100, account_id)
    if case == "another merchant":
        return sim.signed({**fields, "merId": "777290058119999"})
    if case == "tampered amount":
        return {**fields, "txnAmt": "1000000"}
    if case == "wrong key":
        return sim.signed(fields, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    if case == "forged chain":
        return forger().signed(fields)
    return fields


@pytest.mark.parametrize("case", list(CASES))
async def test_refused_notifications_are_audited_and_credit_nothing(stack: Stack, unionpay: UnionPaySimulator,
                                                                   case: str) -> None:
    hub = await _hub(stack)
    account_id = await postpaid_account(hub, "up")
    url = stack.base_url(hub) + PATH
    if case == "not a form":
        status, answer = await _post(url, b"\xff\xfe not a form")
    else:
        status, answer = await unionpay.send(url, _notification(unionpay, case, account_id))
    expected_status, words = CASES[case]
    assert status == expected_status
    assert answer == b"ok" if status == 200 else words in answer.decode()
    await asyncio.sleep(0.3)
    assert await credited(hub) == []
    assert await payments_stored(hub) == []
    (refusal,) = await rejections(hub)
    assert refusal[0] == "in:unionpay"
    assert words in refusal[1]
    assert "sha256" in refusal[1]
    assert hub.connectors["unionpay"].health().extra["not_paid"] == (1 if case == "payment failed" else 0)


async def test_a_big_body_is_refused_before_anything_else(stack: Stack) -> None:
    hub = await _hub(stack)
    status, answer = await _post(stack.base_url(hub) + PATH, b"a=" + b"x" * 20_000)
    assert (status, answer) == (413, b"body over 16384 bytes")
    assert len(await rejections(hub)) == 1


async def test_unionpay_hears_ok_only_after_the_broker_confirmed(stack: Stack, unionpay: UnionPaySimulator) -> None:
    """With no route bound for payments the broker takes nothing: 503, nothing credited. UnionPay's
    resend, once the route exists, is credited."""
    hub = await _hub(stack, routes=PAYMENT_ROUTES.split("[[route]]", 2)[0] + "[[route]]" +
                     PAYMENT_ROUTES.split("[[route]]", 2)[2])
    account_id = await postpaid_account(hub, "up")
    fields = unionpay.pay(_order(), 5000, account_id)
    status, answer = await unionpay.send(stack.base_url(hub) + PATH, fields)
    assert (status, answer) == (503, b"not accepted yet, send again later")
    await hub.stop()
    hub = await _hub(stack)
    assert await unionpay.send(stack.base_url(hub) + PATH, fields) == (200, b"ok")
    await eventually(lambda: credited_count_is(hub, 1), what="the resend credited")
    assert await credited(hub) == [("unionpay", fields["queryId"], Decimal("50.00"))]


async def test_an_order_whose_notification_never_came_is_found_by_a_query_and_credited_once(
        stack: Stack, unionpay: UnionPaySimulator) -> None:
    hub = await _hub(stack)
    account_id = await postpaid_account(hub, "up")
    fields = unionpay.pay(_order(), 9900, account_id)  # paid at UnionPay; its notification is lost
    connector = hub.connectors["unionpay"]
    first = await connector.reconcile(fields["orderId"], fields["txnTime"])
    assert first is not None
    assert not first.duplicate
    await eventually(lambda: credited_count_is(hub, 1), what="the queried payment credited")
    assert await unionpay.send(stack.base_url(hub) + PATH, fields) == (200, b"ok")  # the notification, late
    again = await connector.reconcile(fields["orderId"], fields["txnTime"])
    assert again is not None
    assert again.duplicate
    failed = unionpay.pay(_order(), 100, account_id, resp_code="05")
    assert await connector.reconcile(failed["orderId"], failed["txnTime"]) is None
    with pytest.raises(UnionPayError) as err:
        await connector.reconcile("GASNOSUCHORDER01", fields["txnTime"])
    assert err.value.code == "34"
    await asyncio.sleep(0.3)
    assert await credited(hub) == [("unionpay", fields["queryId"], Decimal("99.00"))]
    assert await kept(hub, account_id) == Decimal("99.00")
    assert len(await payments_stored(hub)) == 1
    assert all(ok for _, ok in unionpay.queries)


async def test_a_notification_that_arrives_in_pieces_is_read_whole(stack: Stack, unionpay: UnionPaySimulator) -> None:
    hub = await _hub(stack)
    account_id = await postpaid_account(hub, "up")
    fields = unionpay.pay(_order(), 1230, account_id)
    body = unionpay.form(fields)
    assert len(body) > 2000  # the certificate travels in every notification
    answer = await post_in_two_pieces(stack.base_url(hub), PATH, body, "application/x-www-form-urlencoded")
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b"\r\n\r\nok")
    await eventually(lambda: credited_count_is(hub, 1), what="the payment credited")
