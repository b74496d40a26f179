"""The simulated tax platform (demo) and its connector: invoices issued once per request serial, red
invoices against blue ones, malformed requests and answers refused with a message naming the problem."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from connectors.tax_demo import TaxDemoConnector, TaxDemoSettings
from connectors.tax_demo.protocol import issued_from_answer, request_body
from connectors.tax_demo.simulator import TaxPlatformSimulator
from core.catalogue.messages import InvoiceIssued, InvoiceKind, InvoiceRequested
from core.payments.invoicing import payment_lines, red_lines, totals
from hub.connectors.contract import ReceiveResult
from hub.connectors.registry import ConnectorRegistry
from hub.envelope import Envelope
from hub.errors import PermanentError, TransientError

NAME = "王小明"


class NoInbound:
    """An outbound connector's context: nothing comes in through it."""

    name = "tax_demo"

    async def receive(self, envelope: Envelope, *, partner_key: str | None = None) -> ReceiveResult:
        raise AssertionError("an outbound connector receives nothing")

    async def reject(self, reason: str, *, body: bytes, source: str) -> None:
        raise AssertionError("an outbound connector rejects nothing")

    async def claim_once(self, key: str) -> bool:
        raise AssertionError("an outbound connector claims nothing")

    def add_routes(self, routes: Sequence[web.RouteDef]) -> None:
        raise AssertionError("an outbound connector mounts no endpoint")


@pytest.fixture
async def platform() -> AsyncIterator[TaxPlatformSimulator]:
    sim = TaxPlatformSimulator()
    await sim.start()
    yield sim
    await sim.aclose()


@pytest.fixture
async def connector(platform: TaxPlatformSimulator) -> AsyncIterator[TaxDemoConnector]:
    built = ConnectorRegistry().build("tax_demo", {"kind": "tax_demo", "base_url": platform.url,
                                                   "in_call_attempts": 2}, NoInbound())
    assert isinstance(built, TaxDemoConnector)
    yield built
    await built.aclose()


def blue(serial: str = "PAY-01JDEMO0000000000000001", amount: str = "200.00") -> dict[str, Any]:
    lines = payment_lines(Decimal(amount), name="管道天然气", tax_code="1100301010000000000", vat_rate=Decimal("0.09"))
    total, tax = totals(lines)
    return InvoiceRequested(request_serial=serial, account_id="01JACCOUNT", user_name=NAME, payment_ref="01JPAY",
                            lines=lines, total=total, total_tax=tax).model_dump(mode="json")


def envelope(data: dict[str, Any]) -> Envelope:
    return Envelope(type="invoice.requested", source="core", subject=data["account_id"], data=data)


async def test_an_invoice_request_is_issued_once_per_serial_and_answers_invoice_issued(
    connector: TaxDemoConnector, platform: TaxPlatformSimulator
) -> None:
    data = blue()
    first = await connector.deliver(envelope(data), "issue")
    again = await connector.deliver(envelope(data), "issue")  # the route's retry after a lost answer
    assert first.reply is not None
    issued = InvoiceIssued.model_validate(first.reply)  # what core:record_invoice_issued will read
    assert (issued.request_serial, issued.account_id, issued.user_name) == (data["request_serial"], "01JACCOUNT", NAME)
    assert (issued.total, issued.total_tax) == (Decimal("200.00"), Decimal("16.51"))
    assert len(issued.invoice_number) == 20
    assert again.reply is not None
    assert again.reply["invoice_number"] == issued.invoice_number
    assert list(platform.invoices) == [data["request_serial"]]
    other = await connector.deliver(envelope(blue("PAY-01JDEMO0000000000000002", "35.50")), "issue")
    assert other.reply is not None
    assert other.reply["invoice_number"] != issued.invoice_number


async def test_a_red_invoice_needs_a_blue_one_the_platform_issued(connector: TaxDemoConnector) -> None:
    data = blue()
    receipt = await connector.deliver(envelope(data), "issue")
    assert receipt.reply is not None
    blue_line = InvoiceRequested.model_validate(data).lines[0]
    reds = red_lines(blue_line, Decimal("50.00"))
    total, tax = totals(reds)
    red = InvoiceRequested(request_serial="RED-01JREFUND", kind=InvoiceKind.RED, account_id="01JACCOUNT",
                           user_name=NAME, payment_ref="01JPAY", lines=reds, total=total, total_tax=tax,
                           original_invoice_number=receipt.reply["invoice_number"]).model_dump(mode="json")
    issued = await connector.deliver(envelope(red), "issue")
    assert issued.reply is not None
    assert Decimal(issued.reply["total"]) == Decimal("-50.00")
    stranger = {**red, "request_serial": "RED-01JOTHER", "original_invoice_number": "2633" + "9" * 16}
    with pytest.raises(PermanentError, match="was not issued here"):
        await connector.deliver(envelope(stranger), "issue")


