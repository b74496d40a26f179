"""Bills, payments and invoices in /api/v1 (read-only: the core's handlers write them).

* ``GET /bills`` (by account, bill status, payment status, period; paged oldest period first) and
  ``GET /bills/{id}`` with its lines, the money allocated to it and its invoices. A bill's ``paid`` is
  the sum of its allocations (refunds write negative ones), ``outstanding = total − paid``.
* ``GET /payments`` (by account, status, channel, time paid; paged) and ``GET /payments/{id}`` with
  where its money went: bills, credit still unused, prepaid top-ups, refunds, invoices.
* ``GET /invoices`` (by account, status, kind, scope; paged) and ``GET /invoices/{id}`` with its lines.
  The user name is masked for every caller (``张**``, stored masked beside the encrypted name, so a
  listing decrypts nothing); ``?reveal=true`` gives the name and the user number in clear to roles
  with ``personal_data`` read, audited (see :mod:`core.api.reveal`), and needs the core's keys (503
  without them).

Errors: 400 a bad query parameter (named), 401/403 as everywhere, 404 no such bill, payment or invoice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.api.accounts import NO_KEYS, PRIVACY
from core.api.framework import API, Endpoint, cursor_time, decode_cursor, encode_cursor, parse_query, require
from core.api.models import Query, RevealQuery
from core.api.permissions import Action, Resource
from core.api.problems import ProblemError, json_response
from core.api.reveal import read_revealable
from core.db.tables_billing import bill, bill_line, bill_meter
from core.db.tables_payments import (
    allocation,
    credit,
    invoice,
    invoice_line,
    payment,
    prepaid_entry,
    refund,
)
from core.privacy import field_context

BillStatus = Literal["issued", "cancelled"]
PaymentState = Literal["unpaid", "partly_paid", "paid"]
PaymentStatus = Literal["received", "partly_refunded", "refunded", "reversed"]
InvoiceStatus = Literal["requested", "issued", "failed", "reversed"]

_ID = Field(default=None, min_length=1, max_length=32)
_LIMIT = Field(default=100, ge=1, le=1000)
_CURSOR = Field(default=None, max_length=500, description="Opaque: the next_cursor of a previous page.")


# --- models ------------------------------------------------------------------------------------------


class BillsQuery(Query):
    account_id: str | None = _ID
    status: BillStatus | None = None
    payment_status: PaymentState | None = None
    period_from: date | None = Field(default=None, description="Bills whose period starts on or after this day.")
    period_to: date | None = Field(default=None, description="Bills whose period ends on or before this day "
                                                             "(period ends are exclusive).")
    limit: int = _LIMIT
    cursor: str | None = _CURSOR


class Bill(BaseModel):
    id: str
    account_id: str
    meter_id: str
    period_start: date
    period_end: date = Field(description="Exclusive: the first day not billed.")
    category: str
    volume_m3: Decimal
    total: Decimal = Field(description="VAT included.")
    net_total: Decimal
    tax_total: Decimal
    status: str
    issued_at: datetime
    paid: Decimal
    outstanding: Decimal
    payment_status: PaymentState


class BillPage(BaseModel):
    items: list[Bill]
    next_cursor: str | None


class BillLine(BaseModel):
    line_no: int
    tier: int
    tariff_version: str
    start: date
    end: date
    volume_m3: Decimal
    unit_price: Decimal
    amount: Decimal
    vat_rate: Decimal


class BillMeter(BaseModel):
    meter_id: str
    reading_start_m3: Decimal
    reading_end_m3: Decimal
    volume_m3: Decimal
    estimated: bool


class Allocation(BaseModel):
    payment_id: str
    bill_id: str
    kind: str = Field(description="payment, credit (an earlier overpayment) or reversal (a refund, negative).")
    amount: Decimal
    at: datetime


class InvoiceRef(BaseModel):
    id: str
    request_serial: str
    kind: str
    status: str
    invoice_number: str | None
    total: Decimal


class BillDetail(Bill):
    lines: list[BillLine]
    meters: list[BillMeter] = Field(description=(
        "For an account with several meters: each meter's registers and volume (the bill prices their sum; "
        "its meter_id is the first meter and its registers the sums). Empty for a one-meter account."))
    allocations: list[Allocation]
    invoices: list[InvoiceRef]


class PaymentsQuery(Query):
    account_id: str | None = _ID
    status: PaymentStatus | None = None
    channel: str | None = Field(default=None, min_length=1, max_length=16)
    since: AwareDatetime | None = Field(default=None, description="Paid at or after.")
    until: AwareDatetime | None = Field(default=None, description="Paid before.")
    limit: int = _LIMIT
    cursor: str | None = _CURSOR


class Payment(BaseModel):
    id: str
    channel: str
    transaction_id: str
    out_trade_no: str
    account_id: str
    amount: Decimal
    refunded: Decimal
    currency: str
    paid_at: datetime
    status: str
    recorded_at: datetime


class PaymentPage(BaseModel):
    items: list[Payment]
    next_cursor: str | None


class PrepaidEntry(BaseModel):
    meter_id: str
    kind: str
    amount: Decimal
    balance_after: Decimal
    at: datetime


class Refund(BaseModel):
    refund_id: str
    kind: str
    amount: Decimal
    from_credit: Decimal
    from_bills: Decimal
    from_prepaid: Decimal
    refunded_at: datetime
    red_serial: str | None


class PaymentDetail(Payment):
    allocations: list[Allocation]
    credit_unused: Decimal = Field(description="The part of this payment kept as credit and not yet spent.")
    prepaid: list[PrepaidEntry]
    refunds: list[Refund]
    invoices: list[InvoiceRef]


class InvoicesQuery(Query):
    account_id: str | None = _ID
    status: InvoiceStatus | None = None
    kind: Literal["blue", "red"] | None = None
    scope: Literal["payment", "bill"] | None = None
    reveal: bool = Field(default=False, description="User name and number in clear (admin, customer_service); "
                                                    "audited.")
    limit: int = _LIMIT
    cursor: str | None = _CURSOR


class Invoice(BaseModel):
    id: str
    request_serial: str
    kind: str
    scope: str
    reference_id: str = Field(description="The payment or bill invoiced.")
    account_id: str
    status: str
    masked: bool
    user_name: str = Field(description="Masked (张**) unless revealed.")
    user_number: str | None = Field(description="Only when revealed (and issued).")
    invoice_type: str | None
    invoice_number: str | None
    total: Decimal = Field(description="价税合计: VAT included; negative on a red invoice.")
    total_tax: Decimal
    original_invoice_id: str | None
    failure_reason: str | None
    pdf_url: str | None
    requested_at: datetime
    issued_at: datetime | None


class InvoicePage(BaseModel):
    items: list[Invoice]
    next_cursor: str | None


class InvoiceLine(BaseModel):
    line_no: int
    name: str
    tax_code: str
    unit: str
    quantity: Decimal
    unit_price: Decimal = Field(description="VAT excluded.")
    amount: Decimal = Field(description="金额: VAT excluded.")
    tax_rate: Decimal
    tax: Decimal


class InvoiceDetail(Invoice):
    lines: list[InvoiceLine]


# --- helpers -----------------------------------------------------------------------------------------


def _page(rows: list[dict[str, Any]], limit: int, key: tuple[str, str]) -> tuple[list[dict[str, Any]], str | None]:
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return rows, encode_cursor(last[key[0]].isoformat(), last[key[1]]) if more and last else None


def _after(cursor: str | None, at: Any, ident: Any, parse: Callable[[Any], Any]) -> Any:
    """Rows after the cursor's ``(at, id)``, or ``None`` without a cursor."""
    if cursor is None:
        return None
    when, last = decode_cursor(cursor, 2)
    value = parse(when)
    return or_(at > value, and_(at == value, ident > str(last)))


