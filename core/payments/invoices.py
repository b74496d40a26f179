"""Invoice requests and the tax system's answers, stored in ``core_invoice``.

* A request is written with status ``requested`` together with its ``invoice.requested`` event, in
  the caller's transaction; the request serial is unique, so a request that already exists is
  neither written nor emitted again.
* ``invoice.issued`` moves it to ``issued`` and stores the user name and user number the tax system
  printed (encrypted), the invoice type and the 20-digit number. The same answer again changes
  nothing; another number for the same serial, another account or other totals are a ``Conflict``
  (an operator must look: the invoice exists at the tax authority).
* ``invoice.failed`` moves ``requested`` to ``failed`` with the reason. A failure after the invoice was
  issued is stale and ignored; an issue after a failure wins (the provider retried and succeeded).
* A red request is made for a refund of a payment whose blue invoice is issued — at the refund, or,
  when the blue one is still requested, as soon as it is issued. When issued red invoices add up to
  the whole blue one, the blue one becomes ``reversed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue import Lane
from core.catalogue.messages import InvoiceFailed, InvoiceIssued, InvoiceKind, InvoiceLine, InvoiceRequested
from core.db.bulk import insert_many
from core.db.tables_payments import invoice, invoice_line, refund
from core.errors import Conflict, DomainRejected
from core.messages import Event, Incoming
from core.payments.invoicing import red_lines, red_serial, totals
from core.payments.ledger import money, new_id
from core.payments.notices import IssuedNow
from core.payments.settings import InvoiceScope
from core.privacy import FieldCipher, field_context, mask_name

_INVOICE = invoice.name


@dataclass(frozen=True, slots=True)
class InvoiceRequest:
    serial: str
    scope: InvoiceScope
    reference_id: str
    account_id: str
    user_name: str
    lines: Sequence[InvoiceLine]
    cause: Incoming | None
    kind: InvoiceKind = InvoiceKind.BLUE
    original: tuple[str, str] | None = None
    """Red requests: the blue invoice's row id and number."""
    refund_row_id: str | None = None


async def request_invoices(
    conn: AsyncConnection, cipher: FieldCipher, requests: Sequence[InvoiceRequest], now: datetime
) -> list[tuple[Event, Incoming | None]]:
    """Write the requests that do not exist yet; return their ``invoice.requested`` events."""
    rows: list[dict[str, Any]] = []
    by_serial: dict[str, tuple[str, InvoiceRequest]] = {}
    for req in requests:
        invoice_id = new_id()
        total, total_tax = totals(req.lines)
        by_serial[req.serial] = (invoice_id, req)
        rows.append({
            "id": invoice_id, "request_serial": req.serial, "kind": req.kind.value, "scope": req.scope.value,
            "reference_id": req.reference_id, "account_id": req.account_id,
            "original_invoice_id": req.original[0] if req.original else None, "refund_row_id": req.refund_row_id,
            "status": "requested",
            "user_name_enc": cipher.encrypt(req.user_name, context=field_context(_INVOICE, "user_name", invoice_id)),
            "user_name_masked": mask_name(req.user_name), "total": total, "total_tax": total_tax,
            "message_id": req.cause.message_id if req.cause else None, "requested_at": now, "updated_at": now,
        })
    inserted = {r[0] for r in await insert_many(conn, invoice, rows, ignore_conflicts=True,
                                                returning=("request_serial",))}
    lines: list[dict[str, Any]] = []
    events: list[tuple[Event, Incoming | None]] = []
    for serial in (row["request_serial"] for row in rows if row["request_serial"] in inserted):
        invoice_id, req = by_serial[serial]
        lines.extend({"invoice_id": invoice_id, "line_no": n, **line.model_dump()}
                     for n, line in enumerate(req.lines, start=1))
        total, total_tax = totals(req.lines)
        data = InvoiceRequested(
            request_serial=serial, kind=req.kind, account_id=req.account_id, user_name=req.user_name,
            payment_ref=req.reference_id if req.scope is InvoiceScope.PAYMENT else None,
            bill_ref=req.reference_id if req.scope is InvoiceScope.BILL else None,
            original_invoice_number=req.original[1] if req.original else None,
            lines=list(req.lines), total=total, total_tax=total_tax,
        )
        events.append((Event("invoice.requested", data, subject=req.account_id, lane=Lane.NORMAL), req.cause))
    await insert_many(conn, invoice_line, lines)
    return events


