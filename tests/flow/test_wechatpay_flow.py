"""WeChat Pay notifications through the whole hub, on both stacks (embedded; RabbitMQ + PostgreSQL):
signed by the platform's own code (``wechatpayv3``'s ``rsa_sign``, ``cryptography``'s AES-GCM), POSTed
over TCP to ``/partners/wechatpay/notify``, credited by the core once; everything refused is audited
and credits nothing. On the production routes a payment notified five times at once is credited once,
invoiced once over SOAP by the tax simulator and texted once through the SMS gateway."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from connectors.tax.simulator import EInvoiceSimulator
from core.db.tables_payments import credit, payment
from hub.store.tables import dead_letter, hop, message
from tests.flow.conftest import Stack, eventually
from tests.flow.payflow import (
    PHONE,
    count,
    invoice_sms,
    invoices,
    open_test_account,
    payment_hub,
    production_payment_routes,
    soap_tax,
)
from tests.flow.payment_checks import credited_count_is, transactions_credited
from tests.flow.tax_stand_in import PAYMENT_ROUTES
from tests.wechatpay_peer import (
    connector_settings,
    notification,
    sdk_accepts,
    signed,
    transaction,
)

PATH = "/partners/wechatpay/notify"


async def _hub(stack: Stack, *, routes: str = PAYMENT_ROUTES) -> Any:
    return await payment_hub(stack, "wechatpay", connector_settings(), routes=routes)


async def _account(hub: Any) -> str:
    return await open_test_account(hub, "李华", tag="wx")


async def _post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.read()


async def test_a_notification_signed_by_the_platforms_code_is_credited_once(stack: Stack) -> None:
    hub = await _hub(stack)
    account_id = await _account(hub)
    txn = transaction(account_id, fen=20050)
    body = notification(txn)
    headers = signed(body)
    assert sdk_accepts(headers, body) is not None  # a genuine notification, by the SDK's own check
    status, answer = await _post(stack.base_url(hub) + PATH, headers, body)
    assert (status, answer) == (204, b"")
    await eventually(lambda: credited_count_is(hub, 1), what="the payment credited")
    # WeChat sends it again, signed afresh (the 204 was lost on the way, say): accepted, nothing new.
    status, _ = await _post(stack.base_url(hub) + PATH, signed(body), body)
    assert status == 204
    await asyncio.sleep(0.3)
    assert await transactions_credited(hub) == [(txn["transaction_id"], Decimal("200.50"))]
    assert await count(hub, message, message.c.type == "payment.received") == 1
    async with hub.db.read() as conn:
        kept = await conn.scalar(select(func.sum(credit.c.amount)).where(credit.c.account_id == account_id))
        (pay,) = (await conn.execute(select(payment))).all()
    assert Decimal(kept).quantize(Decimal("0.01")) == Decimal("200.50")
    assert (pay.account_id, pay.out_trade_no, pay.channel) == (account_id, txn["out_trade_no"], "wechat")
    async with hub.db.read() as conn:
        stored = (await conn.execute(select(message.c.body).where(message.c.type == "payment.received"))).scalar_one()
    assert b"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" not in bytes(stored)  # the payer's openid is sealed at rest
    assert hub.connectors["wechatpay"].health().extra["accepted"] == 2


async def test_five_concurrent_copies_credit_once_invoice_once_over_soap_and_text_once(
    stack: Stack, tax_platform: EInvoiceSimulator
) -> None:
    """The must-hold: the platform's notification (signed by ``wechatpayv3``'s code), sent five times at
    once, each copy signed afresh as the platform's resends are, through the production routes."""
    production_payment_routes(stack)
    hub = await stack.start_hub(connectors={**stack.settings().connectors, "tax": soap_tax(tax_platform),
                                            "wechatpay": connector_settings()})
    account_id = await _account(hub)
    txn = transaction(account_id, fen=16800)
    body = notification(txn)
    copies = [signed(body) for _ in range(5)]
    assert all(sdk_accepts(headers, body) is not None for headers in copies)  # genuine, by the SDK's own check
    url = stack.base_url(hub) + PATH
    answers = await asyncio.gather(*(_post(url, headers, body) for headers in copies))
    assert [status for status, _ in answers] == [204] * 5
    await eventually(lambda: len(invoice_sms(stack)) >= 1, what="the invoice's SMS sent", timeout=20)
    await asyncio.sleep(1.0)  # anything doubled would show now

    assert await transactions_credited(hub) == [(txn["transaction_id"], Decimal("168.00"))]
    async with hub.db.read() as conn:
        kept = await conn.scalar(select(func.sum(credit.c.amount)).where(credit.c.account_id == account_id))
    assert Decimal(kept).quantize(Decimal("0.01")) == Decimal("168.00")
    assert await count(hub, message, message.c.type == "payment.received") == 1
    (row,) = await invoices(hub)  # one invoice request, issued once by the SOAP platform
    assert (row.status, str(row.total)) == ("issued", "168.00")
    assert tax_platform.calls == ["IssueInvoice"]
    assert {s: i.invoice.number for s, i in tax_platform.invoices.items()} == {row.request_serial: row.invoice_number}
    (sms,) = invoice_sms(stack)  # one SMS, carrying that invoice's number
    assert (sms["phone"], sms["params"]["invoice_number"], sms["params"]["amount"]) == (
        PHONE, row.invoice_number, "168.00")
    assert stack.sms.requests == 1
    assert await count(hub, message, message.c.type == "notification.requested") == 1
    assert await count(hub, dead_letter) == 0
    assert hub.connectors["wechatpay"].health().extra["accepted"] == 5