def _cursor_day(value: Any) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ProblemError(400, "Bad parameter", "The query parameter 'cursor' is damaged; start again without it.",
                           parameter="cursor") from None


def _not_found(what: str, ident: str, listing: str) -> ProblemError:
    return ProblemError(404, "Not found", f"There is no {what} '{ident[:40]}'; GET /api/v1/{listing} lists them.")


def _paid_of_bill() -> Any:
    return (select(func.coalesce(func.sum(allocation.c.amount), 0)).where(allocation.c.bill_id == bill.c.id)
            .scalar_subquery())


def _bill_out(row: Any) -> dict[str, Any]:
    paid = Decimal(row["paid"] or 0).quantize(Decimal("0.01"))
    total = Decimal(row["total"])
    state: PaymentState = "paid" if paid >= total else ("partly_paid" if paid > 0 else "unpaid")
    return {**row, "issued_at": row["created_at"], "paid": paid, "outstanding": total - paid, "payment_status": state}


async def _invoice_refs(conn: AsyncConnection, scope: str, reference_ids: list[str]) -> list[dict[str, Any]]:
    stmt = (select(invoice.c.id, invoice.c.request_serial, invoice.c.kind, invoice.c.status, invoice.c.invoice_number,
                   invoice.c.total)
            .where(invoice.c.scope == scope, invoice.c.reference_id.in_(reference_ids))
            .order_by(invoice.c.requested_at, invoice.c.id))
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


