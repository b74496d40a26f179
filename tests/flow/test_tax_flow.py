"""Invoices through the whole hub and the real tax connector, on both stacks (embedded; RabbitMQ +
PostgreSQL): payments → the core's ``invoice.requested`` → the SOAP connector (zeep) → the SOAP
simulator over TCP → ``invoice.issued`` stored by the core. With the tax platform down for a while
the breaker opens and the requests wait (the ops page shows where and how many); once it is back each
invoice is issued exactly once. A refusal comes back to the core as ``invoice.failed``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from connectors.tax.simulator import EInvoiceSimulator
from core.accounts import CustomerIn, PremisesIn, id_check_digit, open_account
from core.db.tables_payments import invoice
from core.privacy import field_context
from hub.envelope import Envelope
from hub.store.tables import dead_letter, hop, message
from tests.flow.conftest import OPS_TOKEN, Stack, eventually
from tests.tax_peer import SELLER

AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}
NAME = "张三丰"
ROUTES = """
[[route]]
name = "payments"
from = "payment.received"
to = "core:record_payment"
retry = { max_attempts = 3, backoff = ["100ms"] }

[[route]]
name = "tax-issue"
from = "invoice.requested"
to = "tax:issue"
reply = "invoice.issued"
retry = { max_attempts = 60, backoff = ["200ms"] }

[[route]]
name = "tax-issued"
from = "invoice.issued"
to = "core:record_invoice_issued"