async def test_one_request_replayed_five_times_at_once_is_taken_once(stack: Stack) -> None:
    """The same bytes, same nonce, five times at once (a replay, not the platform's resends): the nonce
    claims meet in one group and only the first wins; the rest are refused and audited."""
    hub = await _hub(stack)
    account_id = await _account(hub)
    body = notification(transaction(account_id, fen=777))
    headers = signed(body)
    answers = await asyncio.gather(*(_post(stack.base_url(hub) + PATH, headers, body) for _ in range(5)))
    assert sorted(status for status, _ in answers) == [204, 401, 401, 401, 401]
    assert all(b"replayed" in answer for status, answer in answers if status == 401)
    await eventually(lambda: credited_count_is(hub, 1), what="the payment credited")
    assert await count(hub, hop, hop.c.route == "in:wechatpay", hop.c.outcome == "rejected") == 4
    assert await count(hub, message, message.c.type == "payment.received") == 1


CASES = {
    # case: (status, words of the audited reason)
    "tampered body": (401, "does not verify"),
    "wrong key": (401, "does not verify"),
    "unknown serial": (401, "names no platform certificate"),
    "signtest probe": (401, "SIGNTEST"),
    "stale timestamp": (401, "stale timestamp"),
    "replayed": (401, "replayed"),
    "wrong APIv3 key": (401, "does not decrypt"),
    "another merchant": (400, "not ours"),
    "not JSON": (400, "not JSON"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_refused_notifications_are_audited_and_credit_nothing(stack: Stack, case: str) -> None:
    hub = await _hub(stack)
    account_id = await _account(hub)
    url = stack.base_url(hub) + PATH
    txn = transaction(account_id, mchid="1900000001") if case == "another merchant" else transaction(account_id)
    body = notification(txn, api_v3_key="K" * 32) if case == "wrong APIv3 key" else notification(txn)
    headers = signed(body)
    if case == "tampered body":
        body = body.replace(b'"TRANSACTION.SUCCESS"', b'"TRANSACTION.SUCCESS" ')
    elif case == "wrong key":
        headers = signed(body, signer="stranger")
    elif case == "unknown serial":
        headers = signed(body, serial="PUB_KEY_ID_0114999999999999999999999999")
    elif case == "signtest probe":
        headers = signed(body, signature="WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"])
    elif case == "stale timestamp":
        headers = signed(body, timestamp=int(time.time()) - 6 * 60)
    elif case == "replayed":
        status, _ = await _post(url, headers, body)
        assert status == 204
        await eventually(lambda: credited_count_is(hub, 1), what="the first copy credited")
        async with hub.db.begin() as conn:  # forget the payment, to see that the replay credits nothing
            await conn.execute(credit.delete())
            await conn.execute(payment.delete())
    elif case == "not JSON":  # signed as it is: the platform's signature holds, the body does not parse
        body = b"{not json"
        headers = signed(body)
    status, answer = await _post(url, headers, body)
    expected_status, words = CASES[case]
    assert status == expected_status
    doc = json.loads(answer)
    assert doc["code"] == "FAIL"
    assert words in doc["message"]
    await asyncio.sleep(0.3)
    assert await transactions_credited(hub) == []
    async with hub.db.read() as conn:
        rejected = (await conn.execute(select(hop.c.route, hop.c.error).where(hop.c.outcome == "rejected"))).all()
    assert len(rejected) == 1
    assert rejected[0].route == "in:wechatpay"
    assert words in rejected[0].error
    assert "sha256" in rejected[0].error
    assert await count(hub, message, message.c.type == "payment.received") == (1 if case == "replayed" else 0)


async def test_a_big_body_is_refused_before_anything_else(stack: Stack) -> None:
    hub = await _hub(stack)
    body = b'{"pad": "' + b"x" * 70_000 + b'"}'
    status, answer = await _post(stack.base_url(hub) + PATH, signed(body), body)
    assert (status, json.loads(answer)["code"]) == (413, "FAIL")
    assert await count(hub, hop, hop.c.outcome == "rejected") == 1


async def test_the_platform_hears_204_only_after_the_broker_confirmed(stack: Stack) -> None:
    """The publish is held back until after the platform's request arrived; the answer waits for it.
    A publish the broker does not take (here: no route bound) gets a 503 and credits nothing; the
    platform's resend, after the route exists, is credited once."""
    no_payment_route = "\n".join(PAYMENT_ROUTES.split("[[route]]")[0:1]) + "\n[[route]]" + \
        PAYMENT_ROUTES.split("[[route]]", 2)[2]
    hub = await _hub(stack, routes=no_payment_route)
    account_id = await _account(hub)
    txn = transaction(account_id, fen=5000)
    body = notification(txn)
    status, answer = await _post(stack.base_url(hub) + PATH, signed(body), body)
    assert status == 503
    assert json.loads(answer)["code"] == "FAIL"
    await hub.stop()

    hub = await _hub(stack)
    events: list[str] = []
    publish = hub.publisher.publish

    async def slow_publish(envelopes: Any, **options: Any) -> None:
        await asyncio.sleep(0.3)
        await publish(envelopes, **options)
        events.append("confirmed")

    hub.publisher.publish = slow_publish  # type: ignore[method-assign]
    status, _ = await _post(stack.base_url(hub) + PATH, signed(body), body)
    events.append(f"answered {status}")
    assert events == ["confirmed", "answered 204"]
    await eventually(lambda: credited_count_is(hub, 1), what="the resend credited")
    assert await transactions_credited(hub) == [(txn["transaction_id"], Decimal("50.00"))]