def _allocations(rows: Any) -> list[dict[str, Any]]:
    return [{"payment_id": r.payment_id, "bill_id": r.bill_id, "kind": r.kind, "amount": r.amount,
             "at": r.created_at} for r in rows]


# --- bills -------------------------------------------------------------------------------------------


@require(Resource.BILLS, Action.READ)
async def list_bills(request: web.Request) -> web.StreamResponse:
    q = parse_query(request, BillsQuery)
    paid = _paid_of_bill()
    stmt = select(bill, paid.label("paid")).order_by(bill.c.period_start, bill.c.id).limit(q.limit + 1)
    for condition in (
        bill.c.account_id == q.account_id if q.account_id else None,
        bill.c.status == q.status if q.status else None,
        bill.c.period_start >= q.period_from if q.period_from else None,
        bill.c.period_end <= q.period_to if q.period_to else None,
        {"unpaid": paid <= 0, "partly_paid": and_(paid > 0, paid < bill.c.total), "paid": paid >= bill.c.total}[
            q.payment_status] if q.payment_status else None,
        _after(q.cursor, bill.c.period_start, bill.c.id, _cursor_day),
    ):
        if condition is not None:
            stmt = stmt.where(condition)
    async with request.app[API].engine.connect() as conn:
        rows = [_bill_out(dict(r)) for r in (await conn.execute(stmt)).mappings()]
    items, nxt = _page(rows, q.limit, ("period_start", "id"))
    return json_response(BillPage.model_validate({"items": items, "next_cursor": nxt}).model_dump(mode="json"))


@require(Resource.BILLS, Action.READ)
async def get_bill(request: web.Request) -> web.StreamResponse:
    bill_id = request.match_info["id"]
    async with request.app[API].engine.connect() as conn:
        row = (await conn.execute(select(bill, _paid_of_bill().label("paid")).where(bill.c.id == bill_id))
               ).mappings().first()
        if row is None:
            raise _not_found("bill", bill_id, "bills")
        lines = [dict(r) for r in (await conn.execute(
            select(bill_line).where(bill_line.c.bill_id == bill_id).order_by(bill_line.c.line_no))).mappings()]
        meters = [dict(r) for r in (await conn.execute(
            select(bill_meter).where(bill_meter.c.bill_id == bill_id).order_by(bill_meter.c.meter_id))).mappings()]
        shares = _allocations(await conn.execute(
            select(allocation).where(allocation.c.bill_id == bill_id).order_by(allocation.c.created_at,
                                                                                allocation.c.id)))
        invoices = await _invoice_refs(conn, "bill", [bill_id])
    detail = {**_bill_out(dict(row)), "lines": lines, "meters": meters, "allocations": shares, "invoices": invoices}
    return json_response(BillDetail.model_validate(detail).model_dump(mode="json"))


