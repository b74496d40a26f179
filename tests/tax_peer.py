"""What the tax connector's tests share: invoice requests built the way the core builds them, and a
connector context that records what an outbound connector hands the hub."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from aiohttp import web

from core.catalogue.messages import InvoiceKind, InvoiceRequested
from core.payments.invoicing import bill_lines, payment_lines, red_lines, totals
from hub.connectors.contract import ReceiveResult
from hub.envelope import Envelope

NAME = "王小明"
ACCOUNT = "01JACCOUNT0000000000000001"
TAX_CODE = "1100301010000000000"
SELLER = "91330600MA2B000000"


class RecordingContext:
    """An outbound connector's context: what it publishes (``invoice.failed``) and what it rejects."""

    name = "tax"

    def __init__(self) -> None:
        self.received: list[tuple[Envelope, str | None]] = []
        self.rejected: list[tuple[str, str, str]] = []
        """(reason, source, sha256 of the body)."""

    async def receive(self, envelope: Envelope, *, partner_key: str | None = None) -> ReceiveResult:
        duplicate = any(key == partner_key for _, key in self.received)
        if not duplicate:
            self.received.append((envelope, partner_key))
        return ReceiveResult(envelope.id, duplicate=duplicate)

    async def reject(self, reason: str, *, body: bytes, source: str) -> None:
        self.rejected.append((reason, source, hashlib.sha256(body).hexdigest()))

    async def claim_once(self, key: str) -> bool:
        raise AssertionError("the tax connector claims nothing")

    def add_routes(self, routes: Sequence[web.RouteDef]) -> None:
        raise AssertionError("the tax connector mounts no endpoint")


def bill_request(serial: str = "BILL-01JBILL0000000000000001") -> dict[str, Any]:
    """A bill of 168.00: 20 m³ for 60.00 and 30 m³ for 108.00, both at 9 % VAT."""
    lines = bill_lines([(Decimal("20.000"), Decimal("60.00"), Decimal("0.0900")),
                        (Decimal("30.000"), Decimal("108.00"), Decimal("0.0900"))],
                       name="管道天然气", tax_code=TAX_CODE)
    total, tax = totals(lines)
    return InvoiceRequested(request_serial=serial, account_id=ACCOUNT, user_name=NAME, bill_ref="01JBILL",
                            lines=lines, total=total, total_tax=tax).model_dump(mode="json")


def payment_request(serial: str = "PAY-01JPAY00000000000000001", amount: str = "200.00") -> dict[str, Any]:
    lines = payment_lines(Decimal(amount), name="管道天然气", tax_code=TAX_CODE, vat_rate=Decimal("0.09"))
    total, tax = totals(lines)
    return InvoiceRequested(request_serial=serial, account_id=ACCOUNT, user_name=NAME, payment_ref="01JPAY",
                            lines=lines, total=total, total_tax=tax).model_dump(mode="json")


def red_request(blue: dict[str, Any], blue_number: str, refunded: str, serial: str) -> dict[str, Any]:
    reds = red_lines(InvoiceRequested.model_validate(blue).lines[0], Decimal(refunded))
    total, tax = totals(reds)
    return InvoiceRequested(request_serial=serial, kind=InvoiceKind.RED, account_id=ACCOUNT, user_name=NAME,
                            payment_ref="01JPAY", lines=reds, total=total, total_tax=tax,
                            original_invoice_number=blue_number).model_dump(mode="json")


def envelope(data: dict[str, Any]) -> Envelope:
    return Envelope(type="invoice.requested", source="core", subject=data["account_id"], data=data)


LAUGHS = """ <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">"""


def hostile(root: str, body: str, attack: str, secret_path: str = "/etc/passwd") -> str:
    """``body`` (with ``{ref}`` where the entity goes) under a DOCTYPE for ``root`` declaring a billion
    laughs (``attack="billion-laughs"``) or an external entity reading ``secret_path``."""
    if attack == "billion-laughs":
        entities, ref = LAUGHS, "&lol9;"
    else:
        entities, ref = f' <!ENTITY xxe SYSTEM "file://{secret_path}">', "&xxe;"
    return f'<?xml version="1.0"?>\n<!DOCTYPE {root} [\n{entities}\n]>\n' + body.replace("{ref}", ref)


INNER = "<interface><returnStateInfo><returnCode>0000</returnCode><returnMessage>{ref}</returnMessage>" \
        "</returnStateInfo></interface>"
ENVELOPE = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
            '<tns:IssueInvoiceResponse xmlns:tns="urn:gashub:einvoice:1"><tns:out>{ref}</tns:out>'
            "</tns:IssueInvoiceResponse></soapenv:Body></soapenv:Envelope>")
BILLION_LAUGHS = hostile("interface", INNER, "billion-laughs")
