"""What the demo shows a person: the city it seeded, the bills of the billing run with one bill in
full, the flows as they go, and a closing summary read from the database. Personal data appears
masked only (``get_account`` without ``reveal``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rich.table import Table
from sqlalchemy import ColumnElement, FromClause, func, select

from connectors.demo.city import SHAOXING
from connectors.demo.fleet import LeakStory
from connectors.demo.payments import Due, Payment
from connectors.demo.seed import Seeded
from connectors.meters.fleet import MeterFleet
from core import outbox
from core.accounts import Privacy, get_account
from core.billing_run import BillingRunResult
from core.db.tables import alarm, reading
from core.db.tables_accounts import account, customer
from core.db.tables_billing import bill, bill_line
from core.db.tables_payments import allocation, credit, invoice, payment
from hub.app import Hub
from hub.store.audit import verify_chain
from hub.store.tables import dead_letter, hop, message

ZERO = Decimal("0.00")


def city_table(seeded: Seeded) -> Table:
    kinds = Counter((a.district, a.kind) for a in seeded.accounts)
    table = Table(title=f"Shaoxing: {len(seeded.accounts):,} accounts seeded in {seeded.seconds:.1f} s",
                  title_justify="left")
    table.add_column("district")
    table.add_column("residential", justify="right")
    table.add_column("commercial", justify="right")
    for name, district in SHAOXING.items():
        table.add_row(f"{district.chinese} {name}", str(kinds[(name, "residential")]),
                      str(kinds[(name, "commercial")]))
    return table


async def dues(hub: Hub, bill_ids: Sequence[str]) -> list[Due]:
    """The bills of a run with what is still owed on them, oldest account first."""
    if not bill_ids:
        return []
    async with hub.db.read() as conn:
        rows = (await conn.execute(
            select(bill.c.id, bill.c.account_id, account.c.account_number, bill.c.total)
            .join(account, account.c.id == bill.c.account_id)
            .where(bill.c.id.in_(list(bill_ids))).order_by(bill.c.id))).all()
    return [Due(r.id, r.account_id, r.account_number, Decimal(r.total).quantize(ZERO)) for r in rows]


async def sample_bill(hub: Hub, result: BillingRunResult, privacy: Privacy) -> list[str]:
    """A typical residential bill of the run in full (the holder and address masked)."""
    async with hub.db.read() as conn:
        rows = (await conn.execute(
            select(bill).join(account, account.c.id == bill.c.account_id)
            .where(bill.c.id.in_(result.bill_ids), account.c.category == "residential")
            .order_by(bill.c.volume_m3, bill.c.id))).all()
        if not rows:
            return []
        row = rows[len(rows) // 2]  # a typical household: the median use
        view = await get_account(conn, privacy, row.account_id)
        lines = (await conn.execute(select(bill_line).where(bill_line.c.bill_id == row.id)
                                    .order_by(bill_line.c.line_no))).all()
    out = [f"  sample bill {row.id} for account {view.account_number} ({view.holder.name}, {view.premises.address})",
           f"    meter {row.meter_id}: {Decimal(row.reading_start_m3):.3f} → {Decimal(row.reading_end_m3):.3f} m³ "
           f"= {Decimal(row.volume_m3):.3f} m³"]
    out += [f"    tier {line.tier} ({line.tariff_version}) {Decimal(line.volume_m3):.3f} m³ × "
            f"{Decimal(line.unit_price):.2f} = {Decimal(line.amount):.2f} yuan" for line in lines]
    out.append(f"    total {Decimal(row.total):.2f} yuan (net {Decimal(row.net_total):.2f} + VAT "
               f"{Decimal(row.tax_total):.2f}); the holder is told by SMS (route bill-notify → sms-send)")
    return out


@dataclass(frozen=True, slots=True)
class Tally:
    customers: int
    accounts: dict[str, int]
    readings_backfilled: int
    readings_live: int
    bills: int
    billed: Decimal
    payments: int
    paid: Decimal
    payment_messages: int
    allocations: int
    allocated: Decimal
    credit: Decimal
    invoices: dict[str, int]
    alarms: int
    messages: int
    hops: int
    dead_letters: int
    outbox_pending: int


async def tally(hub: Hub) -> Tally:
    def money(value: object) -> Decimal:
        return Decimal(str(value or 0)).quantize(ZERO)

    async with hub.db.read() as conn:
        async def count(table: FromClause, *where: ColumnElement[bool]) -> int:
            return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)

        kinds = {str(r[0] if r[0] == "residential" else r[1]): int(r[2]) for r in await conn.execute(
            select(account.c.category, account.c.subcategory, func.count())
            .group_by(account.c.category, account.c.subcategory))}
        statuses = {str(r[0]): int(r[1]) for r in await conn.execute(
            select(invoice.c.status, func.count()).group_by(invoice.c.status))}
        return Tally(
            customers=await count(customer),
            accounts=kinds,
            readings_backfilled=await count(reading, reading.c.quality == "unvalidated"),
            readings_live=await count(reading, reading.c.quality != "unvalidated"),
            bills=await count(bill),
            billed=money(await conn.scalar(select(func.sum(bill.c.total)))),
            payments=await count(payment),
            paid=money(await conn.scalar(select(func.sum(payment.c.amount)))),
            payment_messages=await count(message, message.c.type == "payment.received"),
            allocations=await count(allocation),
            allocated=money(await conn.scalar(select(func.sum(allocation.c.amount)))),
            credit=money(await conn.scalar(select(func.sum(credit.c.amount)))),
            invoices=statuses,
            alarms=await count(alarm),
            messages=await count(message),
            hops=await count(hop),
            dead_letters=await count(dead_letter),
            outbox_pending=await outbox.pending_count(conn),
        )


async def summary(hub: Hub, t: Tally, *, sms_sent: int, bill_sms: int, invoice_sms: int, valves_closed: int,
                  notified: int, repeated: int, wechat_accepted: int, tax_issued: int, tax_name: str) -> str:
    async with hub.db.read() as conn:
        verdict = await verify_chain(conn)
    accounts = sum(t.accounts.values())
    kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(t.accounts.items()))
    invoices = t.invoices
    lines = [
        "", "[bold]demo summary[/]",
        f"  city             {accounts:,} accounts ({kinds}); {t.customers:,} holders, personal data encrypted",
        f"  readings         {t.readings_backfilled:,} monthly readings backfilled, {t.readings_live:,} live "
        "(validated)",
        f"  bills            {t.bills:,} issued, {t.billed:,} yuan; {bill_sms:,} bill SMS sent",
        f"  payments         {notified:,} paid ({repeated:,} notified twice) → {t.payments:,} credited, "
        f"{t.paid:,} yuan from {t.payment_messages:,} payment.received messages",
        f"  allocations      {t.allocations:,} to bills ({t.allocated:,} yuan), {t.credit:,} yuan kept as credit",
        f"  invoices         {sum(invoices.values()):,} requested, {invoices.get('issued', 0):,} issued "
        f"({tax_name}: {tax_issued:,}); {invoice_sms:,} invoice SMS sent",
        f"  wechat pay       {wechat_accepted:,} signed notifications accepted at /partners/wechatpay/notify",
        f"  {'messages stored':<16} {t.messages:,}",
        f"  {'audit hops':<16} {t.hops:,}",
        f"  {'alarms':<16} {t.alarms:,}",
        f"  {'dead letters':<16} {t.dead_letters:,}",
        f"  {'SMS sent':<16} {sms_sent:,}",
        f"  {'valves closed':<16} {valves_closed:,}",
        f"  audit chain      {'intact' if verdict.ok else 'BROKEN: ' + verdict.problem} ({verdict.checked:,} hops)",
    ]
    return "\n".join(lines)


def fleet_lines(fleet: MeterFleet, leaks: Sequence[LeakStory]) -> str:
    """The fleet's part of the summary: its reports, and each leak's story from report to work order."""
    lines = [f"  {'fleet':<16} {len(fleet.meters):,} meters, {fleet.reports:,} reports sent by themselves "
             f"({fleet.failed_reports:,} failed)"]
    for leak in leaks:
        frame = (f"{leak.close_frame_after_s * 1000:.0f} ms" if leak.close_frame_after_s is not None
                 else "not seen")
        lines.append(f"  {'leak story':<16} meter {leak.meter_id}: alarm {leak.alarm_id or 'none'} → close frame on "
                     f"its wire after {frame} → valve {leak.valve_state or 'unknown'} → SMS "
                     f"{'requested' if leak.sms_requested else 'not requested'} → work order "
                     f"{leak.work_order or 'none'} ({'complete' if leak.complete else 'INCOMPLETE'})")
    return "\n".join(lines)


def _masked_phone(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:] if len(phone) == 11 else "***"


async def wechat_story(hub: Hub, paid: Payment, sms_sent: Sequence[dict[str, Any]], *,
                       tax: str = "soap") -> list[str] | None:
    """One bill's whole way, once it is complete: paid by WeChat, invoiced over SOAP (or signed REST),
    the invoice's SMS sent; ``None`` while a step is still on its way."""
    async with hub.db.read() as conn:
        pay = (await conn.execute(select(payment.c.id, payment.c.out_trade_no).where(
            payment.c.channel == "wechat", payment.c.transaction_id == paid.transaction_id))).first()
        if pay is None:
            return None
        inv = (await conn.execute(select(invoice.c.request_serial, invoice.c.invoice_number, invoice.c.invoice_type,
                                         invoice.c.total, invoice.c.total_tax, invoice.c.status)
                                  .where(invoice.c.reference_id == pay.id, invoice.c.kind == "blue"))).first()
    if inv is None or inv.status != "issued":
        return None
    sms = next((s for s in sms_sent if s.get("params", {}).get("invoice_number") == inv.invoice_number), None)
    if sms is None:
        return None
    return [
        f"[bold]bill {paid.bill_id}[/] of account {paid.account_number}: {paid.bill_total} yuan",
        f"  [green]paid by WeChat Pay[/]: order {pay.out_trade_no} (Native, created with a signed request), "
        f"transaction {paid.transaction_id}, {paid.amount} yuan; the platform's notification verified "
        "(SHA256withRSA) and decrypted (AES-256-GCM) at /partners/wechatpay/notify → payment.received → "
        f"core:record_payment (payment {pay.id})",
        f"  [green]e-invoice issued over {'SOAP' if tax == 'soap' else 'signed REST'}[/]: request "
        f"{inv.request_serial} → {'IssueInvoice' if tax == 'soap' else 'invoice.issue'} → invoice "
        f"[bold]{inv.invoice_number}[/] ({inv.invoice_type}), {Decimal(inv.total):.2f} yuan incl. "
        f"{Decimal(inv.total_tax):.2f} VAT → invoice.issued → core:record_invoice_issued",
        f"  [green]SMS sent[/] to {_masked_phone(str(sms.get('phone', '')))}: template {sms.get('template')} "
        f"with invoice {sms['params'].get('invoice_number')} and {sms['params'].get('amount')} yuan "
        f"(gateway OutId {str(sms.get('out_id'))[:26]}; notification.requested → sms-send). "
        "(An Aliyun SendSms connector would take sms:send here.)",
    ]