# --- payments ----------------------------------------------------------------------------------------


def _payment_out(row: Any) -> dict[str, Any]:
    return {**row, "recorded_at": row["created_at"]}


@require(Resource.PAYMENTS, Action.READ)
async def list_payments(request: web.Request) -> web.StreamResponse:
    q = parse_query(request, PaymentsQuery)
    if q.since and q.until and q.since >= q.until:
        raise ProblemError(400, "Bad parameter", "'since' must be before 'until'.", parameter="since")
    stmt = select(payment).order_by(payment.c.paid_at, payment.c.id).limit(q.limit + 1)
    for condition in (
        payment.c.account_id == q.account_id if q.account_id else None,
        payment.c.status == q.status if q.status else None,
        payment.c.channel == q.channel if q.channel else None,
        payment.c.paid_at >= q.since if q.since else None,
        payment.c.paid_at < q.until if q.until else None,
        _after(q.cursor, payment.c.paid_at, payment.c.id, cursor_time),
    ):
        if condition is not None:
            stmt = stmt.where(condition)
    async with request.app[API].engine.connect() as conn:
        rows = [_payment_out(dict(r)) for r in (await conn.execute(stmt)).mappings()]
    items, nxt = _page(rows, q.limit, ("paid_at", "id"))
    return json_response(PaymentPage.model_validate({"items": items, "next_cursor": nxt}).model_dump(mode="json"))


@require(Resource.PAYMENTS, Action.READ)
async def get_payment(request: web.Request) -> web.StreamResponse:
    payment_id = request.match_info["id"]
    async with request.app[API].engine.connect() as conn:
        row = (await conn.execute(select(payment).where(payment.c.id == payment_id))).mappings().first()
        if row is None:
            raise _not_found("payment", payment_id, "payments")
        shares = _allocations(await conn.execute(
            select(allocation).where(allocation.c.payment_id == payment_id)
            .order_by(allocation.c.created_at, allocation.c.id)))
        unused = await conn.scalar(select(func.sum(credit.c.amount)).where(credit.c.payment_id == payment_id))
        prepaid = [{"meter_id": r.meter_id, "kind": r.kind, "amount": r.amount, "balance_after": r.balance_after,
                    "at": r.created_at} for r in await conn.execute(
            select(prepaid_entry).where(prepaid_entry.c.payment_id == payment_id).order_by(prepaid_entry.c.id))]
        refunds = [dict(r) for r in (await conn.execute(
            select(refund).where(refund.c.payment_id == payment_id).order_by(refund.c.refunded_at, refund.c.id))
        ).mappings()]
        invoices = await _invoice_refs(conn, "payment", [payment_id])
    detail = {**_payment_out(dict(row)), "allocations": shares, "prepaid": prepaid, "refunds": refunds,
              "credit_unused": Decimal(unused or 0).quantize(Decimal("0.01")), "invoices": invoices}
    return json_response(PaymentDetail.model_validate(detail).model_dump(mode="json"))


# --- invoices ----------------------------------------------------------------------------------------


def _invoice_out(request: web.Request, row: dict[str, Any], reveal: bool) -> dict[str, Any]:
    out = {**row, "masked": not reveal, "user_name": row["user_name_masked"], "user_number": None}
    if reveal:
        privacy = request.app.get(PRIVACY)
        if privacy is None:
            raise ProblemError(503, "Personal-data keys missing", NO_KEYS)
        dec = privacy.cipher.decrypt
        out["user_name"] = dec(row["user_name_enc"], context=field_context(invoice.name, "user_name", row["id"]))
        if row["user_number_enc"] is not None:
            out["user_number"] = dec(row["user_number_enc"],
                                     context=field_context(invoice.name, "user_number", row["id"]))
    return out


