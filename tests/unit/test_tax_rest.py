"""The tax connector's REST provider against the REST simulator over loopback HTTP: every request
signed (HMAC-SHA256) and verified by the platform, a bad secret or a replayed request refused, one
invoice per request serial through a timeout, broken JSON answers audited."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest

from connectors.tax import TaxConnector
from connectors.tax.model import MalformedAnswer, Refused
from connectors.tax.rest_simulator import RestTaxSimulator
from connectors.tax.signing import SignatureError, canonical, sign, signed_request, verify
from core.catalogue.messages import InvoiceIssued
from hub.connectors.registry import ConnectorRegistry
from hub.errors import TransientError
from tests.tax_peer import ACCOUNT, NAME, SELLER, RecordingContext, bill_request, envelope, payment_request, red_request

KEY, SECRET = "gashub-app", "s3cret-0123456789abcdef"


@pytest.fixture
async def platform() -> AsyncIterator[RestTaxSimulator]:
    sim = RestTaxSimulator(KEY, SECRET)
    await sim.start()
    yield sim
    await sim.aclose()


@pytest.fixture
def context() -> RecordingContext:
    return RecordingContext()


async def build(platform: RestTaxSimulator, context: RecordingContext, **overrides: Any) -> TaxConnector:
    raw = {"kind": "tax", "provider": "rest", "endpoint": platform.endpoint, "seller_tax_id": SELLER,
           "app_key": KEY, "app_secret": SECRET, "timeout_s": 2.0, **overrides}
    built = ConnectorRegistry().build("tax", raw, context)
    assert isinstance(built, TaxConnector)
    return built


@pytest.fixture
async def connector(platform: RestTaxSimulator, context: RecordingContext) -> AsyncIterator[TaxConnector]:
    built = await build(platform, context)
    yield built
    await built.aclose()


def test_the_signature_covers_every_field_but_itself() -> None:
    fields = {"appKey": "k", "method": "invoice.issue", "timestamp": "1764230400000", "nonce": "n1",
              "signType": "HMAC-SHA256", "bizContent": '{"a":1}'}
    assert canonical(fields) == 'appKey=k&bizContent={"a":1}&method=invoice.issue&nonce=n1&timestamp=1764230400000'
    # HMAC-SHA256("secret", that string), computed independently with `openssl dgst -sha256 -hmac secret`.
    assert sign(fields, "secret") == "805c9a9a7af475dc757f3028508af54bbeb5a7a0c2f6d3cc1882e11161bb7659".upper()
    signed = signed_request("invoice.issue", '{"a":1}', app_key="k", secret="secret", now_ms=1_764_230_400_000)
    verify(signed, "secret", now_ms=1_764_230_400_000 + 60_000)
    # The last hex digit changed to another one (a fixed replacement would be no change 1 time in 16).
    flipped = signed["sign"][:-1] + ("1" if signed["sign"][-1] == "0" else "0")
    for tampered, reason in [({**signed, "bizContent": '{"a":2}'}, "does not match"),
                             ({**signed, "sign": flipped.lower()}, "does not match"),
                             ({**signed, "signType": "MD5"}, "signType"),
                             ({k: v for k, v in signed.items() if k != "sign"}, "no sign")]:
        with pytest.raises(SignatureError, match=reason):
            verify(tampered, "secret", now_ms=1_764_230_400_000)
    with pytest.raises(SignatureError, match="5-minute window"):
        verify(signed, "secret", now_ms=1_764_230_400_000 + 301_000)


async def test_blue_red_query_and_download_over_signed_json(
    connector: TaxConnector, platform: RestTaxSimulator
) -> None:
    data = bill_request()
    receipt = await connector.deliver(envelope(data), "issue")
    assert receipt.reply is not None
    answer = InvoiceIssued.model_validate(receipt.reply)
    assert (answer.account_id, answer.user_name, answer.total, answer.total_tax) == (
        ACCOUNT, NAME, Decimal("168.00"), Decimal("13.87"))
    lines = platform.invoices[data["request_serial"]].order.lines
    assert [(x.amount, x.tax, x.tax_rate) for x in lines] == [
        (Decimal("55.05"), Decimal("4.95"), Decimal("0.0900")), (Decimal("99.08"), Decimal("8.92"), Decimal("0.0900"))]

    blue = payment_request()
    issued = await connector.deliver(envelope(blue), "issue")
    assert issued.partner_ref is not None
    red = await connector.deliver(envelope(red_request(blue, issued.partner_ref, "200.00", "RED-01JR1")), "issue")
    assert red.reply is not None
    assert (red.reply["total"], red.reply["total_tax"]) == ("-200.00", "-16.51")
    downloaded = await connector.download(issued.partner_ref)
    assert (downloaded.serial, downloaded.total) == (blue["request_serial"], Decimal("200.00"))
    assert platform.bad_signatures == []
    assert platform.calls == ["invoice.issue"] * 3 + ["invoice.download"]


async def test_a_wrong_secret_is_refused_by_the_platform(platform: RestTaxSimulator, context: RecordingContext) -> None:
    connector = await build(platform, context, app_secret="not-the-secret")
    try:
        with pytest.raises(Refused, match="1001"):
            await connector.deliver(envelope(payment_request()), "issue")
    finally:
        await connector.aclose()
    assert platform.bad_signatures == ["sign does not match"]
    assert platform.invoices == {}


async def test_a_replayed_request_is_refused(platform: RestTaxSimulator) -> None:
    body = orjson.dumps(signed_request("invoice.query", '{"serialNo":"PAY-1"}', app_key=KEY, secret=SECRET,
                                       now_ms=int(time.time() * 1000)))
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(2):
            async with http.post(platform.endpoint, data=body, headers={"Content-Type": "application/json"}) as resp:
                statuses.append((resp.status, (await resp.json())["code"]))
    assert statuses == [(200, "4004"), (401, "1001")]
    assert platform.bad_signatures == ["nonce missing or used before"]


async def test_an_answer_lost_to_a_timeout_is_found_by_serial_not_issued_again(
    platform: RestTaxSimulator, context: RecordingContext
) -> None:
    connector = await build(platform, context, timeout_s=0.3, in_call_attempts=2)
    try:
        platform.slow_s, platform.slow_next = 1.0, 1
        receipt = await connector.deliver(envelope(payment_request()), "issue")
        assert platform.calls == ["invoice.issue", "invoice.query"]
        assert len(platform.invoices) == 1
        assert receipt.partner_ref == platform.invoices["PAY-01JPAY00000000000000001"].invoice.number
    finally:
        await connector.aclose()


async def test_a_broken_json_answer_is_audited_and_transient(
    connector: TaxConnector, platform: RestTaxSimulator, context: RecordingContext
) -> None:
    platform.raw_next = b'{"code": "0000", "data": {"invoiceNumber": '
    with pytest.raises(MalformedAnswer, match="not a JSON object"):
        await connector.deliver(envelope(payment_request()), "issue")
    assert [r[1] for r in context.rejected] == ["tax/rest"]
    platform.down = True
    with pytest.raises(TransientError, match="503"):
        await connector.deliver(envelope(payment_request("PAY-2")), "issue")
