"""The tax connector's SOAP provider (zeep, our WSDL) against the SOAP simulator over loopback HTTP:
blue invoices with 9 % VAT lines as computed by hand, red reversals, download, one invoice per request
serial through timeouts and retries, refusals as ``invoice.failed``, and hostile or broken answers
refused, audited and never a crash."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import zeep

from connectors.tax import TaxConnector, TaxSettings
from connectors.tax.ledger import OVER_REVERSED
from connectors.tax.model import MalformedAnswer, Refused
from connectors.tax.simulator import EInvoiceSimulator
from core.catalogue.messages import InvoiceFailed, InvoiceIssued
from hub.connectors.registry import ConnectorRegistry
from hub.errors import ConnectorTimeout, PermanentError, TransientError
from tests.tax_peer import (
    ACCOUNT,
    BILLION_LAUGHS,
    ENVELOPE,
    INNER,
    NAME,
    SELLER,
    RecordingContext,
    bill_request,
    envelope,
    hostile,
    payment_request,
    red_request,
)

D = Decimal


@pytest.fixture
async def platform() -> AsyncIterator[EInvoiceSimulator]:
    sim = EInvoiceSimulator()
    await sim.start()
    yield sim
    await sim.aclose()


@pytest.fixture
def context() -> RecordingContext:
    return RecordingContext()


async def build(platform: EInvoiceSimulator, context: RecordingContext, **overrides: Any) -> TaxConnector:
    raw = {"kind": "tax", "provider": "soap", "endpoint": platform.endpoint, "seller_tax_id": SELLER,
           "timeout_s": 2.0, **overrides}
    built = ConnectorRegistry().build("tax", raw, context)
    assert isinstance(built, TaxConnector)
    return built


@pytest.fixture
async def connector(platform: EInvoiceSimulator, context: RecordingContext) -> AsyncIterator[TaxConnector]:
    built = await build(platform, context)
    yield built
    await built.aclose()


async def test_a_blue_bill_invoice_carries_its_9_percent_vat_lines_and_answers_invoice_issued(
    connector: TaxConnector, platform: EInvoiceSimulator
) -> None:
    data = bill_request()
    receipt = await connector.deliver(envelope(data), "issue")

    # What the platform read from the XML inside the SOAP string, against amounts worked out by hand:
    # 60.00 gross at 9 %: net 60 / 1.09 = 55.0459 → 55.05, tax 4.95; 108.00: net 99.0826 → 99.08, tax 8.92.
    issued = platform.invoices[data["request_serial"]]
    got = [(x.name, x.tax_code, x.unit, x.quantity, x.unit_price, x.amount, x.tax_rate, x.tax)
           for x in issued.order.lines]
    assert got == [
        ("管道天然气", "1100301010000000000", "m3", D("20.000"), D("2.752500"), D("55.05"), D("0.0900"), D("4.95")),
        ("管道天然气", "1100301010000000000", "m3", D("30.000"), D("3.302667"), D("99.08"), D("0.0900"), D("8.92")),
    ]
    assert (issued.order.total, issued.order.total_tax, issued.order.net_total) == (D("168.00"), D("13.87"),
                                                                                     D("154.13"))
    assert issued.order.buyer_name == NAME
    assert not issued.order.red

    assert receipt.reply is not None
    answer = InvoiceIssued.model_validate(receipt.reply)  # what core:record_invoice_issued reads
    assert (answer.request_serial, answer.account_id, answer.user_name) == (data["request_serial"], ACCOUNT, NAME)
    assert answer.invoice_type == "digital_ordinary"
    assert answer.invoice_number == issued.invoice.number == receipt.partner_ref
    assert len(answer.invoice_number) == 20
    assert (answer.total, answer.total_tax) == (D("168.00"), D("13.87"))
    assert answer.issued_at.utcoffset() is not None
    assert platform.calls == ["IssueInvoice"]


async def test_a_red_invoice_reverses_part_of_a_blue_one_and_no_more_than_is_left(
    connector: TaxConnector, platform: EInvoiceSimulator, context: RecordingContext
) -> None:
    blue = payment_request()  # 200.00: net 183.49, tax 16.51
    receipt = await connector.deliver(envelope(blue), "issue")
    assert receipt.reply is not None
    number = receipt.reply["invoice_number"]
    red = red_request(blue, number, "50.00", "RED-01JREFUND0000000000000001")
    answer = await connector.deliver(envelope(red), "issue")
    assert answer.reply is not None
    # 50.00 back: net −50 / 1.09 = −45.8716 → −45.87, tax −4.13.
    assert (D(answer.reply["total"]), D(answer.reply["total_tax"])) == (D("-50.00"), D("-4.13"))
    stored = platform.invoices[red["request_serial"]]
    assert stored.invoice.red
    assert stored.order.original_number == number
    assert [(x.quantity, x.amount, x.tax) for x in stored.order.lines] == [(D("-1.000"), D("-45.87"), D("-4.13"))]

    too_much = red_request(blue, number, "160.00", "RED-01JREFUND0000000000000002")  # only 150.00 is left
    with pytest.raises(Refused) as refused:
        await connector.deliver(envelope(too_much), "issue")
    assert refused.value.code == OVER_REVERSED
    assert isinstance(refused.value, PermanentError)
    assert too_much["request_serial"] not in platform.invoices


async def test_download_by_number_answers_the_issued_invoice(connector: TaxConnector) -> None:
    receipt = await connector.deliver(envelope(payment_request()), "issue")
    assert receipt.partner_ref is not None
    invoice = await connector.download(receipt.partner_ref)
    assert (invoice.number, invoice.serial, invoice.user_number, invoice.total) == (
        receipt.partner_ref, "PAY-01JPAY00000000000000001", ACCOUNT, D("200.00"))
    assert invoice.pdf_url is not None
    assert invoice.pdf_url.endswith(f"/invoices/{receipt.partner_ref}.pdf")
    with pytest.raises(Refused, match="4004"):
        await connector.download("2633" + "9" * 16)


async def test_an_answer_lost_to_a_timeout_is_found_by_serial_not_issued_again(
    platform: EInvoiceSimulator, context: RecordingContext
) -> None:
    connector = await build(platform, context, timeout_s=0.3, in_call_attempts=2)
    try:
        data = payment_request()
        platform.slow_s, platform.slow_next = 1.0, 1  # issued, but the answer comes too late
        receipt = await connector.deliver(envelope(data), "issue")
        assert platform.calls == ["IssueInvoice", "QueryBySerial"]
        assert list(platform.invoices) == [data["request_serial"]]
        assert receipt.partner_ref == platform.invoices[data["request_serial"]].invoice.number
        assert connector.counts["found_by_serial"] == 1
    finally:
        await connector.aclose()


async def test_a_route_retry_after_a_timeout_asks_by_serial_first(
    platform: EInvoiceSimulator, context: RecordingContext
) -> None:
    connector = await build(platform, context, timeout_s=0.3, in_call_attempts=1)
    try:
        data = payment_request()
        first = envelope(data)
        platform.slow_s, platform.slow_next = 1.0, 1
        with pytest.raises(ConnectorTimeout):
            await connector.deliver(first, "issue")
        await asyncio.sleep(0.8)  # the platform finishes its slow answer
        retry = await connector.deliver(first.next_attempt(), "issue")  # from the delay queue
        redelivered = await connector.deliver(first, "issue")  # the broker again, same attempt number
        assert platform.calls == ["IssueInvoice", "QueryBySerial", "IssueInvoice", "QueryBySerial"]
        assert len(platform.invoices) == 1
        number = platform.invoices[data["request_serial"]].invoice.number
        assert retry.partner_ref == redelivered.partner_ref == number  # the duplicate serial was fetched
    finally:
        await connector.aclose()


async def test_transport_failures_are_transient_and_a_quick_retry_asks_by_serial(
    connector: TaxConnector, platform: EInvoiceSimulator
) -> None:
    platform.fail_next = 1  # a soap:Server fault; the in-call retry absorbs it
    receipt = await connector.deliver(envelope(payment_request()), "issue")
    assert receipt.partner_ref is not None
    assert platform.calls == ["IssueInvoice", "QueryBySerial", "IssueInvoice"]
    platform.down = True
    with pytest.raises(TransientError, match="503"):
        await connector.deliver(envelope(payment_request("PAY-01JPAY00000000000000002")), "issue")
    platform.down = False
    platform.busy_next = 5
    with pytest.raises(TransientError, match="busy"):
        await connector.deliver(envelope(payment_request("PAY-01JPAY00000000000000003")), "issue")
    await platform.aclose()  # nobody listening
    with pytest.raises(TransientError, match="unreachable"):
        await connector.deliver(envelope(payment_request("PAY-01JPAY00000000000000004")), "issue")
    assert len(platform.invoices) == 1


async def test_a_refusal_is_published_as_invoice_failed_with_the_platforms_code(
    connector: TaxConnector, platform: EInvoiceSimulator, context: RecordingContext
) -> None:
    platform.ledger.refuse_next.append(("2101", "购买方名称与税号不符"))
    request = envelope(payment_request())
    with pytest.raises(Refused) as refused:
        await connector.deliver(request, "issue")
    assert (refused.value.code, refused.value.retriable) == ("2101", False)
    ((failed, key),) = context.received
    assert (failed.type, failed.correlation_id, failed.causation_id) == (
        "invoice.failed", request.correlation_id, request.id)
    data = InvoiceFailed.model_validate(failed.data)
    assert (data.request_serial, data.reason) == ("PAY-01JPAY00000000000000001", "2101: 购买方名称与税号不符")
    assert key == "refused:PAY-01JPAY00000000000000001:2101"
    assert platform.invoices == {}


@pytest.mark.parametrize(("inject", "reason"), [
    ({"broken_next": 1}, "unreadable SOAP envelope"),
    ({"inner_next": "<interface><returnStateInfo><returnCode>0000"}, "result document we refuse: not well-formed"),
    ({"inner_next": "<answer/>"}, "not an <interface> answer"),
    ({"inner_next": "<interface><returnStateInfo><returnCode>0000</returnCode></returnStateInfo>"
                    "<Data><FPHM>123</FPHM></Data></interface>"}, "FPHM is not a 20-digit invoice number"),
])
async def test_a_broken_answer_is_a_clear_error_and_an_audit_record(
    connector: TaxConnector, platform: EInvoiceSimulator, context: RecordingContext, inject: dict[str, Any],
    reason: str
) -> None:
    for name, value in inject.items():
        setattr(platform, name, value)
    with pytest.raises(MalformedAnswer, match=reason) as caught:
        await connector.deliver(envelope(payment_request()), "issue")
    assert caught.value.retriable  # unknown whether it was issued: retried, asking by serial first
    ((audited, source, digest),) = context.rejected
    assert reason.split(":")[0] in audited
    assert "PAY-01JPAY00000000000000001" in audited
    assert source == "tax/soap"
    assert len(digest) == 64
    # The platform did issue it; the retry finds it instead of issuing a second one.
    receipt = await connector.deliver(envelope(payment_request()).next_attempt(), "issue")
    assert receipt.partner_ref == platform.invoices["PAY-01JPAY00000000000000001"].invoice.number
    assert len(platform.invoices) == 1


@pytest.mark.parametrize("where", ["envelope", "inner"])
@pytest.mark.parametrize("attack", ["billion-laughs", "external-entity"])
async def test_entity_expansion_and_external_entities_in_an_answer_are_refused(
    connector: TaxConnector, platform: EInvoiceSimulator, context: RecordingContext, where: str, attack: str,
    tmp_path: Any
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    if where == "envelope":
        platform.raw_next = hostile("soapenv:Envelope", ENVELOPE, attack, str(secret)).encode()
        expected = ("unreadable SOAP envelope: (DTDForbidden|EntitiesForbidden|TransportError: .*invalid XML: "
                    ".*(amplification|entit))")
    else:
        platform.inner_next = hostile("interface", INNER, attack, str(secret))
        expected = "declares a DTD"
    with pytest.raises(MalformedAnswer, match=expected) as caught:
        await connector.deliver(envelope(payment_request()), "issue")
    assert "lollol" not in str(caught.value)
    assert "TOP-SECRET" not in str(caught.value)
    assert len(context.rejected) == 1
    assert "TOP-SECRET" not in context.rejected[0][0]


async def test_the_simulator_is_a_soap_server_with_a_wsdl_zeep_can_load(platform: EInvoiceSimulator) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{platform.endpoint}?wsdl") as resp:
            assert resp.status == 200
            wsdl = await resp.text()
        async with http.post(platform.endpoint, data=b"<not-soap/>", headers={"Content-Type": "text/xml"}) as resp:
            assert resp.status == 500
            fault = await resp.text()
        async with http.post(platform.endpoint, data=BILLION_LAUGHS.encode(),
                             headers={"Content-Type": "text/xml"}) as resp:
            assert resp.status == 500
            laughs = await resp.text()
    assert f'location="{platform.endpoint}"' in wsdl
    assert "faultcode>soapenv:Client<" in fault
    assert "not a SOAP 1.1 envelope" in fault
    assert "declares a DTD" in laughs
    assert platform.calls == []

    def load() -> list[str]:  # zeep's own loader (requests), as a third party would use it
        client = zeep.Client(f"{platform.endpoint}?wsdl")
        return sorted(client.service._binding._operations)

    assert await asyncio.to_thread(load) == ["DownloadInvoice", "IssueInvoice", "QueryBySerial"]


def test_settings_need_a_seller_and_refuse_unknown_keys_and_rest_needs_its_secret() -> None:
    with pytest.raises(ValueError, match="seller_tax_id"):
        TaxSettings.model_validate({"kind": "tax"})
    with pytest.raises(ValueError, match="extra"):
        TaxSettings.model_validate({"kind": "tax", "seller_tax_id": SELLER, "endpont": "http://x"})
    with pytest.raises(ValueError, match="app_key and app_secret"):
        TaxSettings.model_validate({"kind": "tax", "seller_tax_id": SELLER, "provider": "rest", "app_key": "k"})
    with pytest.raises(ValueError, match="provider"):
        TaxSettings.model_validate({"kind": "tax", "seller_tax_id": SELLER, "provider": "fax"})
    assert "tax" in ConnectorRegistry().kinds()


async def test_a_wrong_address_is_permanent_and_a_refused_query_is_not_an_invoice_refusal(
    platform: EInvoiceSimulator, context: RecordingContext
) -> None:
    wrong = await build(platform, context, endpoint=f"{platform.url}/no-such-service")
    try:
        with pytest.raises(PermanentError, match="404") as caught:
            await wrong.deliver(envelope(payment_request()), "issue")
        assert not isinstance(caught.value, Refused)
    finally:
        await wrong.aclose()
    connector = await build(platform, context)
    try:
        # A retry asks by serial first; the platform refuses the query (not the invoice): nothing is
        # issued, no invoice.failed goes to the core, the request stops for an operator.
        original = platform._answer

        def refuse_queries(operation: str, inner: Any) -> str:
            if operation == "QueryBySerial":
                return ("<interface><returnStateInfo><returnCode>2999</returnCode>"
                        "<returnMessage>query not enabled for this appId</returnMessage></returnStateInfo></interface>")
            return original(operation, inner)

        platform._answer = refuse_queries  # type: ignore[method-assign]
        with pytest.raises(PermanentError, match=r"by serial was refused \(2999\)") as refused:
            await connector.deliver(envelope(payment_request()).next_attempt(), "issue")
        assert not isinstance(refused.value, Refused)
        assert platform.calls == ["QueryBySerial"]
        assert context.received == []
        assert platform.invoices == {}
    finally:
        await connector.aclose()