@require(Resource.INVOICES, Action.READ)
async def list_invoices(request: web.Request) -> web.StreamResponse:
    q = parse_query(request, InvoicesQuery)
    stmt = select(invoice).order_by(invoice.c.requested_at, invoice.c.id).limit(q.limit + 1)
    for condition in (
        invoice.c.account_id == q.account_id if q.account_id else None,
        invoice.c.status == q.status if q.status else None,
        invoice.c.kind == q.kind if q.kind else None,
        invoice.c.scope == q.scope if q.scope else None,
        _after(q.cursor, invoice.c.requested_at, invoice.c.id, cursor_time),
    ):
        if condition is not None:
            stmt = stmt.where(condition)

    async def build() -> dict[str, Any]:
        async with request.app[API].engine.connect() as conn:
            rows = [dict(r) for r in (await conn.execute(stmt)).mappings()]
        items, nxt = _page(rows, q.limit, ("requested_at", "id"))
        out = [_invoice_out(request, row, q.reveal) for row in items]
        return InvoicePage.model_validate({"items": out, "next_cursor": nxt}).model_dump(mode="json")

    return await read_revealable(request, q.reveal, build)


@require(Resource.INVOICES, Action.READ)
async def get_invoice(request: web.Request) -> web.StreamResponse:
    q = parse_query(request, RevealQuery)
    invoice_id = request.match_info["id"]

    async def build() -> dict[str, Any]:
        async with request.app[API].engine.connect() as conn:
            row = (await conn.execute(select(invoice).where(invoice.c.id == invoice_id))).mappings().first()
            if row is None:
                raise _not_found("invoice", invoice_id, "invoices")
            lines = [dict(r) for r in (await conn.execute(
                select(invoice_line).where(invoice_line.c.invoice_id == invoice_id).order_by(invoice_line.c.line_no)
            )).mappings()]
        detail = {**_invoice_out(request, dict(row), q.reveal), "lines": lines}
        return InvoiceDetail.model_validate(detail).model_dump(mode="json")

    return await read_revealable(request, q.reveal, build)


def payment_endpoints() -> list[Endpoint]:
    """The bill, payment and invoice routes (relative to /api/v1); none needs keys unless revealing."""
    rd = Action.READ
    one = (400, 401, 403, 404)
    return [
        Endpoint("GET", "/bills", list_bills, "Bills with what is paid and outstanding, oldest period first, paged",
                 BillPage, Resource.BILLS, rd, query=BillsQuery),
        Endpoint("GET", "/bills/{id}", get_bill, "One bill with its lines, allocations and invoices", BillDetail,
                 Resource.BILLS, rd, path_params=("id",), errors=one),
        Endpoint("GET", "/payments", list_payments, "Payments, oldest first, paged", PaymentPage,
                 Resource.PAYMENTS, rd, query=PaymentsQuery),
        Endpoint("GET", "/payments/{id}", get_payment,
                 "One payment and where its money went: bills, credit, prepaid balance, refunds, invoices",
                 PaymentDetail, Resource.PAYMENTS, rd, path_params=("id",), errors=one),
        Endpoint("GET", "/invoices", list_invoices, "Invoice requests and issued invoices (user names masked unless "
                 "reveal), paged", InvoicePage, Resource.INVOICES, rd, query=InvoicesQuery,
                 errors=(400, 401, 403, 503)),
        Endpoint("GET", "/invoices/{id}", get_invoice, "One invoice with its lines (masked unless reveal)",
                 InvoiceDetail, Resource.INVOICES, rd, query=RevealQuery, path_params=("id",),
                 errors=(*one, 503)),
    ]
