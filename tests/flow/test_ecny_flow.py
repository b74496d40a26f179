"""Digital RMB through the bank adapter and the whole hub, on both stacks (embedded; RabbitMQ +
PostgreSQL): an order created at the bank simulator, paid, notified with the bank's signature
(``sm2-sm3`` or ``rsa-sha256``) over TCP to ``/partners/ecny/notify``, credited by the core once per
``txnNo``; a query of the same order publishes nothing new; everything refused is audited and credits
nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import orjson
import pytest

from connectors.payments.ecny.signing import SignType, bank_headers, signer
from connectors.payments.ecny.simulator import EcnyBankSimulator
from tests.ecny_peer import MERCHANT_NO, connector_settings, merchant_keys, stranger_keys
from tests.flow.conftest import Stack, eventually
from tests.flow.payflow import payment_hub
from tests.flow.payment_checks import credited, credited_count_is, kept, payments_stored, postpaid_account, rejections

PATH = "/partners/ecny/notify"


@pytest.fixture
async def bank_sm2() -> AsyncIterator[EcnyBankSimulator]:
    async with _bank(SignType.SM2_SM3) as sim:
        yield sim


@asynccontextmanager
async def _bank(scheme: SignType) -> AsyncIterator[EcnyBankSimulator]:
    sim = EcnyBankSimulator(merchant_no=MERCHANT_NO, sign_type=scheme, merchant_public_key=merchant_keys(scheme)[1])
    await sim.start()
    try:
        yield sim
    finally:
        await sim.aclose()


async def _hub(stack: Stack, bank: EcnyBankSimulator) -> Any:
    return await payment_hub(stack, "ecny", connector_settings(bank.sign_type, bank.bank_public_key, bank.url))


async def _paid_order(hub: Any, bank: EcnyBankSimulator, amount: str = "168.00") -> tuple[str, dict[str, Any]]:
    account_id = await postpaid_account(hub, "ec")
    created = await hub.connectors["ecny"].create_bill_order(account_id, f"B{time.monotonic_ns()}", Decimal(amount))
    return account_id, bank.pay(created["orderNo"])


@pytest.mark.parametrize("scheme", list(SignType))
async def test_an_order_paid_in_e_cny_is_credited_once(stack: Stack, scheme: SignType) -> None:
    async with _bank(scheme) as bank:
        hub = await _hub(stack, bank)
        account_id, order = await _paid_order(hub, bank)
        url = stack.base_url(hub) + PATH
        headers, body = bank.notification(order)
        status, answer = await bank.send(url, headers, body)
        assert (status, orjson.loads(answer)) == (200, {"code": "SUCCESS"})
        await eventually(lambda: credited_count_is(hub, 1), what="the payment credited")
        headers, body = bank.notification(order)  # the bank's resend, signed afresh
        assert (await bank.send(url, headers, body))[0] == 200
        reconciled = await hub.connectors["ecny"].reconcile(order["orderNo"])  # and a query of the same order
        assert reconciled is not None
        assert reconciled.duplicate
        await asyncio.sleep(0.3)
        assert await credited(hub) == [("ecny", order["txnNo"], Decimal("168.00"))]
        assert await kept(hub, account_id) == Decimal("168.00")
        (stored,) = await payments_stored(hub)
        assert order["walletId"].encode() not in stored  # the wallet id is sealed at rest
        assert all(ok for _, _, ok in bank.requests)


async def test_five_concurrent_notifications_credit_once(stack: Stack, bank_sm2: EcnyBankSimulator) -> None:
    """Five resends signed afresh all get SUCCESS; five copies of one request byte for byte: one passes,
    the other four reuse its nonce and are refused. One payment either way."""
    hub = await _hub(stack, bank_sm2)
    _, order = await _paid_order(hub, bank_sm2, "45.60")
    url = stack.base_url(hub) + PATH
    fresh = [bank_sm2.notification(order) for _ in range(5)]
    answers = await asyncio.gather(*(bank_sm2.send(url, h, b) for h, b in fresh))
    assert [status for status, _ in answers] == [200] * 5
    headers, body = bank_sm2.notification(order)
    copies = await asyncio.gather(*(bank_sm2.send(url, headers, body) for _ in range(5)))
    assert sorted(status for status, _ in copies) == [200, 401, 401, 401, 401]
    await eventually(lambda: credited_count_is(hub, 1), what="the payment credited")
    await asyncio.sleep(0.5)
    assert await credited(hub) == [("ecny", order["txnNo"], Decimal("45.60"))]
    assert len(await payments_stored(hub)) == 1
    assert [route for route, _ in await rejections(hub)] == ["in:ecny"] * 4


CASES = {
    "tampered body": (401, "does not verify"),
    "wrong key": (401, "does not verify"),
    "other sign type": (401, "not the configured sm2-sm3"),
    "stale timestamp": (401, "stale timestamp"),
    "another merchant": (400, "not ours"),
    "not paid": (400, "not SUCCESS"),
    "not JSON": (400, "not JSON"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_refused_notifications_are_audited_and_credit_nothing(stack: Stack, bank_sm2: EcnyBankSimulator,
                                                                   case: str) -> None:
    hub = await _hub(stack, bank_sm2)
    _, order = await _paid_order(hub, bank_sm2)
    if case == "another merchant":
        order = {**order, "merchantNo": "EC0000000000"}
    elif case == "not paid":
        order = {**order, "status": "PENDING"}
    headers, body = bank_sm2.notification(order)
    if case == "tampered body":
        body = body.replace(b'"amount":16800', b'"amount":99999999')
    elif case == "wrong key":
        headers, body = bank_sm2.notification(
            order, signer=signer(SignType.SM2_SM3, stranger_keys(SignType.SM2_SM3)[0]))
    elif case == "other sign type":
        headers, body = bank_sm2.notification(
            order, signer=signer(SignType.RSA_SHA256, stranger_keys(SignType.RSA_SHA256)[0]))
    elif case == "stale timestamp":
        headers, body = bank_sm2.notification(order, timestamp=int(time.time()) - 600)
    elif case == "not JSON":
        body = b"{not json"
        headers = bank_sm2.notification(order)[0] | _resigned(bank_sm2, body)
    status, answer = await bank_sm2.send(stack.base_url(hub) + PATH, headers, body)
    expected_status, words = CASES[case]
    assert status == expected_status
    doc = orjson.loads(answer)
    assert doc["code"] == "FAIL"
    assert words in doc["message"]
    await asyncio.sleep(0.3)
    assert await credited(hub) == []
    assert await payments_stored(hub) == []
    (refusal,) = await rejections(hub)
    assert refusal[0] == "in:ecny"
    assert words in refusal[1]
    assert "sha256" in refusal[1]


def _resigned(bank: EcnyBankSimulator, body: bytes) -> dict[str, str]:
    """The bank's signature over any body (the bank signed it; the body is what is wrong)."""
    return bank_headers(bank.bank, body)