async def _lines_of(conn: AsyncConnection, invoice_id: str) -> list[InvoiceLine]:
    rows = await conn.execute(select(invoice_line).where(invoice_line.c.invoice_id == invoice_id)
                              .order_by(invoice_line.c.line_no))
    return [InvoiceLine(name=r.name, tax_code=r.tax_code, unit=r.unit, quantity=Decimal(r.quantity).quantize(
        Decimal("0.001")), unit_price=Decimal(r.unit_price).quantize(Decimal("0.000001")), amount=money(r.amount),
        tax_rate=Decimal(r.tax_rate).quantize(Decimal("0.0001")), tax=money(r.tax)) for r in rows]


async def payment_invoice(conn: AsyncConnection, payment_id: str) -> Row[Any] | None:
    """The blue invoice requested for a payment (payment scope), if any."""
    return (await conn.execute(select(invoice).where(
        invoice.c.scope == InvoiceScope.PAYMENT.value, invoice.c.reference_id == payment_id,
        invoice.c.kind == InvoiceKind.BLUE.value).with_for_update())).first()


async def red_request(
    conn: AsyncConnection, cipher: FieldCipher, blue: Row[Any], refund_row_id: str, refunded: Decimal,
    cause: Incoming | None,
) -> InvoiceRequest:
    """A red request reversing ``refunded`` yuan of the issued blue invoice, for the same buyer."""
    blue_lines = await _lines_of(conn, blue.id)
    name = cipher.decrypt(blue.user_name_enc, context=field_context(_INVOICE, "user_name", blue.id))
    return InvoiceRequest(
        serial=red_serial(refund_row_id), scope=InvoiceScope.PAYMENT, reference_id=blue.reference_id,
        account_id=blue.account_id, user_name=name, lines=red_lines(blue_lines[0], refunded), cause=cause,
        kind=InvoiceKind.RED, original=(blue.id, blue.invoice_number), refund_row_id=refund_row_id,
    )


async def mark_red_requested(conn: AsyncConnection, requests: Sequence[InvoiceRequest]) -> None:
    for req in requests:
        await conn.execute(update(refund).where(refund.c.id == req.refund_row_id).values(red_serial=req.serial))


async def _lock_requests(conn: AsyncConnection, serials: Sequence[str]) -> dict[str, dict[str, Any]]:
    stmt = (select(invoice).where(invoice.c.request_serial.in_(sorted(set(serials))))
            .order_by(invoice.c.request_serial).with_for_update())
    found = {row.request_serial: dict(row._mapping) for row in await conn.execute(stmt)}
    missing = sorted(set(serials) - set(found))
    if missing:
        raise DomainRejected(f"unknown invoice request {missing[0]!r}: the core never asked for it")
    return found


