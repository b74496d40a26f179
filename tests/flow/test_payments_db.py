"""The payment handlers against a real database, on SQLite and on PostgreSQL (migrated with Alembic).

Accounts are opened with the real account use case (encrypted holder names); bills are written as a
billing run writes them. The handlers run in the caller's transaction, as the hub runs them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.accounts import CustomerIn, PremisesIn, Privacy, id_check_digit, open_account
from core.billing import ResidentialTariff, TariffBook
from core.billing_run import period_boundary, run_billing
from core.catalogue.messages import (
    InvoiceFailed,
    InvoiceIssued,
    PaymentChannel,
    PaymentReceived,
    PaymentRefunded,
    RefundKind,
)
from core.config import CoreConfig
from core.db.tables import outbox, reading
from core.db.tables_billing import bill, bill_line, meter
from core.db.tables_payments import (
    allocation,
    credit,
    invoice,
    invoice_line,
    payment,
    prepaid_entry,
    refund,
)
from core.errors import Conflict, CoreError, DomainRejected, TemporarilyUnavailable
from core.handlers.payments import PaymentHandlers
from core.messages import Incoming
from core.payments import InvoiceScope, PaymentSettings
from core.privacy import KeyRing, generate_key
from hub.store.db import Database
from tests.flow.conftest import fresh_postgres_database, migrated_engine

D = Decimal
NOW = datetime(2026, 3, 5, 2, tzinfo=UTC)
PAID = datetime(2026, 3, 5, 1, 30, tzinfo=UTC)
NAME = "张三丰"
ID_NUMBER = "33060219900101123" + id_check_digit("33060219900101123")
_seq = itertools.count()
BOOK = TariffBook(versions=(ResidentialTariff(
    version="RES-2025", effective_from=date(2025, 1, 1), thresholds_m3=(D(300), D(600)),
    prices=(D("3.00"), D("3.60"), D("4.50"))),))


@dataclass
class City:
    engine: AsyncEngine
    url: str
    privacy: Privacy
    postpaid: str
    prepaid: str

    def handlers(self, scope: InvoiceScope = InvoiceScope.PAYMENT, *, keys: bool = True,
                 notify_invoice: bool = True) -> PaymentHandlers:
        config = CoreConfig(privacy=self.privacy if keys else None,
                            payments=PaymentSettings(invoice_per=scope, notify_invoice=notify_invoice))
        return PaymentHandlers(config, clock=lambda: NOW)

    async def count(self, table: Any, *where: Any) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)

    async def rows(self, table: Any, *where: Any, order: Any = None) -> list[Any]:
        async with self.engine.connect() as conn:
            stmt = select(table).where(*where)
            return list(await conn.execute(stmt.order_by(order) if order is not None else stmt))

    async def events(self) -> list[tuple[str, str, dict[str, Any]]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(outbox).order_by(outbox.c.seq))
            return [(r.type, r.correlation_id, orjson.loads(r.data)) for r in rows]

    async def paid_on(self, bill_id: str) -> Decimal:
        async with self.engine.connect() as conn:
            value = await conn.scalar(select(func.sum(allocation.c.amount)).where(allocation.c.bill_id == bill_id))
        return D(value or 0).quantize(D("0.01"))

    async def credit_of(self, account_id: str) -> Decimal:
        async with self.engine.connect() as conn:
            value = await conn.scalar(select(func.sum(credit.c.amount)).where(credit.c.account_id == account_id))
        return D(value or 0).quantize(D("0.01"))

    async def run(self, fn: Callable[[AsyncConnection, list[Incoming]], Any], *items: Incoming) -> None:
        async with self.engine.begin() as conn:
            await fn(conn, list(items))


@pytest.fixture(params=["sqlite", "postgresql"])
async def city(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[City]:
    if request.param == "sqlite":
        url, drop = f"sqlite+aiosqlite:///{tmp_path}/pay.db", None
    else:
        url, drop = await fresh_postgres_database(request.getfixturevalue("postgres_url"))
    async with migrated_engine(url, drop) as engine:
        privacy = Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))
        async with engine.begin() as conn:
            postpaid = await _open(conn, privacy, "postpaid")
            prepaid = await _open(conn, privacy, "prepaid")
            await conn.execute(insert(meter), [
                {"id": "M-POST", "account_id": postpaid, "model": "G2.5", "installed_at": date(2025, 6, 1),
                 "replace_by": None, "valve_state": "open", "prepaid_balance": D("0.00")},
                {"id": "M-PRE", "account_id": prepaid, "model": "G2.5", "installed_at": date(2025, 6, 1),
                 "replace_by": None, "valve_state": "closed", "prepaid_balance": D("5.00")},
            ])
            await add_bill(conn, "B-JAN", postpaid, 1, [(D("40.000"), D("2.50"), D("100.00"))])
            await add_bill(conn, "B-FEB", postpaid, 2, [(D("20.000"), D("3.00"), D("60.00")),
                                                        (D("30.000"), D("3.60"), D("108.00"))])
        yield City(engine, url, privacy, postpaid, prepaid)


async def _open(conn: AsyncConnection, privacy: Privacy, billing: Any) -> str:
    view = await open_account(
        conn, privacy, f"open-{billing}", CustomerIn(name=NAME, phone="13812345678", id_number=ID_NUMBER),
        PremisesIn(address="绍兴市越城区解放北路88号", district="yuecheng", lat=30.0, lon=120.58),
        "residential", billing, opened_at=datetime(2025, 6, 1, tzinfo=UTC))
    return view.account_id


async def add_bill(conn: AsyncConnection, bill_id: str, account_id: str, month: int,
                   lines: list[tuple[Decimal, Decimal, Decimal]]) -> None:
    total = sum((amount for _, _, amount in lines), D("0.00"))
    start, end = date(2026, month, 1), date(2026, month + 1, 1)
    await conn.execute(insert(bill).values(
        id=bill_id, account_id=account_id, meter_id="M-POST", period_start=start, period_end=end,
        reading_start_m3=D("0"), reading_end_m3=sum((v for v, _, _ in lines), D("0")),
        volume_m3=sum((v for v, _, _ in lines), D("0")), total=total, net_total=total, tax_total=D("0.00"),
        cumulative_before=D("0"), cumulative_after=None, category="residential", status="issued",
        created_at=datetime(2026, month + 1, 2, tzinfo=UTC)))
    await conn.execute(insert(bill_line), [
        {"bill_id": bill_id, "line_no": n, "tier": n, "tariff_version": "RES-2025", "cycle_start": None,
         "start": start, "end": end, "volume_m3": volume, "unit_price": price, "amount": amount,
         "vat_rate": D("0.0900")}
        for n, (volume, price, amount) in enumerate(lines, start=1)
    ])


def incoming(data: Any, *, correlation: str | None = None) -> Incoming:
    n = next(_seq)
    return Incoming(f"msg-{n}", "test", None, correlation or f"corr-{n}", data)


def paid(account_id: str, amount: str, txn: str = "T1", channel: PaymentChannel = PaymentChannel.WECHAT,
         at: datetime = PAID) -> Incoming:
    return incoming(PaymentReceived(channel=channel, transaction_id=txn, out_trade_no=f"O-{txn}",
                                    account_id=account_id, amount=D(amount), paid_at=at, payer_ref="openid-x"))


def refunded(amount: str, refund_id: str = "R1", txn: str = "T1", kind: RefundKind = RefundKind.REFUND) -> Incoming:
    return incoming(PaymentRefunded(channel=PaymentChannel.WECHAT, transaction_id=txn, refund_id=refund_id,
                                    amount=D(amount), refunded_at=NOW, kind=kind))


def issued(serial: str, account_id: str, total: str, tax: str, number: str) -> Incoming:
    return incoming(InvoiceIssued(request_serial=serial, account_id=account_id, user_name=NAME,
                                  invoice_type="数电票(普通发票)", invoice_number=number, issued_at=NOW,
                                  total=D(total), total_tax=D(tax), pdf_url="https://tax.example/inv.pdf"))


# --- payment.received ----------------------------------------------------------------------------


async def test_a_payment_settles_the_oldest_bills_keeps_the_rest_as_credit_and_is_invoiced_once(city: City) -> None:
    h = city.handlers()
    item = paid(city.postpaid, "300.00")
    await city.run(h.record_payment, item)
    (pay,) = await city.rows(payment)
    assert (pay.channel, pay.transaction_id, pay.amount, pay.status, pay.message_id) == (
        "wechat", "T1", D("300.00"), "received", item.message_id)
    assert [(r.bill_id, r.kind, r.amount) for r in await city.rows(allocation, order=allocation.c.bill_id)] == [
        ("B-FEB", "payment", D("168.00")), ("B-JAN", "payment", D("100.00"))]
    assert await city.credit_of(city.postpaid) == D("32.00")

    (inv,) = await city.rows(invoice)
    assert (inv.request_serial, inv.kind, inv.scope, inv.reference_id, inv.status, inv.total, inv.total_tax) == (
        f"PAY-{pay.id}", "blue", "payment", pay.id, "requested", D("300.00"), D("24.77"))
    assert inv.user_name_masked == "张**"
    assert NAME not in inv.user_name_enc
    assert city.privacy.cipher.decrypt(inv.user_name_enc, context=f"core_invoice.user_name:{inv.id}") == NAME
    (line,) = await city.rows(invoice_line)
    assert (line.quantity, line.amount, line.tax, line.tax_rate) == (D("1.000"), D("275.23"), D("24.77"), D("0.09"))

    (event,) = await city.events()
    kind, correlation, data = event
    assert (kind, correlation) == ("invoice.requested", item.correlation_id)
    assert (data["request_serial"], data["user_name"], data["payment_ref"], data["total"], data["total_tax"]) == (
        f"PAY-{pay.id}", NAME, pay.id, "300.00", "24.77")

    # The channel notifies again (another message id): nothing changes.
    await city.run(h.record_payment, paid(city.postpaid, "300.00"))
    assert (await city.count(payment), await city.count(allocation), await city.count(invoice)) == (1, 2, 1)
    assert len(await city.events()) == 1
    assert await city.credit_of(city.postpaid) == D("32.00")


async def test_the_same_transaction_with_another_amount_is_a_conflict_and_writes_nothing(city: City) -> None:
    h = city.handlers()
    await city.run(h.record_payment, paid(city.postpaid, "10.00"))
    with pytest.raises(Conflict, match=r"credited as 10\.00"):
        await city.run(h.record_payment, paid(city.postpaid, "11.00"))
    with pytest.raises(Conflict):  # a batch: the good new payment is rolled back with it
        await city.run(h.record_payment, paid(city.postpaid, "5.00", "T2"), paid(city.postpaid, "11.00"))
    assert await city.count(payment) == 1
    assert await city.paid_on("B-JAN") == D("10.00")


async def test_an_unknown_account_is_refused_and_nothing_is_written(city: City) -> None:
    h = city.handlers()
    with pytest.raises(DomainRejected, match="unknown account 'NOPE'"):
        await city.run(h.record_payment, paid(city.postpaid, "10.00", "T1"), paid("NOPE", "10.00", "T2"))
    assert (await city.count(payment), await city.count(allocation), await city.count(invoice)) == (0, 0, 0)
    assert await city.events() == []


async def test_without_keys_a_payment_is_refused_not_half_written(city: City) -> None:
    with pytest.raises(CoreError, match="GASHUB_CORE__KEYS__") as caught:
        await city.run(city.handlers(keys=False).record_payment, paid(city.postpaid, "10.00"))
    assert caught.value.retriable is False
    assert await city.count(payment) == 0


async def test_partial_payments_and_bill_invoices_once_a_bill_is_settled(city: City) -> None:
    h = city.handlers(InvoiceScope.BILL)
    first, second = paid(city.postpaid, "150.00", "T1"), paid(city.postpaid, "118.00", "T2",
                                                               at=PAID + timedelta(minutes=5))
    await city.run(h.record_payment, first)
    assert (await city.paid_on("B-JAN"), await city.paid_on("B-FEB")) == (D("100.00"), D("50.00"))
    (jan,) = await city.rows(invoice)
    assert (jan.request_serial, jan.scope, jan.total, jan.total_tax) == ("BILL-B-JAN", "bill", D("100.00"), D("8.26"))
    await city.run(h.record_payment, second)
    assert await city.paid_on("B-FEB") == D("168.00")
    assert await city.credit_of(city.postpaid) == D("0.00")
    feb = (await city.rows(invoice, invoice.c.reference_id == "B-FEB"))[0]
    assert (feb.total, feb.total_tax) == (D("168.00"), D("13.87"))
    lines = await city.rows(invoice_line, invoice_line.c.invoice_id == feb.id, order=invoice_line.c.line_no)
    assert [(x.quantity, x.unit, x.amount, x.tax) for x in lines] == [
        (D("20.000"), "m3", D("55.05"), D("4.95")), (D("30.000"), "m3", D("99.08"), D("8.92"))]
    events = await city.events()
    assert [(e[0], e[1], e[2]["bill_ref"]) for e in events] == [
        ("invoice.requested", first.correlation_id, "B-JAN"), ("invoice.requested", second.correlation_id, "B-FEB")]


async def test_credit_from_an_overpayment_pays_a_later_bill(city: City) -> None:
    h = city.handlers(InvoiceScope.BILL)
    await city.run(h.record_payment, paid(city.postpaid, "300.00"))
    assert await city.credit_of(city.postpaid) == D("32.00")
    async with city.engine.begin() as conn:
        await add_bill(conn, "B-MAR", city.postpaid, 3, [(D("10.000"), D("3.00"), D("30.00"))])
        events = await h.payments.apply_credit(conn, [city.postpaid], NOW)
    assert await city.paid_on("B-MAR") == D("30.00")
    assert await city.credit_of(city.postpaid) == D("2.00")
    applied = await city.rows(credit, credit.c.kind == "applied")
    assert [(r.bill_id, r.amount) for r in applied] == [("B-MAR", D("-30.00"))]
    assert [(e.type, e.data.bill_ref) for e, _ in events] == [("invoice.requested", "B-MAR")]  # type: ignore[union-attr]
    async with city.engine.begin() as conn:  # nothing left to do: nothing happens
        assert await h.payments.apply_credit(conn, [city.postpaid], NOW) == []
    assert await city.count(allocation) == 3


async def test_a_billing_run_spends_credit_on_the_bills_it_issues(city: City) -> None:
    h = city.handlers(InvoiceScope.BILL)
    await city.run(h.record_payment, paid(city.postpaid, "300.00"))
    async with city.engine.begin() as conn:
        await conn.execute(insert(reading), [
            {"id": f"R{n}", "meter_id": "M-POST", "read_at": period_boundary(day), "volume_m3": D(v),
             "source": "manual", "quality": "", "message_id": f"r{n}"}
            for n, (day, v) in enumerate([(date(2026, 3, 1), "100.000"), (date(2026, 4, 1), "110.000")])
        ])
        result = await run_billing(conn, book=BOOK, period_start=date(2026, 3, 1), period_end=date(2026, 4, 1),
                                   now=NOW, payments=h.payments)
    assert result.bills_issued == 1
    (march,) = result.bill_ids
    assert await city.paid_on(march) == D("30.00")  # 10 m³ at 3.00
    assert await city.credit_of(city.postpaid) == D("2.00")
    kinds = [(e[0], e[2].get("bill_ref")) for e in await city.events()]
    assert kinds[-2:] == [("bill.issued", None), ("invoice.requested", march)]


# --- refunds and red invoices --------------------------------------------------------------------


async def test_a_refund_after_allocation_takes_credit_then_the_newest_bill_and_reds_the_issued_invoice(
    city: City,
) -> None:
    h = city.handlers()
    await city.run(h.record_payment, paid(city.postpaid, "300.00"))
    (pay,) = await city.rows(payment)
    await city.run(h.record_invoice_issued, issued(f"PAY-{pay.id}", city.postpaid, "300.00", "24.77", "2" * 20))
    (blue,) = await city.rows(invoice)
    assert (blue.status, blue.invoice_number, blue.invoice_type) == ("issued", "2" * 20, "数电票(普通发票)")
    assert city.privacy.cipher.decrypt(blue.user_number_enc, context=f"core_invoice.user_number:{blue.id}") == (
        city.postpaid)

    first = refunded("50.00")
    await city.run(h.record_refund, first)
    (r,) = await city.rows(refund)
    assert (r.amount, r.from_credit, r.from_bills, r.from_prepaid, r.red_serial) == (
        D("50.00"), D("32.00"), D("18.00"), D("0.00"), f"RED-{r.id}")
    assert (await city.paid_on("B-JAN"), await city.paid_on("B-FEB")) == (D("100.00"), D("150.00"))
    assert await city.credit_of(city.postpaid) == D("0.00")
    (pay,) = await city.rows(payment)
    assert (pay.refunded, pay.status) == (D("50.00"), "partly_refunded")
    red = (await city.rows(invoice, invoice.c.kind == "red"))[0]
    assert (red.original_invoice_id, red.total, red.total_tax, red.status) == (blue.id, D("-50.00"), D("-4.13"),
                                                                             "requested")
    kind, correlation, data = (await city.events())[-1]
    assert (kind, correlation, data["kind"], data["original_invoice_number"], data["user_name"]) == (
        "invoice.requested", first.correlation_id, "red", "2" * 20, NAME)
    assert [(x["quantity"], x["amount"], x["tax"]) for x in data["lines"]] == [("-1.000", "-45.87", "-4.13")]

    # the same refund again: nothing; with another amount: a conflict; more than is left: refused
    await city.run(h.record_refund, refunded("50.00"))
    with pytest.raises(Conflict, match="R1"):
        await city.run(h.record_refund, refunded("40.00"))
    with pytest.raises(DomainRejected, match=r"only 250\.00"):
        await city.run(h.record_refund, refunded("250.01", "R2"))
    assert (await city.count(refund), await city.count(invoice)) == (1, 2)

    await city.run(h.record_refund, refunded("250.00", "R2"))
    assert (await city.paid_on("B-JAN"), await city.paid_on("B-FEB")) == (D("0.00"), D("0.00"))
    (pay,) = await city.rows(payment)
    assert (pay.refunded, pay.status) == (D("300.00"), "refunded")
    reds = await city.rows(invoice, invoice.c.kind == "red", order=invoice.c.total.desc())
    for n, red in enumerate(reds):
        await city.run(h.record_invoice_issued, issued(red.request_serial, city.postpaid, str(red.total),
                                                       str(red.total_tax), f"3{n:019d}"))
    (blue,) = await city.rows(invoice, invoice.c.kind == "blue")
    assert blue.status == "reversed"


async def test_a_refund_before_the_invoice_is_issued_gets_its_red_request_when_it_is(city: City) -> None:
    h = city.handlers()
    await city.run(h.record_payment, paid(city.postpaid, "100.00"))
    await city.run(h.record_refund, refunded("100.00"))
    assert await city.count(invoice) == 1  # nothing issued yet, nothing to reverse
    (pay,) = await city.rows(payment)
    answer = issued(f"PAY-{pay.id}", city.postpaid, "100.00", "8.26", "4" * 20)
    await city.run(h.record_invoice_issued, answer)
    red = (await city.rows(invoice, invoice.c.kind == "red"))[0]
    assert (red.total, red.total_tax) == (D("-100.00"), D("-8.26"))
    _, correlation, data = [e for e in await city.events() if e[0] == "invoice.requested"][-1]
    assert (data["kind"], data["original_invoice_number"], correlation) == ("red", "4" * 20, answer.correlation_id)
    await city.run(h.record_invoice_issued, answer)  # the answer again: no second red
    assert await city.count(invoice) == 2


async def test_an_issued_invoice_is_texted_to_the_holder_once(city: City) -> None:
    h = city.handlers()
    await city.run(h.record_payment, paid(city.postpaid, "100.00"))
    (pay,) = await city.rows(payment)
    answer = issued(f"PAY-{pay.id}", city.postpaid, "100.00", "8.26", "5" * 20)
    await city.run(h.record_invoice_issued, answer)
    await city.run(h.record_invoice_issued, answer)  # the same answer again: no second SMS
    texts = [(c, d) for kind, c, d in await city.events() if kind == "notification.requested"]
    assert len(texts) == 1
    correlation, data = texts[0]
    assert correlation == answer.correlation_id
    assert (data["notification_id"], data["kind"], data["account_id"], data["phone"]) == (
        f"invoice-PAY-{pay.id}", "invoice", city.postpaid, "13812345678")
    params = data["params"]
    assert (params["invoice_number"], params["amount"], params["red"]) == ("5" * 20, "100.00", "0")
    assert data["params"]["pdf_url"] == "https://tax.example/inv.pdf"


async def test_no_invoice_sms_when_the_company_turns_it_off(city: City) -> None:
    h = city.handlers(notify_invoice=False)
    await city.run(h.record_payment, paid(city.postpaid, "100.00"))
    (pay,) = await city.rows(payment)
    await city.run(h.record_invoice_issued, issued(f"PAY-{pay.id}", city.postpaid, "100.00", "8.26", "6" * 20))
    assert (await city.rows(invoice))[0].status == "issued"
    assert [kind for kind, _, _ in await city.events() if kind == "notification.requested"] == []


async def test_a_bill_settled_again_after_a_refund_is_not_invoiced_twice(city: City) -> None:
    h = city.handlers(InvoiceScope.BILL)
    await city.run(h.record_payment, paid(city.postpaid, "100.00", "T1"))
    await city.run(h.record_refund, refunded("100.00", txn="T1"))
    assert await city.paid_on("B-JAN") == D("0.00")
    await city.run(h.record_payment, paid(city.postpaid, "100.00", "T2"))
    assert await city.paid_on("B-JAN") == D("100.00")
    assert [r.request_serial for r in await city.rows(invoice)] == ["BILL-B-JAN"]
    assert await city.count(invoice, invoice.c.kind == "red") == 0  # the gas was supplied: its invoice stands


async def test_a_reversal_cancels_all_that_is_left(city: City) -> None:
    h = city.handlers()
    await city.run(h.record_payment, paid(city.postpaid, "120.00"))
    with pytest.raises(DomainRejected, match="reversal"):
        await city.run(h.record_refund, refunded("20.00", "X1", kind=RefundKind.REVERSAL))
    await city.run(h.record_refund, refunded("120.00", "X1", kind=RefundKind.REVERSAL))
    (pay,) = await city.rows(payment)
    assert (pay.status, pay.refunded) == ("reversed", D("120.00"))
    assert (await city.paid_on("B-JAN"), await city.paid_on("B-FEB")) == (D("0.00"), D("0.00"))


async def test_a_refund_for_a_payment_not_seen_yet_is_retried(city: City) -> None:
    with pytest.raises(TemporarilyUnavailable, match="overtaken") as caught:
        await city.run(city.handlers().record_refund, refunded("1.00", txn="LATER"))
    assert caught.value.retriable is True
    assert await city.count(refund) == 0


# --- prepaid -------------------------------------------------------------------------------------


async def test_a_prepaid_payment_tops_up_the_meter_is_invoiced_per_payment_and_opens_no_valve(city: City) -> None:
    h = city.handlers(InvoiceScope.BILL)  # prepaid top-ups are invoiced per payment in either scope
    await city.run(h.record_payment, paid(city.prepaid, "100.00", "PRE1"))
    (m,) = await city.rows(meter, meter.c.id == "M-PRE")
    assert (m.prepaid_balance, m.valve_state) == (D("105.00"), "closed")
    (entry,) = await city.rows(prepaid_entry)
    assert (entry.kind, entry.amount, entry.balance_after, entry.meter_id) == ("top_up", D("100.00"), D("105.00"),
                                                                               "M-PRE")
    assert await city.count(allocation) == 0
    assert await city.credit_of(city.prepaid) == D("0.00")
    (inv,) = await city.rows(invoice)
    assert (inv.scope, inv.total) == ("payment", D("100.00"))
    await city.run(h.record_refund, refunded("30.00", txn="PRE1"))
    (m,) = await city.rows(meter, meter.c.id == "M-PRE")
    assert m.prepaid_balance == D("75.00")
    (r,) = await city.rows(refund)
    assert (r.from_prepaid, r.from_credit, r.from_bills) == (D("30.00"), D("0.00"), D("0.00"))
    assert [(e.kind, e.amount, e.balance_after) for e in await city.rows(prepaid_entry, order=prepaid_entry.c.id)
            ] == [("top_up", D("100.00"), D("105.00")), ("refund", D("-30.00"), D("75.00"))]


async def test_a_prepaid_account_without_exactly_one_meter_is_refused(city: City) -> None:
    async with city.engine.begin() as conn:
        await conn.execute(insert(meter).values(id="M-PRE2", account_id=city.prepaid, model="G2.5",
                                                installed_at=date(2025, 6, 1), valve_state="open",
                                                prepaid_balance=D("0")))
    with pytest.raises(DomainRejected, match="2 meters"):
        await city.run(city.handlers().record_payment, paid(city.prepaid, "10.00"))
    assert await city.count(payment) == 0


# --- invoice answers -----------------------------------------------------------------------------


async def test_invoice_answers_are_idempotent_and_checked(city: City) -> None:
    h = city.handlers()
    await city.run(h.record_payment, paid(city.postpaid, "100.00"))
    serial = f"PAY-{(await city.rows(payment))[0].id}"
    await city.run(h.record_invoice_failed, incoming(InvoiceFailed(request_serial=serial, reason="tax id missing")))
    await city.run(h.record_invoice_failed, incoming(InvoiceFailed(request_serial=serial, reason="again")))
    (inv,) = await city.rows(invoice)
    assert (inv.status, inv.failure_reason) == ("failed", "tax id missing")

    with pytest.raises(Conflict, match=r"8\.26 tax"):
        await city.run(h.record_invoice_issued, issued(serial, city.postpaid, "100.00", "8.25", "5" * 20))
    with pytest.raises(Conflict, match="answered for account"):
        await city.run(h.record_invoice_issued, issued(serial, city.prepaid, "100.00", "8.26", "5" * 20))
    with pytest.raises(DomainRejected, match="unknown invoice request 'PAY-NOPE'"):
        await city.run(h.record_invoice_issued, issued("PAY-NOPE", city.postpaid, "100.00", "8.26", "5" * 20))

    await city.run(h.record_invoice_issued, issued(serial, city.postpaid, "100.00", "8.26", "5" * 20))
    await city.run(h.record_invoice_issued, issued(serial, city.postpaid, "100.00", "8.26", "5" * 20))
    await city.run(h.record_invoice_failed, incoming(InvoiceFailed(request_serial=serial, reason="stale")))
    (inv,) = await city.rows(invoice)
    assert (inv.status, inv.invoice_number, inv.failure_reason, inv.issued_at) == ("issued", "5" * 20, None, NOW)
    with pytest.raises(Conflict, match="was issued as"):
        await city.run(h.record_invoice_issued, issued(serial, city.postpaid, "100.00", "8.26", "6" * 20))


# --- concurrency ---------------------------------------------------------------------------------


async def _concurrently(city: City, deliveries: list[Incoming]) -> None:
    """Each delivery in its own transaction, all at once (the hub's write gate on SQLite)."""
    h = city.handlers()
    if city.url.startswith("sqlite"):
        db = Database(city.url)
        try:
            async def one(item: Incoming) -> None:
                async with db.begin() as conn:
                    await h.record_payment(conn, [item])

            await asyncio.gather(*(one(d) for d in deliveries))
        finally:
            await db.aclose()
        return
    ready = asyncio.Barrier(len(deliveries))

    async def racing(item: Incoming) -> None:
        async with city.engine.begin() as conn:
            await conn.execute(text("SELECT 1"))
            await ready.wait()  # every transaction is open before any handler runs
            await h.record_payment(conn, [item])

    await asyncio.gather(*(racing(d) for d in deliveries))


async def test_the_same_payment_delivered_five_times_at_once_is_credited_once(city: City) -> None:
    await _concurrently(city, [paid(city.postpaid, "120.00") for _ in range(5)])
    assert await city.count(payment) == 1
    assert (await city.paid_on("B-JAN"), await city.paid_on("B-FEB")) == (D("100.00"), D("20.00"))
    assert await city.credit_of(city.postpaid) == D("0.00")
    assert await city.count(invoice) == 1
    assert [e[0] for e in await city.events()] == ["invoice.requested"]


async def test_five_payments_of_one_account_at_once_never_overpay_a_bill(city: City) -> None:
    await _concurrently(city, [paid(city.postpaid, "70.00", f"T{n}") for n in range(5)])
    assert await city.count(payment) == 5
    assert (await city.paid_on("B-JAN"), await city.paid_on("B-FEB")) == (D("100.00"), D("168.00"))
    assert await city.credit_of(city.postpaid) == D("82.00")
    assert await city.count(invoice) == 5
