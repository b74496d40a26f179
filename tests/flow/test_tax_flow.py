"""Invoices through the whole hub on the production routes (``routes/payments.toml``) and the real tax
connector, on both stacks (embedded; RabbitMQ + PostgreSQL): payments → the core's ``invoice.requested``
→ the SOAP connector (zeep) → the SOAP simulator over TCP → ``invoice.issued`` stored by the core → the
holder's SMS. With the tax platform stopped for a while the breaker opens and the requests wait (the
ops API shows where and how many, and how many invoice requests are unanswered); once it is back each
invoice is issued exactly once and texted once. A refusal comes back to the core as ``invoice.failed``."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from connectors.tax.simulator import EInvoiceSimulator
from core.db.tables_payments import invoice
from core.privacy import field_context
from hub.envelope import Envelope
from hub.store.tables import dead_letter, hop, message
from tests.flow.conftest import Stack, equals, eventually
from tests.flow.payflow import (
    PHONE,
    count,
    invoice_sms,
    invoices,
    open_test_account,
    ops_routes,
    production_payment_routes,
    soap_tax,
)

NAME = "张三丰"


async def _hub(stack: Stack, platform: EInvoiceSimulator, **overrides: Any) -> Any:
    production_payment_routes(stack)
    return await stack.start_hub(connectors={**stack.settings().connectors, "tax": soap_tax(platform)}, **overrides)


def _payment(account_id: str, n: int, amount: str) -> Envelope:
    return Envelope(type="payment.received", source="test", subject=account_id, data={
        "channel": "wechat", "transaction_id": f"42000012342026030512345678{n:02d}", "out_trade_no": f"GAS-T{n:03d}",
        "account_id": account_id, "amount": amount, "paid_at": "2026-03-05T09:30:00+08:00"})


async def test_invoices_wait_while_the_tax_platform_is_stopped_and_are_issued_once_when_it_returns(
    stack: Stack, tax_platform: EInvoiceSimulator
) -> None:
    platform = tax_platform
    hub = await _hub(stack, platform, breaker={"failure_threshold": 2, "reset_after_s": 1.0})
    account_id = await open_test_account(hub, NAME, tag="tax")
    await platform.aclose()  # the tax service is down: nothing listens on its port
    amounts = ["200.00", "35.50", "88.00"]
    await hub.publisher.publish([_payment(account_id, n, a) for n, a in enumerate(amounts)])

    breaker = hub.breakers["tax"]
    await eventually(lambda: breaker.opened_count >= 1, what="the tax breaker to open", timeout=15)
    seen: dict[str, Any] = {}

    async def backlog_shown() -> bool:
        doc = await ops_routes(stack, hub)
        route = {r["name"]: r for r in doc["routes"]}["invoices-tax"]
        seen.update(route=route, invoices=doc["invoice_requests"])
        waiting = (route["depth"] or 0) + (route["delayed"] or 0) + route["in_hand"]
        return (route["breaker"]["state"] == "open" and waiting >= len(amounts)
                and doc["invoice_requests"]["waiting"] == len(amounts))

    await eventually(backlog_shown, what="the ops API to show the waiting invoices and the open breaker", timeout=10)
    route = seen["route"]
    print(f"\n[{stack.kind}] tax platform stopped: ops shows depth {route['depth']}, delayed {route['delayed']}, "
          f"in hand {route['in_hand']}, breaker {route['breaker']}, invoice requests {seen['invoices']}")
    assert seen["invoices"]["oldest_requested_at"] is not None
    await asyncio.sleep(2.0)  # down a while longer: several trial calls fail
    assert platform.invoices == {}
    assert [r.status for r in await invoices(hub)] == ["requested"] * len(amounts)
    assert invoice_sms(stack) == []
    assert await count(hub, dead_letter) == 0

    await platform.start()  # back, on the same address
    async def all_issued() -> bool:
        return [r.status for r in await invoices(hub)] == ["issued"] * len(amounts)

    await eventually(all_issued, what="every invoice issued and stored", timeout=30)
    await eventually(lambda: len(invoice_sms(stack)) == len(amounts), what="an SMS per invoice")
    await asyncio.sleep(0.5)  # anything doubled would show now

    rows = await invoices(hub)
    assert len(platform.invoices) == len(amounts)  # the platform issued each request serial once
    assert {r.request_serial: r.invoice_number for r in rows} == {
        s: i.invoice.number for s, i in platform.invoices.items()}
    assert platform.calls.count("IssueInvoice") == len(amounts), platform.calls
    assert sorted(str(r.total) for r in rows) == sorted(amounts)
    assert {r.invoice_type for r in rows} == {"digital_ordinary"}
    assert hub.privacy is not None
    for row in rows:  # the user number and name the platform printed, sealed at rest
        assert hub.privacy.cipher.decrypt(row.user_number_enc, context=field_context(invoice.name, "user_number",
                                                                                row.id)) == account_id
        assert hub.privacy.cipher.decrypt(row.user_name_enc, context=field_context(invoice.name, "user_name",
                                                                              row.id)) == NAME
    texted = invoice_sms(stack)  # each invoice's number to the holder, once
    assert sorted(s["params"]["invoice_number"] for s in texted) == sorted(r.invoice_number for r in rows)
    assert {s["phone"] for s in texted} == {PHONE}
    assert await count(hub, message, message.c.type == "invoice.issued") == len(amounts)
    assert await count(hub, message, message.c.type == "notification.requested") == len(amounts)
    assert await count(hub, dead_letter) == 0
    assert str(breaker.state) == "closed"
    after = await ops_routes(stack, hub)
    assert {r["name"]: r for r in after["routes"]}["invoices-tax"]["breaker"]["state"] == "closed"
    assert after["invoice_requests"] == {"waiting": 0, "oldest_requested_at": None}


async def test_a_refused_invoice_comes_back_to_the_core_as_failed_with_the_code(
    stack: Stack, tax_platform: EInvoiceSimulator
) -> None:
    platform = tax_platform
    hub = await _hub(stack, platform)
    account_id = await open_test_account(hub, NAME, tag="tax")
    platform.ledger.refuse_next.append(("2101", "buyer name does not match the tax id"))
    await hub.publisher.publish([_payment(account_id, 1, "120.00")])

    async def failed() -> bool:
        return [r.status for r in await invoices(hub)] == ["failed"]

    await eventually(failed, what="the invoice request marked failed", timeout=20)
    (row,) = await invoices(hub)
    assert row.failure_reason == "2101: buyer name does not match the tax id"
    assert row.invoice_number is None
    assert platform.invoices == {}
    await eventually(lambda: equals(count(hub, dead_letter, dead_letter.c.route == "invoices-tax"), 1),
                     what="the refused request dead-lettered for an operator")
    # The refusal went through the production route to the core, once, and nothing was issued or texted:
    # a refused request is not retried (it waits for an operator), so it is never issued twice either.
    await asyncio.sleep(0.5)
    assert await count(hub, hop, hop.c.route == "invoices-failed", hop.c.outcome == "delivered") == 1
    assert platform.calls == ["IssueInvoice"]
    assert invoice_sms(stack) == []
    # The same refusal again (a redelivery) changes nothing.
    async with hub.db.read() as conn:
        first = (await conn.execute(select(message.c.id, message.c.correlation_id)
                                   .where(message.c.type == "invoice.failed"))).one()
    again = Envelope(type="invoice.failed", source="test", subject=account_id, correlation_id=first.correlation_id,
                     data={"request_serial": row.request_serial, "reason": "2101: again"})
    await hub.publisher.publish([again])
    await eventually(lambda: equals(count(hub, hop, hop.c.route == "invoices-failed", hop.c.outcome == "delivered"), 2),
                     what="the second refusal delivered")
    (row,) = await invoices(hub)
    assert (row.status, row.failure_reason) == ("failed", "2101: buyer name does not match the tax id")


async def test_a_broken_answer_is_audited_and_the_retry_finds_the_invoice_instead_of_issuing_again(
    stack: Stack, tax_platform: EInvoiceSimulator
) -> None:
    platform = tax_platform
    hub = await _hub(stack, platform)
    account_id = await open_test_account(hub, NAME, tag="tax")
    platform.broken_next = 1  # the platform issues the invoice but its answer is cut short
    await hub.publisher.publish([_payment(account_id, 1, "66.60")])

    async def issued() -> bool:
        return [r.status for r in await invoices(hub)] == ["issued"]

    await eventually(issued, what="the invoice issued after the broken answer", timeout=20)
    (row,) = await invoices(hub)
    assert platform.calls == ["IssueInvoice", "QueryBySerial"]  # found by serial, not issued again
    assert list(platform.invoices) == [row.request_serial]
    assert row.invoice_number == platform.invoices[row.request_serial].invoice.number
    async with hub.db.read() as conn:
        audited = [r.error for r in await conn.execute(
            select(hop.c.error).where(hop.c.route == "in:tax", hop.c.outcome == "rejected"))]
        retried = [r.error for r in await conn.execute(
            select(hop.c.error).where(hop.c.route == "invoices-tax", hop.c.outcome == "retry"))]
    assert len(audited) == 1
    assert "unreadable SOAP envelope" in audited[0]
    assert row.request_serial in audited[0]
    assert "sha256" in audited[0]
    assert len(retried) == 1
    assert "MalformedAnswer" in retried[0]
    assert await count(hub, dead_letter) == 0
