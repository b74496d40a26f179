"""The simulated tax platform's JSON: the request the connector sends and the answer it reads.

Request (``POST /api/v1/invoices``)::

    {"request_serial": "PAY-01J…", "kind": "blue" | "red", "original_invoice_number": null | "20 digits",
     "buyer": {"name": "…", "tax_id": null, "user_number": "<account id>"},
     "lines": [{"name", "tax_code", "unit", "quantity", "unit_price", "amount", "tax_rate", "tax"}, …],
     "total": "200.00", "total_tax": "16.51"}

Numbers travel as decimal strings. Answer: ``{"code": "OK", "invoice": {"number", "type", "issued_at",
"buyer_name", "total", "total_tax", "pdf_url"}}``; ``code`` ``BUSY`` means try later, any other code
is a refusal with a ``message``. The request serial is the platform's idempotency key: the same
serial again answers the same invoice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from hub.errors import PermanentError, TransientError

PATH = "/api/v1/invoices"
INVOICE_NUMBER = re.compile(r"[0-9]{20}", re.ASCII)
LINE_FIELDS = ("name", "tax_code", "unit", "quantity", "unit_price", "amount", "tax_rate", "tax")
RETRY_CODES = frozenset({"BUSY"})


def request_body(data: Mapping[str, Any]) -> dict[str, Any]:
    """The platform's request for an ``invoice.requested`` message's data. A ``PermanentError``
    names the first field missing (the message cannot become an invoice however often it is retried)."""
    for name in ("request_serial", "account_id", "user_name", "lines", "total", "total_tax"):
        if data.get(name) in (None, "", []):
            raise PermanentError(f"invoice.requested has no {name!r}: the tax platform cannot issue it")
    lines = data["lines"]
    if not isinstance(lines, list) or not all(isinstance(line, Mapping) for line in lines):
        raise PermanentError("invoice.requested 'lines' must be a list of line objects")
    for n, line in enumerate(lines):
        missing = [f for f in LINE_FIELDS if f not in line]
        if missing:
            raise PermanentError(f"invoice.requested lines[{n}] has no {missing[0]!r}")
    return {
        "request_serial": str(data["request_serial"]),
        "kind": str(data.get("kind") or "blue"),
        "original_invoice_number": data.get("original_invoice_number"),
        "buyer": {"name": str(data["user_name"]), "tax_id": data.get("buyer_tax_id"),
                  "user_number": str(data["account_id"])},
        "lines": [{f: str(line[f]) for f in LINE_FIELDS} for line in lines],
        "total": str(data["total"]),
        "total_tax": str(data["total_tax"]),
    }


def issued_from_answer(answer: Mapping[str, Any], asked: Mapping[str, Any]) -> dict[str, Any]:
    """``invoice.issued`` data from the platform's answer to ``asked`` (the request body).

    ``BUSY`` raises ``TransientError``; any other refusal, or an answer without what an issued
    invoice needs (a 20-digit number, a type, a time, totals equal to what was asked), raises
    ``PermanentError`` saying what is wrong."""
    code = str(answer.get("code", ""))
    if code in RETRY_CODES:
        raise TransientError(f"tax platform busy ({code}): {str(answer.get('message', ''))[:200]}")
    if code != "OK":
        raise PermanentError(f"tax platform refused the invoice ({code or 'no code'}): "
                             f"{str(answer.get('message', ''))[:300]}")
    invoice = answer.get("invoice")
    if not isinstance(invoice, Mapping):
        raise PermanentError("tax platform answered OK without an 'invoice' object")
    number = invoice.get("number")
    if not isinstance(number, str) or not INVOICE_NUMBER.fullmatch(number):
        raise PermanentError(f"tax platform answered an invoice number that is not 20 digits: {str(number)[:40]!r}")
    for name in ("type", "issued_at", "buyer_name"):
        if not isinstance(invoice.get(name), str) or not invoice[name]:
            raise PermanentError(f"tax platform answered invoice {number} without {name!r}")
    try:
        datetime.fromisoformat(invoice["issued_at"])
        totals = (_decimal(invoice.get("total")), _decimal(invoice.get("total_tax")))
    except (ValueError, InvalidOperation, TypeError):
        raise PermanentError(f"tax platform answered invoice {number} with a malformed time or total") from None
    if totals != (_decimal(asked["total"]), _decimal(asked["total_tax"])):
        raise PermanentError(f"tax platform issued invoice {number} for {totals[0]} (tax {totals[1]}); "
                             f"{asked['total']} (tax {asked['total_tax']}) was asked")
    return {
        "request_serial": asked["request_serial"], "account_id": asked["buyer"]["user_number"],
        "user_name": invoice["buyer_name"], "invoice_type": invoice["type"], "invoice_number": number,
        "issued_at": invoice["issued_at"], "total": str(totals[0]), "total_tax": str(totals[1]),
        "pdf_url": invoice.get("pdf_url") if isinstance(invoice.get("pdf_url"), str) else None,
    }


def _decimal(value: Any) -> Decimal:
    if not isinstance(value, str | int):
        raise TypeError("not a decimal string")
    result = Decimal(value)
    if not result.is_finite():
        raise ValueError("not a finite number")
    return result
