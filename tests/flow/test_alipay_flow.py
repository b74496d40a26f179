"""Alipay notifications through the whole hub, on both stacks (embedded; RabbitMQ + PostgreSQL):
signed by python-alipay-sdk's own code, POSTed as forms over TCP to ``/partners/alipay/notify``,
credited by the core once; everything refused is audited and credits nothing."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from connectors.demo.payments import Due, PaymentChannelSimulator
from connectors.demo.run import alipay_deliver
from connectors.payments.alipay.simulator import AlipayGatewaySimulator, public_pem
from connectors.payments.alipay.trade import BEIJING
from connectors.tax.simulator import EInvoiceSimulator
from core.db.tables_payments import credit, payment
from hub.store.tables import dead_letter, hop, message
from tests.alipay_peer import APP_ID, BUYER_ID, connector_settings, keys, sdk_accepts, signed_form, trade
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
from tests.flow.payment_checks import (
    credited_count_is,
    post_in_two_pieces,
    postpaid_account,
    rejections,
    transactions_credited,
)
from tests.flow.tax_stand_in import PAYMENT_ROUTES

PATH = "/partners/alipay/notify"


async def _hub(stack: Stack, *, routes: str = PAYMENT_ROUTES, **settings: Any) -> Any:
    return await payment_hub(stack, "alipay", connector_settings(**settings), routes=routes)


async def _post(url: str, body: bytes) -> tuple[int, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.text()


async def test_a_notification_signed_by_the_sdk_is_credited_once(stack: Stack) -> None:
    hub = await _hub(stack)
    account_id = await postpaid_account(hub, "ali")
    fields = trade(account_id, total="200.50")
    body = signed_form(fields)
    assert sdk_accepts(body)  # a genuine notification, by the SDK's own check
    status, answer = await _post(stack.base_url(hub) + PATH, body)
    assert (status, answer) == (200, "success")
    await eventually(lambda: credited_count_is(hub, 1), what="the payment credited")
    # The trade finishes later (the refund period is over): another notification, the same trade.
    status, answer = await _post(stack.base_url(hub) + PATH,
                                 signed_form({**fields, "notify_id": "f" * 34, "trade_status": "TRADE_FINISHED"}))
    assert (status, answer) == (200, "success")
    await asyncio.sleep(0.3)
    assert await transactions_credited(hub) == [(fields["trade_no"], Decimal("200.50"))]
    assert await count(hub, message, message.c.type == "payment.received") == 1
    async with hub.db.read() as conn:
        kept = await conn.scalar(select(func.sum(credit.c.amount)).where(credit.c.account_id == account_id))
        (pay,) = (await conn.execute(select(payment))).all()
        stored = (await conn.execute(select(message.c.body).where(message.c.type == "payment.received"))).scalar_one()
    assert Decimal(kept).quantize(Decimal("0.01")) == Decimal("200.50")
    assert (pay.account_id, pay.out_trade_no, pay.channel) == (account_id, fields["out_trade_no"], "alipay")
    assert BUYER_ID.encode() not in bytes(stored)  # the buyer's id is sealed at rest
    assert hub.connectors["alipay"].health().extra["accepted"] == 2


async def test_a_resend_after_our_success_was_lost_hears_success_and_credits_nothing_more(stack: Stack) -> None:
    """Alipay resends a notification it did not hear ``success`` for with the same notify_id and a new
    notify_time (the time of that sending), signed afresh. When our ``success`` was lost on the way, the
    resend is not a replay: it hears ``success`` (else Alipay resends 8 times over 25 hours and reports
    the notification failed) and credits nothing more. The first sending again, as it was, is a replay."""
    hub = await _hub(stack)
    account_id = await postpaid_account(hub, "ali")
    now = datetime.now(BEIJING)
    fields = trade(account_id, total="88.00")
    first = signed_form({**fields, "notify_time": (now - timedelta(minutes=4)).strftime("%Y-%m-%d %H:%M:%S")})
    resend = signed_form({**fields, "notify_time": now.strftime("%Y-%m-%d %H:%M:%S")})
    assert sdk_accepts(resend)
    url = stack.base_url(hub) + PATH
    assert await _post(url, first) == (200, "success")  # ... and Alipay never heard it
    await eventually(lambda: credited_count_is(hub, 1), what="the payment credited")
    assert await _post(url, resend) == (200, "success")
    status, answer = await _post(url, first)
    assert (status, answer.startswith("fail: replayed")) == (401, True)
    await asyncio.sleep(0.3)
    assert await transactions_credited(hub) == [(fields["trade_no"], Decimal("88.00"))]
    assert await count(hub, message, message.c.type == "payment.received") == 1


async def test_five_concurrent_copies_credit_once_and_all_hear_success(stack: Stack) -> None:
    """Alipay's resends carry the same notify_id. Five copies in hand at once (the broker's confirm
    held back so none finishes before the others arrive) are one notification: one credit, and
    each copy is answered ``success`` only after its publish was confirmed."""
    hub = await _hub(stack)
    account_id = await postpaid_account(hub, "ali")
    fields = trade(account_id, total="168.00")
    body = signed_form(fields)
    publish = hub.publisher.publish
    events: list[str] = []

    async def slow_publish(envelopes: Any, **options: Any) -> None:
        await asyncio.sleep(0.3)
        await publish(envelopes, **options)
        events.append("confirmed")

    async def post_and_note(url: str) -> tuple[int, str]:
        answer = await _post(url, body)
        events.append("answered")
        return answer

    hub.publisher.publish = slow_publish  # type: ignore[method-assign]
    url = stack.base_url(hub) + PATH
    answers = await asyncio.gather(*(post_and_note(url) for _ in range(5)))
    assert answers == [(200, "success")] * 5
    assert events[0] == "confirmed"
    assert events.count("answered") == 5
    await eventually(lambda: credited_count_is(hub, 1), what="the payment credited")
    await asyncio.sleep(0.5)
    assert await transactions_credited(hub) == [(fields["trade_no"], Decimal("168.00"))]
    async with hub.db.read() as conn:
        kept = await conn.scalar(select(func.sum(credit.c.amount)).where(credit.c.account_id == account_id))
    assert Decimal(kept).quantize(Decimal("0.01")) == Decimal("168.00")
    assert await count(hub, message, message.c.type == "payment.received") == 1
    assert await rejections(hub) == []
    # Sent again once it was answered: the notify_id is spent, so this copy is a replay.
    status, answer = await _post(url, body)
    assert status == 401
    assert answer.startswith("fail: replayed")



async def test_five_concurrent_copies_through_the_production_routes_invoice_once_over_soap_and_text_once(
    stack: Stack, tax_platform: EInvoiceSimulator
) -> None:
    """The must-hold for Alipay: a notification signed with Alipay's key by python-alipay-sdk's own code,
    sent five times at once, credits once, issues one invoice over SOAP and sends one SMS carrying it,
    through the production routes (``routes/payments.toml``)."""
    production_payment_routes(stack)
    hub = await stack.start_hub(connectors={**stack.settings().connectors, "tax": soap_tax(tax_platform),
                                            "alipay": connector_settings()})
    account_id = await open_test_account(hub, "张敏", tag="ali")
    fields = trade(account_id, total="95.50")
    body = signed_form(fields)
    assert sdk_accepts(body)  # genuine, by the SDK's own check
    url = stack.base_url(hub) + PATH
    answers = await asyncio.gather(*(_post(url, body) for _ in range(5)))
    assert answers == [(200, "success")] * 5
    await eventually(lambda: len(invoice_sms(stack)) >= 1, what="the invoice's SMS sent", timeout=20)
    await asyncio.sleep(1.0)  # anything doubled would show now

    assert await transactions_credited(hub) == [(fields["trade_no"], Decimal("95.50"))]
    (row,) = await invoices(hub)  # one invoice request, issued once by the SOAP platform
    assert (row.status, str(row.total)) == ("issued", "95.50")
    assert tax_platform.calls == ["IssueInvoice"]
    (sms,) = invoice_sms(stack)  # one SMS, carrying that invoice's number
    assert (sms["phone"], sms["params"]["invoice_number"]) == (PHONE, row.invoice_number)
    assert await count(hub, message, message.c.type == "notification.requested") == 1
    assert await count(hub, dead_letter) == 0


CASES = {
    # case: (status, words of the audited reason)
    "tampered body": (401, "does not verify"),
    "wrong key": (401, "does not verify"),
    "replayed": (401, "replayed"),
    "stale notify_time": (401, "stale notify_time"),
    "RSA (SHA1) sign_type": (401, "not RSA2"),
    "another app": (400, "not ours"),
    "another seller": (400, "not ours"),
    "amount in fen": (400, "two places"),
    "not a form": (400, "not a notification form"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_refused_notifications_are_audited_and_credit_nothing(stack: Stack, case: str) -> None:
    hub = await _hub(stack)
    account_id = await postpaid_account(hub, "ali")
    url = stack.base_url(hub) + PATH
    fields = trade(account_id)
    body = signed_form(fields)
    if case == "tampered body":
        body = body.replace(b"total_amount=123.45", b"total_amount=923.45")
    elif case == "wrong key":
        body = signed_form(fields, signer="stranger")
    elif case == "stale notify_time":
        old = datetime.now(BEIJING) - timedelta(hours=27)
        body = signed_form({**fields, "notify_time": f"{old:%Y-%m-%d %H:%M:%S}"})
    elif case == "RSA (SHA1) sign_type":
        body = signed_form(fields, sign_type="RSA")
    elif case == "another app":
        body = signed_form({**fields, "app_id": "2021000000000001", "auth_app_id": "2021000000000001"})
    elif case == "another seller":
        body = signed_form({**fields, "seller_id": "2088000000000001"})
    elif case == "amount in fen":
        body = signed_form({**fields, "total_amount": "12345"})
    elif case == "not a form":
        body = b"a=1&a=2"
    elif case == "replayed":
        status, answer = await _post(url, body)
        assert (status, answer) == (200, "success")
        await eventually(lambda: credited_count_is(hub, 1), what="the first copy credited")
        async with hub.db.begin() as conn:  # forget the payment, to see that the replay credits nothing
            await conn.execute(credit.delete())
            await conn.execute(payment.delete())
    status, answer = await _post(url, body)
    expected_status, words = CASES[case]
    assert status == expected_status
    assert answer.startswith("fail: ")
    assert words in answer
    await asyncio.sleep(0.3)
    assert await transactions_credited(hub) == []
    ((route, error),) = await rejections(hub)
    assert route == "in:alipay"
    assert words in error
    assert "sha256" in error
    assert await count(hub, message, message.c.type == "payment.received") == (1 if case == "replayed" else 0)


async def test_unpaid_and_closed_trades_are_acknowledged_audited_and_credit_nothing(stack: Stack) -> None:
    """The simulator pays nothing here: the payer scanned and left (WAIT_BUYER_PAY), then the order
    closed (TRADE_CLOSED); the simulator sends both notifications to the hub."""
    hub = await _hub(stack)
    account_id = await postpaid_account(hub, "ali")
    gateway = AlipayGatewaySimulator(app_id=APP_ID, app_public_key=public_pem(keys()["app"]),
                                     alipay_key=keys()["alipay"], seller_id=connector_settings()["seller_id"])
    url = stack.base_url(hub) + PATH
    number = f"{account_id}-C10SE"
    gateway.orders[number] = {"out_trade_no": number, "total_amount": "88.00", "trade_status": "WAIT_BUYER_PAY",
                              "subject": "燃气费"}
    try:
        waiting = gateway.notification(gateway.scan(number))
        assert await gateway.send(url, waiting) == (200, "success")
        closed = gateway.notification(gateway.close(number))
        assert await gateway.send(url, closed) == (200, "success")
        assert (await gateway.send(url, closed))[0] == 401  # answered once: its notify_id is spent
    finally:
        await gateway.aclose()
    await asyncio.sleep(0.3)
    assert await transactions_credited(hub) == []
    assert await count(hub, message, message.c.type == "payment.received") == 0
    reasons = [error for _, error in await rejections(hub)]
    assert len(reasons) == 3
    assert sum("is WAIT_BUYER_PAY" in r for r in reasons) == 1
    assert sum("is TRADE_CLOSED" in r for r in reasons) == 1
    assert sum("replayed" in r for r in reasons) == 1
    assert hub.connectors["alipay"].health().extra["acknowledged"] == 2


async def test_a_big_body_is_refused_before_anything_else(stack: Stack) -> None:
    hub = await _hub(stack)
    body = b"subject=" + b"x" * 70_000
    status, answer = await _post(stack.base_url(hub) + PATH, body)
    assert status == 413
    assert answer.startswith("fail: body over")
    assert await count(hub, hop, hop.c.outcome == "rejected") == 1


async def test_a_body_that_arrives_in_pieces_is_read_whole(stack: Stack) -> None:
    """Over a raw socket: the headers and half the form, a pause, the rest."""
    hub = await _hub(stack)
    account_id = await postpaid_account(hub, "ali")
    fields = trade(account_id, total="12.30")
    answer = await post_in_two_pieces(stack.base_url(hub), PATH, signed_form(fields),
                                      "application/x-www-form-urlencoded")
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b"\r\n\r\nsuccess")
    await eventually(lambda: credited_count_is(hub, 1), what="the payment credited")


async def test_alipay_hears_success_only_after_the_broker_confirmed(stack: Stack) -> None:
    """A publish the broker does not take (here: no route bound) gets a failure and credits nothing,
    and the notify_id is not spent: Alipay's resend of the same notification, once the route exists,
    is credited once."""
    no_payment_route = "\n".join(PAYMENT_ROUTES.split("[[route]]")[0:1]) + "\n[[route]]" + \
        PAYMENT_ROUTES.split("[[route]]", 2)[2]
    hub = await _hub(stack, routes=no_payment_route)
    account_id = await postpaid_account(hub, "ali")
    fields = trade(account_id, total="50.00")
    body = signed_form(fields)
    status, answer = await _post(stack.base_url(hub) + PATH, body)
    assert status == 503
    assert answer != "success"
    await hub.stop()

    hub = await _hub(stack)
    status, answer = await _post(stack.base_url(hub) + PATH, body)  # the same bytes: Alipay's resend
    assert (status, answer) == (200, "success")
    await eventually(lambda: credited_count_is(hub, 1), what="the resend credited")
    assert await transactions_credited(hub) == [(fields["trade_no"], Decimal("50.00"))]


async def test_the_simulator_pays_a_precreated_order_and_notifies_the_hub(stack: Stack) -> None:
    """The demo's path: the hub's client precreates the order at the simulated gateway, the payer
    pays, the gateway POSTs the signed notification to the notify URL it was given."""
    gateway = AlipayGatewaySimulator(app_id=APP_ID, app_public_key=public_pem(keys()["app"]),
                                     alipay_key=keys()["alipay"], seller_id=connector_settings()["seller_id"])
    await gateway.start()
    try:
        hub = await _hub(stack, gateway_url=gateway.gateway_url,
                         notify_url="https://gas.example.cn/partners/alipay/notify")
        account_id = await postpaid_account(hub, "ali")
        connector = hub.connectors["alipay"]
        number, qr = await connector.qr_for_bill(account_id=account_id, bill_id="01JQ40000000000000000000AB",
                                                 amount=Decimal("99.90"), subject="燃气费 2026-02")
        assert qr.startswith("https://qr.alipay.com/")
        assert await connector.qr_for_bill(account_id=account_id, bill_id="01JQ40000000000000000000AB",
                                           amount=Decimal("99.90"), subject="燃气费 2026-02") == (number, qr)
        assert gateway.notify_urls[number] == "https://gas.example.cn/partners/alipay/notify"
        assert await connector.reconcile(number) is None  # not paid: nothing to publish
        paid = gateway.pay(number)
        assert await gateway.send(stack.base_url(hub) + PATH, gateway.notification(paid)) == (200, "success")
        await eventually(lambda: credited_count_is(hub, 1), what="the payment credited")
        again = await connector.reconcile(number)  # the query finds the same trade: a duplicate
        assert again is not None
        assert again.duplicate
        assert await transactions_credited(hub) == [(paid["trade_no"], Decimal("99.90"))]
    finally:
        await gateway.aclose()


async def test_the_demos_alipay_payments_go_through_the_gateway_simulator(stack: Stack) -> None:
    """The demo's payment simulator hands Alipay payments to the gateway simulator, which signs and
    POSTs them to the connector: paid and then finished (two notifications), credited once."""
    gateway = AlipayGatewaySimulator(app_id=APP_ID, app_public_key=public_pem(keys()["app"]),
                                     alipay_key=keys()["alipay"], seller_id=connector_settings()["seller_id"])
    await gateway.start()
    try:
        hub = await _hub(stack, gateway_url=gateway.gateway_url)
        account_id = await postpaid_account(hub, "ali")
        published: list[Any] = []

        async def publish(envelopes: Any) -> None:
            published.extend(envelopes)

        payer = PaymentChannelSimulator(publish, repeat_rate=1.0, pay_share=1.0,
                                        deliver={"alipay": alipay_deliver(gateway, stack.base_url(hub) + PATH)})
        planned = [p for p in payer.plan([Due("B1", account_id, "330600000001", Decimal("86.40"))] * 8,
                                         datetime.now(BEIJING)) if p.channel == "alipay"][:1]
        assert planned, "the plan has an Alipay payment"
        notified = await payer.notify(planned[0])
        assert (notified.envelope, notified.twice, published) == (None, True, [])
        await eventually(lambda: credited_count_is(hub, 1), what="the payment credited")
        await asyncio.sleep(0.3)
        assert await transactions_credited(hub) == [(planned[0].transaction_id, planned[0].amount)]
        assert hub.connectors["alipay"].health().extra["accepted"] == 2
        assert await rejections(hub) == []
    finally:
        await gateway.aclose()
