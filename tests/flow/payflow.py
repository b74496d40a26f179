"""What the payment and invoice flow tests share: the production payment routes (``routes/payments.toml``)
at test speed, the SOAP tax connector pointed at its simulator, an account to pay into, row counts,
and what the ops API says about a route."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from sqlalchemy import func, select

from connectors.tax.simulator import EInvoiceSimulator
from core.db.tables_payments import invoice
from hub.app import Hub
from tests.flow.conftest import OPS_TOKEN, REPO, Stack
from tests.flow.payment_checks import postpaid_account
from tests.flow.tax_stand_in import PAYMENT_ROUTES, registry
from tests.tax_peer import SELLER

AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}
PHONE = "13912345678"
INVOICE_ROUTES = ("payments", "invoices-tax", "invoices-issued", "invoices-failed")


def production_payment_routes(stack: Stack, *, backoff: str = "200ms") -> None:
    """``routes/payments.toml`` as shipped, with every retry's waits shortened to ``backoff`` (the attempts
    stay as they are). The stack's own routes take notification.requested to the SMS connector, as
    ``routes/notifications.toml`` does."""
    text = (REPO / "routes" / "payments.toml").read_text(encoding="utf-8")
    fast, n = re.subn(r"backoff = \[[^\]]*\]", f'backoff = ["{backoff}"]', text)
    assert n == len(INVOICE_ROUTES), "every production payment route has a retry policy"
    (stack.routes_dir / "payments.toml").write_text(fast, encoding="utf-8")


def soap_tax(platform: EInvoiceSimulator, **overrides: Any) -> dict[str, Any]:
    """The ``tax`` connector's settings: SOAP (zeep) to ``platform``."""
    return {"kind": "tax", "provider": "soap", "endpoint": platform.endpoint, "seller_tax_id": SELLER,
            "timeout_s": 2.0, "in_call_attempts": 1, **overrides}


async def payment_hub(stack: Stack, name: str, settings: dict[str, Any], *, routes: str = PAYMENT_ROUTES) -> Any:
    """A hub with ``routes`` as its payment routes, the tax stand-in as ``tax`` and a platform's connector
    ``name`` configured with ``settings``."""
    (stack.routes_dir / "payments.toml").write_text(routes)
    connectors = {**stack.settings().connectors, "tax": {"kind": "tax_stand_in"}, name: settings}
    return await stack.start_hub(registry=registry(), connectors=connectors)


async def open_test_account(hub: Hub, name: str, *, tag: str = "acct") -> str:
    """A postpaid account with no bill (what it is paid is kept as credit), holder ``name``, phone ``PHONE``."""
    return await postpaid_account(hub, tag, name=name, phone=PHONE, address="绍兴市越城区解放北路1号")


async def count(hub: Hub, table: Any, *where: Any) -> int:
    async with hub.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def invoices(hub: Hub) -> list[Any]:
    async with hub.db.read() as conn:
        return list((await conn.execute(select(invoice).order_by(invoice.c.request_serial))).all())


async def ops_routes(stack: Stack, hub: Hub) -> dict[str, Any]:
    """``GET /ops/routes``: what the ops page draws."""
    async with aiohttp.ClientSession(headers=AUTH) as http, http.get(f"{stack.base_url(hub)}/ops/routes") as resp:
        assert resp.status == 200
        doc: dict[str, Any] = await resp.json()
    return doc


def invoice_sms(stack: Stack) -> list[dict[str, Any]]:
    """The invoice SMS the gateway simulator was asked to send (one per ``out_id``)."""
    return [s for s in stack.sms.sent if s["template"] == "SMS_INVOICE"]