[[route]]
name = "tax-failed"
from = "invoice.failed"
to = "core:record_invoice_failed"
"""


@pytest.fixture
async def platform() -> AsyncIterator[EInvoiceSimulator]:
    sim = EInvoiceSimulator()
    await sim.start()
    yield sim
    await sim.aclose()


async def _hub(stack: Stack, platform: EInvoiceSimulator, **overrides: Any) -> Any:
    (stack.routes_dir / "tax.toml").write_text(ROUTES)
    connectors = {**stack.settings().connectors, "tax": {
        "kind": "tax", "provider": "soap", "endpoint": platform.endpoint, "seller_tax_id": SELLER,
        "timeout_s": 2.0, "in_call_attempts": 1}}
    return await stack.start_hub(connectors=connectors, **overrides)


async def _account(hub: Any) -> str:
    assert hub.privacy is not None
    async with hub.db.begin() as conn:
        view = await open_account(
            conn, hub.privacy, f"tax-{time.monotonic_ns()}",
            CustomerIn(name=NAME, phone="13912345678",
                       id_number="33062119850615004" + id_check_digit("33062119850615004")),
            PremisesIn(address="绍兴市越城区解放北路2号", district="yuecheng", lat=30.0, lon=120.58),
            "residential", "postpaid")
    return view.account_id


def _payment(account_id: str, n: int, amount: str) -> Envelope:
    return Envelope(type="payment.received", source="test", subject=account_id, data={
        "channel": "wechat", "transaction_id": f"42000012342026030512345678{n:02d}", "out_trade_no": f"GAS-T{n:03d}",
        "account_id": account_id, "amount": amount, "paid_at": "2026-03-05T09:30:00+08:00"})


async def _invoices(hub: Any) -> list[Any]:
    async with hub.db.read() as conn:
        return list((await conn.execute(select(invoice).order_by(invoice.c.request_serial))).all())


async def _count(hub: Any, table: Any, *where: Any) -> int:
    async with hub.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def _route(stack: Stack, hub: Any, name: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(headers=AUTH) as http, http.get(f"{stack.base_url(hub)}/ops/routes") as resp:
        assert resp.status == 200
        return {r["name"]: r for r in (await resp.json())["routes"]}[name]


async def test_invoices_wait_while_the_tax_platform_is_down_and_are_issued_once_when_it_returns(
    stack: Stack, platform: EInvoiceSimulator
) -> None:
    hub = await _hub(stack, platform, breaker={"failure_threshold": 2, "reset_after_s": 1.0})
    account_id = await _account(hub)
    platform.down = True
    amounts = ["200.00", "35.50", "88.00"]
    await hub.publisher.publish([_payment(account_id, n, a) for n, a in enumerate(amounts)])

    breaker = hub.breakers["tax"]
    await eventually(lambda: _true(breaker.opened_count >= 1), what="the tax breaker to open", timeout=15)
    seen: dict[str, Any] = {}

    async def backlog_shown() -> bool:
        route = await _route(stack, hub, "tax-issue")
        seen.update(route)
        waiting = (route["depth"] or 0) + (route["delayed"] or 0) + route["in_hand"]
        return route["breaker"]["state"] != "closed" and waiting >= len(amounts)

    await eventually(backlog_shown, what="the ops page to show the waiting invoices and the breaker", timeout=10)
    print(f"\n[{stack.kind}] tax platform down: ops shows depth {seen['depth']}, delayed {seen['delayed']}, "
          f"in hand {seen['in_hand']}, breaker {seen['breaker']}")
    await asyncio.sleep(2.0)  # down a while longer: several trial calls fail
    assert platform.invoices == {}
    assert [r.status for r in await _invoices(hub)] == ["requested"] * len(amounts)
    assert await _count(hub, dead_letter) == 0
    calls_while_down = len(platform.calls)

    platform.down = False
    async def all_issued() -> bool:
        return [r.status for r in await _invoices(hub)] == ["issued"] * len(amounts)

    await eventually(all_issued, what="every invoice issued and stored", timeout=30)
    await asyncio.sleep(0.5)  # anything doubled would show now

    rows = await _invoices(hub)
    assert len(platform.invoices) == len(amounts)  # the platform issued each request serial once
    assert {r.request_serial: r.invoice_number for r in rows} == {
        s: i.invoice.number for s, i in platform.invoices.items()}
    issue_calls_after = platform.calls[calls_while_down:].count("IssueInvoice")
    assert issue_calls_after == len(amounts), platform.calls[calls_while_down:]
    assert sorted(str(r.total) for r in rows) == sorted(amounts)
    assert {r.invoice_type for r in rows} == {"digital_ordinary"}
    assert hub.privacy is not None
    for row in rows:  # the user number and name the platform printed, sealed at rest
        assert hub.privacy.cipher.decrypt(row.user_number_enc, context=field_context(invoice.name, "user_number",
                                                                                row.id)) == account_id
        assert hub.privacy.cipher.decrypt(row.user_name_enc, context=field_context(invoice.name, "user_name",
                                                                              row.id)) == NAME
    assert await _count(hub, message, message.c.type == "invoice.issued") == len(amounts)
    assert await _count(hub, dead_letter) == 0
    assert str(breaker.state) == "closed"
    assert (await _route(stack, hub, "tax-issue"))["breaker"]["state"] == "closed"


async def test_a_refused_invoice_comes_back_to_the_core_as_failed_with_the_code(
    stack: Stack, platform: EInvoiceSimulator
) -> None:
    hub = await _hub(stack, platform)
    account_id = await _account(hub)
    platform.ledger.refuse_next.append(("2101", "buyer name does not match the tax id"))
    await hub.publisher.publish([_payment(account_id, 1, "120.00")])

    async def failed() -> bool:
        return [r.status for r in await _invoices(hub)] == ["failed"]

    await eventually(failed, what="the invoice request marked failed", timeout=20)
    (row,) = await _invoices(hub)
    assert row.failure_reason == "2101: buyer name does not match the tax id"
    assert row.invoice_number is None
    assert platform.invoices == {}
    await eventually(lambda: _eq(_count(hub, dead_letter, dead_letter.c.route == "tax-issue"), 1),
                     what="the refused request dead-lettered for an operator")


async def test_a_broken_answer_is_audited_and_the_retry_finds_the_invoice_instead_of_issuing_again(
    stack: Stack, platform: EInvoiceSimulator
) -> None:
    hub = await _hub(stack, platform)
    account_id = await _account(hub)
    platform.broken_next = 1  # the platform issues the invoice but its answer is cut short
    await hub.publisher.publish([_payment(account_id, 1, "66.60")])

    async def issued() -> bool:
        return [r.status for r in await _invoices(hub)] == ["issued"]

    await eventually(issued, what="the invoice issued after the broken answer", timeout=20)
    (row,) = await _invoices(hub)
    assert platform.calls == ["IssueInvoice", "QueryBySerial"]  # found by serial, not issued again
    assert list(platform.invoices) == [row.request_serial]
    assert row.invoice_number == platform.invoices[row.request_serial].invoice.number
    async with hub.db.read() as conn:
        audited = [r.error for r in await conn.execute(
            select(hop.c.error).where(hop.c.route == "in:tax", hop.c.outcome == "rejected"))]
        retried = [r.error for r in await conn.execute(
            select(hop.c.error).where(hop.c.route == "tax-issue", hop.c.outcome == "retry"))]
    assert len(audited) == 1
    assert "unreadable SOAP envelope" in audited[0]
    assert row.request_serial in audited[0]
    assert "sha256" in audited[0]
    assert len(retried) == 1
    assert "MalformedAnswer" in retried[0]
    assert await _count(hub, dead_letter) == 0


async def _true(value: bool) -> bool:
    return value


async def _eq(value: Any, expected: Any) -> bool:
    return (await value) == expected