async def record_issued(
    conn: AsyncConnection, cipher: FieldCipher, items: Sequence[Incoming], now: datetime
) -> tuple[list[tuple[Event, Incoming | None]], list[IssuedNow]]:
    """Apply ``invoice.issued`` answers; returns the red requests that were waiting for a blue number,
    and the requests these answers issued (not those issued before: the same answer again is nothing new)."""
    answers = [(item, item.data) for item in items if isinstance(item.data, InvoiceIssued)]
    rows = await _lock_requests(conn, [d.request_serial for _, d in answers])
    reds: list[InvoiceRequest] = []
    issued: list[IssuedNow] = []
    for item, d in answers:
        row = rows[d.request_serial]
        _check_answer(row, d)
        if row["status"] in ("issued", "reversed"):
            if row["invoice_number"] == d.invoice_number:
                continue
            raise Conflict(f"invoice request {d.request_serial} was issued as {row['invoice_number']}; "
                           f"the tax system now says {d.invoice_number}")
        values = {
            "status": "issued", "invoice_type": d.invoice_type, "invoice_number": d.invoice_number,
            "issued_at": d.issued_at, "pdf_url": d.pdf_url, "failure_reason": None, "updated_at": now,
            "user_name_enc": cipher.encrypt(d.user_name, context=field_context(_INVOICE, "user_name", row["id"])),
            "user_name_masked": mask_name(d.user_name),
            "user_number_enc": cipher.encrypt(d.account_id, context=field_context(_INVOICE, "user_number", row["id"])),
        }
        await conn.execute(update(invoice).where(invoice.c.id == row["id"]).values(**values))
        row.update(values)
        issued.append(IssuedNow(d.request_serial, d.account_id, row["kind"], d.invoice_number, d.total, d.pdf_url,
                                item))
        if row["kind"] == InvoiceKind.BLUE.value and row["scope"] == InvoiceScope.PAYMENT.value:
            reds.extend(await _waiting_reds(conn, cipher, row["id"], item))
        elif row["kind"] == InvoiceKind.RED.value:
            await _maybe_reversed(conn, row["original_invoice_id"], now)
    events = await request_invoices(conn, cipher, reds, now)
    await mark_red_requested(conn, reds)
    return events, issued


def _check_answer(row: dict[str, Any], d: InvoiceIssued) -> None:
    if d.account_id != row["account_id"]:
        raise Conflict(f"invoice request {d.request_serial} was for account {row['account_id']}; "
                       f"the tax system answered for account {d.account_id}")
    asked = (money(row["total"]), money(row["total_tax"]))
    if (d.total, d.total_tax) != asked:
        raise Conflict(f"invoice request {d.request_serial} asked for {asked[0]} with {asked[1]} tax; "
                       f"the tax system issued {d.total} with {d.total_tax} tax")


async def _waiting_reds(
    conn: AsyncConnection, cipher: FieldCipher, blue_id: str, cause: Incoming
) -> list[InvoiceRequest]:
    blue = (await conn.execute(select(invoice).where(invoice.c.id == blue_id))).one()
    waiting = await conn.execute(
        select(refund.c.id, refund.c.amount).where(refund.c.payment_id == blue.reference_id,
                                                   refund.c.red_serial.is_(None)).order_by(refund.c.id))
    return [await red_request(conn, cipher, blue, r.id, money(r.amount), cause) for r in waiting.all()]


async def _maybe_reversed(conn: AsyncConnection, blue_id: str, now: datetime) -> None:
    reversed_total = await conn.scalar(select(func.sum(invoice.c.total)).where(
        invoice.c.original_invoice_id == blue_id, invoice.c.status == "issued"))
    blue_total = await conn.scalar(select(invoice.c.total).where(invoice.c.id == blue_id))
    if money(blue_total) + money(reversed_total) <= 0:
        await conn.execute(update(invoice).where(invoice.c.id == blue_id, invoice.c.status == "issued")
                           .values(status="reversed", updated_at=now))


async def record_failed(conn: AsyncConnection, items: Sequence[Incoming], now: datetime) -> None:
    """Apply ``invoice.failed`` answers: ``requested`` → ``failed``; anything else stays as it is."""
    answers = [item.data for item in items if isinstance(item.data, InvoiceFailed)]
    rows = await _lock_requests(conn, [d.request_serial for d in answers])
    for d in answers:
        row = rows[d.request_serial]
        if row["status"] != "requested":
            continue
        await conn.execute(update(invoice).where(invoice.c.id == row["id"])
                           .values(status="failed", failure_reason=d.reason, updated_at=now))
        row["status"] = "failed"


WAITING = select(func.count(), func.min(invoice.c.requested_at)).where(invoice.c.status == "requested")
"""The unanswered requests and the oldest one's time: on the partial index ``ix_core_invoice_waiting``."""


async def waiting_requests(conn: AsyncConnection) -> tuple[int, datetime | None]:
    """Invoice requests the tax system has not answered yet, and when the oldest was asked for (ops)."""
    row = (await conn.execute(WAITING)).one()
    return int(row[0] or 0), row[1]
