"""``TaxPlatformSimulator``: the demo's stand-in tax e-invoicing platform (not a real provider).

Speaks :mod:`connectors.tax_demo.protocol`. It checks a request the way a platform would (every
field present, decimal amounts, lines adding up to the totals, a red invoice naming a blue one it
issued) and refuses a malformed one with 400 and a message naming the field; it issues each request
serial once (the same serial again answers the same invoice, another content under it is a 409);
it can be told to fail the next N requests (503) or to be down.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from aiohttp import web

from connectors.tax_demo.protocol import INVOICE_NUMBER, LINE_FIELDS, PATH
from hub.connectors.simulation import HttpSimulator

CHINA = timezone(timedelta(hours=8))
INVOICE_TYPE = "数电票(普通发票)"


class InvalidRequest(ValueError):
    """What is wrong with a request, in words the caller can act on."""


def _invalid(message: str, status: int = 400, code: str = "INVALID") -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def _amount(value: Any, where: str) -> Decimal:
    if not isinstance(value, str):
        raise InvalidRequest(f"{where} must be a decimal string, e.g. \"12.34\"")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise InvalidRequest(f"{where} is not a number: {value[:20]!r}") from None
    if not number.is_finite():
        raise InvalidRequest(f"{where} must be a finite number")
    return number


def check_request(body: Any) -> dict[str, Any]:
    """The request's parts the platform keeps, or ``InvalidRequest`` naming the first problem."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    serial = body.get("request_serial")
    if not isinstance(serial, str) or not 1 <= len(serial) <= 64:
        raise InvalidRequest("request_serial must be a string of 1-64 characters")
    kind = body.get("kind")
    if kind not in ("blue", "red"):
        raise InvalidRequest("kind must be 'blue' or 'red'")
    buyer = body.get("buyer")
    if not isinstance(buyer, dict) or not isinstance(buyer.get("name"), str) or not buyer["name"].strip():
        raise InvalidRequest("buyer.name is required")
    if not isinstance(buyer.get("user_number"), str) or not buyer["user_number"]:
        raise InvalidRequest("buyer.user_number is required")
    lines = body.get("lines")
    if not isinstance(lines, list) or not lines:
        raise InvalidRequest("lines must be a non-empty list")
    gross = tax = Decimal(0)
    for n, line in enumerate(lines):
        if not isinstance(line, dict):
            raise InvalidRequest(f"lines[{n}] must be an object")
        missing = [f for f in LINE_FIELDS if f not in line]
        if missing:
            raise InvalidRequest(f"lines[{n}].{missing[0]} is required")
        if _amount(line["quantity"], f"lines[{n}].quantity") == 0:
            raise InvalidRequest(f"lines[{n}].quantity must not be zero")
        _amount(line["unit_price"], f"lines[{n}].unit_price")
        _amount(line["tax_rate"], f"lines[{n}].tax_rate")
        gross += _amount(line["amount"], f"lines[{n}].amount")
        tax += _amount(line["tax"], f"lines[{n}].tax")
    gross += tax
    total, total_tax = _amount(body.get("total"), "total"), _amount(body.get("total_tax"), "total_tax")
    if (gross, tax) != (total, total_tax):
        raise InvalidRequest(f"the lines add up to {gross} with {tax} tax, but total is {total} with {total_tax} tax")
    if (kind == "blue") != (total > 0):
        raise InvalidRequest("a blue invoice has a positive total, a red one a negative total")
    original = body.get("original_invoice_number")
    if kind == "red" and (not isinstance(original, str) or not INVOICE_NUMBER.fullmatch(original)):
        raise InvalidRequest("a red invoice needs original_invoice_number (20 digits)")
    return {"serial": serial, "kind": kind, "buyer_name": buyer["name"], "user_number": buyer["user_number"],
            "total": total, "total_tax": total_tax, "original": original if kind == "red" else None,
            "lines": len(lines)}


class TaxPlatformSimulator(HttpSimulator):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, fail_next: int = 0) -> None:
        super().__init__(host, port)
        self.fail_next = fail_next
        self.down = False
        self.requests = 0
        self.refused: list[str] = []
        self.invoices: dict[str, dict[str, Any]] = {}
        """Issued invoices by request serial, in the order they were issued."""
        self._numbers = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [web.post(PATH, self._issue)]

    async def _issue(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.down:
            return web.Response(status=503, text="tax platform down (simulated)")
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"code": "BUSY", "message": "busy (simulated)"}, status=503)
        try:
            asked = check_request(orjson.loads(await request.read()))
        except orjson.JSONDecodeError:
            self.refused.append("body is not JSON")
            return _invalid("the body is not JSON")
        except InvalidRequest as exc:
            self.refused.append(str(exc))
            return _invalid(str(exc))
        known = self.invoices.get(asked["serial"])
        if known is not None:
            if (known["asked"]["total"], known["asked"]["user_number"]) != (asked["total"], asked["user_number"]):
                return _invalid(f"request {asked['serial']} was issued as {known['number']} with other content",
                                status=409, code="CONFLICT")
            return web.json_response({"code": "OK", "invoice": known["answer"]})
        if asked["original"] is not None and asked["original"] not in {i["number"] for i in self.invoices.values()}:
            return _invalid(f"original invoice {asked['original']} was not issued here", code="UNKNOWN_ORIGINAL")
        issued_at = datetime.now(CHINA)
        number = f"{issued_at.year % 100:02d}33{next(self._numbers):016d}"
        answer = {"number": number, "type": INVOICE_TYPE, "issued_at": issued_at.isoformat(),
                  "buyer_name": asked["buyer_name"], "total": str(asked["total"]),
                  "total_tax": str(asked["total_tax"]), "pdf_url": f"{self.url}/invoices/{number}.pdf"}
        self.invoices[asked["serial"]] = {"number": number, "asked": asked, "answer": answer}
        return web.json_response({"code": "OK", "invoice": answer})
