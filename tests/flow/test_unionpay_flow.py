"""UnionPay back-end notifications through the whole hub, on both stacks (embedded; RabbitMQ +
PostgreSQL): signed by the simulator's certificate chain, POSTed as a form over TCP to
``/partners/unionpay/notify``, credited by the core once per ``queryId``; everything refused is audited
and credits nothing."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select

from core.accounts import CustomerIn, PremisesIn, id_check_digit, open_account
from core.db.tables_payments import credit, payment
from hub.store.tables import hop, message
from tests.flow.conftest import Stack, eventually
from tests.flow.tax_stand_in import PAYMENT_ROUTES, registry
from tests.unionpay_peer import connector_settings, forger, simulator

PATH = "/partners/unionpay/notify"


async def _hub(stack: Stack) -> Any:
    (stack.routes_dir / "payments.toml").write_text(PAYMENT_ROUTES)
    connectors = {**stack.settings().connectors, "tax": {"kind": "tax_stand_in"}, "unionpay": connector_settings()}
    return await stack.start_hub(registry=registry(), connectors=connectors)


async def _account(hub: Any) -> str:
    """A postpaid account with no bill: what it is paid is kept as credit."""
    assert hub.privacy is not None
    async with hub.db.begin() as conn:
        view = await open_account(
            conn, hub.privacy, f"up-{time.monotonic_ns()}",
            CustomerIn(name="王芳", phone="13812345678",
                       id_number="33062119850615004" + id_check_digit("33062119850615004")),
            PremisesIn(address="绍兴市越城区中兴中路2号", district="yuecheng", lat=30.0, lon=120.58),
            "residential", "postpaid")
    return view.account_id


async def _credited(hub: Any) -> list[tuple[str, str, Decimal]]:
    async with hub.db.read() as conn:
        return [(r.channel, r.transaction_id, Decimal(r.amount).quantize(Decimal("0.01")))
                for r in await conn.execute(select(payment.c.channel, payment.c.transaction_id, payment.c.amount))]


async def _count(hub: Any, table: Any, *where: Any) -> int:
    async with hub.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def _kept(hub: Any, account_id: str) -> Decimal:
    async with hub.db.read() as conn:
        kept = await conn.scalar(select(func.sum(credit.c.amount)).where(credit.c.account_id == account_id))
    return Decimal(kept or 0).quantize(Decimal("0.01"))


def _order() -> str:
    return f"GAS{time.monotonic_ns()}"[:32]


async def test_a_notification_is_credited_once_and_its_resend_answered_ok(stack: Stack) -> None:
    hub = await _hub(stack)
    sim = simulator()
    try:
        account_id = await _account(hub)
        fields = sim.pay(_order(), 20050, account_id)
        url = stack.base_url(hub) + PATH
        assert await sim.send(url, fields) == (200, b"ok")
        await eventually(lambda: _has(hub, 1), what="the payment credited")
        assert await sim.send(url, fields) == (200, b"ok")  # UnionPay's resend (up to five)
        await asyncio.sleep(0.3)
        assert await _credited(hub) == [("unionpay", fields["queryId"], Decimal("200.50"))]
        assert await _kept(hub, account_id) == Decimal("200.50")
        assert await _count(hub, message, message.c.type == "payment.received") == 1
        async with hub.db.read() as conn:
            stored = (await conn.execute(
                select(message.c.body).where(message.c.type == "payment.received"))).scalar_one()
        assert b"6221****0000" not in bytes(stored)  # the card number is sealed at rest
        assert hub.connectors["unionpay"].health().extra["accepted"] == 2
    finally:
        await sim.aclose()


async def _has(hub: Any, n: int) -> bool:
    return len(await _credited(hub)) == n


async def test_five_concurrent_identical_notifications_credit_once(stack: Stack) -> None:
    hub = await _hub(stack)
    sim = simulator()
    try:
        account_id = await _account(hub)
        fields = sim.pay(_order(), 16800, account_id)
        url = stack.base_url(hub) + PATH
        answers = await asyncio.gather(*(sim.send(url, fields) for _ in range(5)))
        assert answers == [(200, b"ok")] * 5
        await eventually(lambda: _has(hub, 1), what="the payment credited")
        await asyncio.sleep(0.5)
        assert await _credited(hub) == [("unionpay", fields["queryId"], Decimal("168.00"))]
        assert await _kept(hub, account_id) == Decimal("168.00")
        assert await _count(hub, message, message.c.type == "payment.received") == 1
    finally:
        await sim.aclose()


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


@pytest.mark.parametrize("case", list(CASES))
async def test_refused_notifications_are_audited_and_credit_nothing(stack: Stack, case: str) -> None:
    hub = await _hub(stack)
    sim = simulator()
    try:
        account_id = await _account(hub)
        order = _order()
        if case == "another merchant":
            fields = sim.signed({**sim.pay(order, 100, account_id), "merId": "777290058119999"})
        elif case == "replayed old":
            fields = sim.pay(order, 100, account_id, txn_time=datetime.now(UTC) - timedelta(days=4))
        elif case == "payment failed":
            fields = sim.pay(order, 100, account_id, resp_code="05")
        else:
            fields = sim.pay(order, 100, account_id)
        if case == "tampered amount":
            fields = {**fields, "txnAmt": "1000000"}
        elif case == "wrong key":
            fields = sim.signed(fields, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
        elif case == "forged chain":
            fields = forger().signed(fields)
        url = stack.base_url(hub) + PATH
        if case == "not a form":
            status, answer = await _post_raw(url, b"\xff\xfe not a form")
        else:
            status, answer = await sim.send(url, fields)
        expected_status, words = CASES[case]
        assert status == expected_status
        assert (answer == b"ok") if status == 200 else (words in answer.decode())
        await asyncio.sleep(0.3)
        assert await _credited(hub) == []
        assert await _count(hub, message, message.c.type == "payment.received") == 0
        async with hub.db.read() as conn:
            rejected = (await conn.execute(select(hop.c.route, hop.c.error).where(hop.c.outcome == "rejected"))).all()
        assert [r.route for r in rejected] == ["in:unionpay"]
        assert words in rejected[0].error
        assert "sha256" in rejected[0].error
        if case == "payment failed":
            assert hub.connectors["unionpay"].health().extra["not_paid"] == 1
    finally:
        await sim.aclose()


async def _post_raw(url: str, body: bytes) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.post(
            url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
        return resp.status, await resp.read()


async def test_a_big_body_is_refused_before_anything_else(stack: Stack) -> None:
    hub = await _hub(stack)
    status, answer = await _post_raw(stack.base_url(hub) + PATH, b"a=" + b"x" * 20_000)
    assert status == 413
    assert b"over" in answer
    assert await _count(hub, hop, hop.c.outcome == "rejected") == 1