async def test_the_platform_refuses_malformed_requests_naming_the_problem(platform: TaxPlatformSimulator) -> None:
    good = request_body(blue())
    broken_totals = {**good, "total": "199.00"}
    no_buyer = {**good, "buyer": {"user_number": "01JACCOUNT"}}
    zero = {**good, "lines": [{**good["lines"][0], "quantity": "0"}]}
    not_a_number = {**good, "lines": [{**good["lines"][0], "amount": "lots"}]}
    red_without_original = {**good, "kind": "red"}
    async with aiohttp.ClientSession() as http:
        async def post(body: bytes) -> tuple[int, dict[str, Any]]:
            async with http.post(f"{platform.url}/api/v1/invoices", data=body,
                                 headers={"Content-Type": "application/json"}) as resp:
                return resp.status, await resp.json()

        cases = [
            (b'{"request_serial": "PAY-1", ', "not JSON"),
            (b"[]", "JSON object"),
            (orjson.dumps(broken_totals), "add up to 200.00 with 16.51 tax, but total is 199.00"),
            (orjson.dumps(no_buyer), "buyer.name is required"),
            (orjson.dumps(zero), "lines[0].quantity must not be zero"),
            (orjson.dumps(not_a_number), "lines[0].amount is not a number"),
            (orjson.dumps(red_without_original), "positive total"),
        ]
        for body, reason in cases:
            status, answer = await post(body)
            assert (status, answer["code"]) == (400, "INVALID"), body
            assert reason in answer["message"]
    assert platform.invoices == {}
    assert len(platform.refused) == len(cases)


async def test_the_same_serial_with_other_content_is_a_conflict(connector: TaxDemoConnector) -> None:
    await connector.deliver(envelope(blue()), "issue")
    with pytest.raises(PermanentError, match="409"):
        await connector.deliver(envelope(blue(amount="250.00")), "issue")


async def test_busy_and_down_are_transient(connector: TaxDemoConnector, platform: TaxPlatformSimulator) -> None:
    platform.fail_next = 1  # one in-call retry absorbs it
    receipt = await connector.deliver(envelope(blue()), "issue")
    assert receipt.partner_ref is not None
    platform.down = True
    with pytest.raises(TransientError, match="503"):
        await connector.deliver(envelope(blue("PAY-01JDEMO0000000000000009")), "issue")
    assert platform.requests == 4


def test_a_request_without_what_an_invoice_needs_is_permanent() -> None:
    data = blue()
    for missing in ("request_serial", "user_name", "lines", "total"):
        with pytest.raises(PermanentError, match=f"no '{missing}'"):
            request_body({k: v for k, v in data.items() if k != missing})
    with pytest.raises(PermanentError, match=r"lines\[0\] has no 'tax'"):
        request_body({**data, "lines": [{k: v for k, v in data["lines"][0].items() if k != "tax"}]})


@pytest.mark.parametrize(("answer", "error", "reason"), [
    ({"code": "BUSY", "message": "queue full"}, TransientError, "busy"),
    ({"code": "REFUSED", "message": "buyer blocked"}, PermanentError, r"refused the invoice \(REFUSED\): buyer"),
    ({"code": "OK"}, PermanentError, "without an 'invoice' object"),
    ({"code": "OK", "invoice": {"number": "123"}}, PermanentError, "not 20 digits"),
    ({"code": "OK", "invoice": {"number": "26330000000000000001", "type": "x", "issued_at": "yesterday",
                                "buyer_name": NAME, "total": "200.00", "total_tax": "16.51"}},
     PermanentError, "malformed time or total"),
    ({"code": "OK", "invoice": {"number": "26330000000000000001", "type": "x", "buyer_name": NAME,
                                "issued_at": "2026-11-27T10:00:00+08:00", "total": "20.00", "total_tax": "1.65"}},
     PermanentError, "for 20.00 \\(tax 1.65\\); 200.00 \\(tax 16.51\\) was asked"),
])
def test_malformed_answers_are_refused_with_the_reason(answer: dict[str, Any], error: type[Exception],
                                                       reason: str) -> None:
    with pytest.raises(error, match=reason):
        issued_from_answer(answer, request_body(blue()))


def test_settings_refuse_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        TaxDemoSettings.model_validate({"kind": "tax_demo", "base_ur": "http://x"})
