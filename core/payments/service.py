"""Payments, refunds and credit: the use cases behind ``payment.received`` and ``payment.refunded``.

Each function runs in the caller's transaction and either does everything or raises (the transaction
rolls back: never a partial write). The order inside is always the same: lock the accounts, check
everything the domain can refuse, then write.

**Crediting once.** A payment is inserted with ``ON CONFLICT DO NOTHING`` on ``(channel,
transaction_id)``; only the rows really inserted are allocated, credited and invoiced. Concurrent
deliveries of the same payment wait for each other on the account lock (PostgreSQL) or the single
writer (SQLite), then find the payment there and do nothing. The same key with another account or
amount is a ``Conflict``.

**Postpaid accounts.** Unused credit (oldest payment first), then the new payments (in the order they
were paid) settle the account's open bills, oldest first; what is left is kept as credit
(:mod:`core.payments.allocation`). Credit is also applied when a billing run issues new bills
(:meth:`Payments.apply_credit`).

**Prepaid accounts** (``core_account.billing = 'prepaid'``): the payment tops up the balance of the
account's meter (``core_meter.prepaid_balance``) with an entry in ``core_prepaid_entry``, and settles
no bill. No valve is opened here.

**Refunds.** A refund takes back its amount from the payment's unused credit, then from its bills,
newest first (prepaid: from the meter's balance, which may go negative); a reversal (冲正) must take
everything left of the payment. The payment becomes ``partly_refunded``, ``refunded`` or ``reversed``.
Unknown payments are retried (the refund may have overtaken its payment), then dead-lettered.

**Invoices** (:class:`~core.payments.settings.PaymentSettings`): per payment (and always for prepaid
top-ups), or per bill once a bill is settled; refunds of an invoiced payment get red requests
(:mod:`core.payments.invoices`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.accounts import Privacy
from core.catalogue.messages import PaymentReceived, PaymentRefunded, RefundKind
from core.db.bulk import insert_many
from core.db.tables_billing import bill_line
from core.db.tables_payments import payment, refund
from core.errors import Conflict, CoreError, DomainRejected, TemporarilyUnavailable
from core.messages import Event, Incoming
from core.payments import ledger
from core.payments.allocation import Fund, NotEnoughToTakeBack, Settlement, Source, settle, take_back
from core.payments.invoices import (
    InvoiceRequest,
    mark_red_requested,
    payment_invoice,
    record_failed,
    record_issued,
    red_request,
    request_invoices,
)
from core.payments.invoicing import bill_lines, bill_serial, payment_lines, payment_serial
from core.payments.notices import invoice_notices
from core.payments.settings import InvoiceScope, PaymentSettings
from core.privacy import FieldCipher

Emitted = list[tuple[Event, Incoming | None]]

NO_KEYS = ("personal-data keys are not configured, and invoices carry the user's name encrypted: set "
           "GASHUB_CORE__KEYS__<id> (and GASHUB_CORE__CURRENT_KEY), restart, then replay this message")


class KeysMissing(CoreError):
    """The core has no personal-data keys, so it cannot write an invoice's user name."""


@dataclass(frozen=True, slots=True)
class _New:
    item: Incoming
    id: str
    data: PaymentReceived


class Payments:
    """The payment use cases, bound to the deployment's invoice policy and personal-data keys."""

    def __init__(self, settings: PaymentSettings, privacy: Privacy | None) -> None:
        self.settings = settings
        self.privacy = privacy

    def _cipher(self) -> FieldCipher:
        if self.privacy is None:
            raise KeysMissing(NO_KEYS)
        return self.privacy.cipher

    # --- payment.received -------------------------------------------------------------------------

    async def record(self, conn: AsyncConnection, items: Sequence[Incoming], now: datetime) -> Emitted:
        """Credit each payment once; allocate, top up or keep as credit; request its invoices."""
        received = [(item, _as(item, PaymentReceived)) for item in items]
        for _, p in received:
            if p.currency != "CNY":
                raise DomainRejected(f"payment {p.channel}/{p.transaction_id} is in {p.currency}: only CNY is taken")
        accounts = await ledger.lock_accounts(conn, (p.account_id for _, p in received))
        ledger.require_accounts(accounts, (p.account_id for _, p in received), "a payment")
        cipher = self._cipher()
        fresh = await self._insert(conn, received, now)
        if not fresh:
            return []
        by_account: dict[str, list[_New]] = defaultdict(list)
        for new in fresh:
            by_account[new.data.account_id].append(new)
        prepaid = sorted(a for a in by_account if accounts[a].billing == "prepaid")
        meters = await ledger.meters_of(conn, prepaid)
        for account_id in prepaid:  # refused before anything is allocated; the insert above rolls back
            if len(meters[account_id]) != 1:
                raise DomainRejected(f"prepaid account {account_id} has {len(meters[account_id])} meters: a top-up "
                                     "needs exactly one meter to credit; link the meter, then replay")
        requests: list[InvoiceRequest] = []
        names = await ledger.holder_names(conn, cipher, sorted(by_account))
        postpaid = sorted(a for a in by_account if a not in prepaid)
        bills = await ledger.open_bills(conn, postpaid)
        credits = await ledger.unused_credit(conn, postpaid)
        for account_id in sorted(by_account):
            news = sorted(by_account[account_id], key=lambda n: (n.data.paid_at, n.data.channel, n.data.transaction_id))
            if account_id in prepaid:
                for new in news:
                    await ledger.move_prepaid(conn, meter_id=meters[account_id][0], account_id=account_id,
                                              payment_id=new.id, amount=new.data.amount, refund_row_id=None, now=now)
                requests += [self._payment_request(new, names[account_id]) for new in news]
            else:
                settled = settle(credits[account_id] + [Fund(n.id, n.data.amount, Source.PAYMENT) for n in news],
                                 bills[account_id])
                await ledger.write_settlement(conn, account_id, settled, now)
                requests += await self._postpaid_requests(conn, account_id, names[account_id], news, settled)
        return await request_invoices(conn, cipher, requests, now)

    async def _insert(
        self, conn: AsyncConnection, received: list[tuple[Incoming, PaymentReceived]], now: datetime
    ) -> list[_New]:
        rows: list[dict[str, Any]] = []
        by_id: dict[str, tuple[Incoming, PaymentReceived]] = {}
        # Key order: concurrent batches take the unique-index locks in the same order.
        for item, p in sorted(received, key=lambda pair: (pair[1].channel.value, pair[1].transaction_id)):
            payment_id = ledger.new_id()
            by_id[payment_id] = (item, p)
            rows.append({"id": payment_id, "channel": p.channel.value, "transaction_id": p.transaction_id,
                         "out_trade_no": p.out_trade_no, "account_id": p.account_id, "amount": p.amount,
                         "refunded": Decimal("0.00"), "currency": p.currency, "paid_at": p.paid_at.astimezone(UTC),
                         "status": "received", "message_id": item.message_id, "created_at": now})
        inserted = {r[0] for r in await insert_many(conn, payment, rows, ignore_conflicts=True, returning=("id",))}
        skipped = [by_id[row["id"]][1] for row in rows if row["id"] not in inserted]
        if skipped:
            await _same_as_stored(conn, skipped)
        return [_New(by_id[i][0], i, by_id[i][1]) for i in (row["id"] for row in rows) if i in inserted]

    async def _postpaid_requests(
        self, conn: AsyncConnection, account_id: str, user_name: str, news: Sequence[_New], settled: Settlement
    ) -> list[InvoiceRequest]:
        """Per payment, or per bill these payments settled (caused by the payment that settled it)."""
        if self.settings.invoice_per is InvoiceScope.PAYMENT:
            return [self._payment_request(new, user_name) for new in news]
        last_payer = {share.bill_id: share.payment_id for share in settled.shares}
        items = {new.id: new.item for new in news}
        causes: dict[str, Incoming | None] = {
            bill_id: items.get(last_payer[bill_id], news[0].item) for bill_id in settled.paid_off}
        return await self._bill_requests(conn, account_id, user_name, settled.paid_off, causes)

    def _payment_request(self, new: _New, user_name: str) -> InvoiceRequest:
        s = self.settings
        return InvoiceRequest(
            serial=payment_serial(new.id), scope=InvoiceScope.PAYMENT, reference_id=new.id,
            account_id=new.data.account_id, user_name=user_name, cause=new.item,
            lines=payment_lines(new.data.amount, name=s.item_name, tax_code=s.tax_code, vat_rate=s.vat_rate),
        )

    async def _bill_requests(
        self, conn: AsyncConnection, account_id: str, user_name: str, bill_ids: Sequence[str],
        causes: dict[str, Incoming | None],
    ) -> list[InvoiceRequest]:
        if not bill_ids:
            return []
        lines: dict[str, list[tuple[Decimal, Decimal, Decimal]]] = defaultdict(list)
        stmt = (select(bill_line.c.bill_id, bill_line.c.volume_m3, bill_line.c.amount, bill_line.c.vat_rate)
                .where(bill_line.c.bill_id.in_(list(bill_ids))).order_by(bill_line.c.bill_id, bill_line.c.line_no))
        for row in await conn.execute(stmt):
            lines[row.bill_id].append((Decimal(row.volume_m3).quantize(Decimal("0.001")), ledger.money(row.amount),
                                       Decimal(row.vat_rate).quantize(Decimal("0.0001"))))
        s = self.settings
        return [
            InvoiceRequest(serial=bill_serial(bill_id), scope=InvoiceScope.BILL, reference_id=bill_id,
                           account_id=account_id, user_name=user_name, cause=causes.get(bill_id),
                           lines=bill_lines(lines[bill_id], name=s.item_name, tax_code=s.tax_code))
            for bill_id in bill_ids
            if lines[bill_id]
        ]

    # --- credit for new bills ---------------------------------------------------------------------

    async def apply_credit(self, conn: AsyncConnection, account_ids: Sequence[str], now: datetime) -> Emitted:
        """Spend the accounts' unused credit on their open bills, oldest first (after a billing run)."""
        if not account_ids:
            return []
        candidates = await ledger.unused_credit(conn, sorted(set(account_ids)))
        if not candidates:
            return []
        accounts = await ledger.lock_accounts(conn, candidates)
        postpaid = sorted(a for a, row in accounts.items() if row.billing == "postpaid")
        credits = await ledger.unused_credit(conn, postpaid)  # again, now that the accounts are locked
        bills = await ledger.open_bills(conn, postpaid)
        requests: list[InvoiceRequest] = []
        paid_off: dict[str, Sequence[str]] = {}
        for account_id in postpaid:
            if credits[account_id] and bills[account_id]:
                settled = settle(credits[account_id], bills[account_id])
                await ledger.write_settlement(conn, account_id, settled, now)
                paid_off[account_id] = settled.paid_off
        if self.settings.invoice_per is InvoiceScope.BILL and any(paid_off.values()):
            cipher = self._cipher()
            names = await ledger.holder_names(conn, cipher, sorted(paid_off))
            for account_id, bill_ids in paid_off.items():
                requests += await self._bill_requests(conn, account_id, names[account_id], bill_ids, {})
            return await request_invoices(conn, cipher, requests, now)
        return []

    # --- payment.refunded -------------------------------------------------------------------------

    async def refund(self, conn: AsyncConnection, items: Sequence[Incoming], now: datetime) -> Emitted:
        """Take each refund back once; request a red invoice where the payment's invoice was issued."""
        asked = [(item, _as(item, PaymentRefunded)) for item in items]
        keys = sorted({(r.channel.value, r.transaction_id) for _, r in asked})
        stmt = select(payment.c.account_id).where(tuple_(payment.c.channel, payment.c.transaction_id).in_(keys))
        await ledger.lock_accounts(conn, (await conn.execute(stmt)).scalars())
        pays = {(row.channel, row.transaction_id): dict(row._mapping) for row in await conn.execute(
            select(payment).where(tuple_(payment.c.channel, payment.c.transaction_id).in_(keys)))}
        for channel, transaction_id in keys:
            if (channel, transaction_id) not in pays:
                raise TemporarilyUnavailable(f"no payment {channel}/{transaction_id} is recorded yet: the refund may "
                                             "have overtaken its payment, so it is retried")
        rows: list[dict[str, Any]] = []
        wanted: dict[str, tuple[Incoming, PaymentRefunded, dict[str, Any]]] = {}
        for item, r in sorted(asked, key=lambda pair: (pair[1].refunded_at, pair[1].refund_id)):
            pay = pays[(r.channel.value, r.transaction_id)]
            row_id = ledger.new_id()
            wanted[row_id] = (item, r, pay)
            rows.append({"id": row_id, "payment_id": pay["id"], "refund_id": r.refund_id, "kind": r.kind.value,
                         "amount": r.amount, "from_credit": Decimal("0.00"), "from_bills": Decimal("0.00"),
                         "from_prepaid": Decimal("0.00"), "refunded_at": r.refunded_at.astimezone(UTC),
                         "red_serial": None, "message_id": item.message_id, "created_at": now})
        inserted = {r[0] for r in await insert_many(conn, refund, rows, ignore_conflicts=True, returning=("id",))}
        await _same_refunds(conn, [(wanted[row["id"]][1], wanted[row["id"]][2]) for row in rows
                                   if row["id"] not in inserted])
        reds: list[InvoiceRequest] = []
        for row_id in (row["id"] for row in rows if row["id"] in inserted):
            item, r, pay = wanted[row_id]
            await self._take_back(conn, row_id, r, pay, now)
            blue = await payment_invoice(conn, pay["id"])
            if blue is not None and blue.status in ("issued", "reversed"):
                reds.append(await red_request(conn, self._cipher(), blue, row_id, r.amount, item))
        events = await request_invoices(conn, self._cipher(), reds, now) if reds else []
        await mark_red_requested(conn, reds)
        return events

    async def _take_back(
        self, conn: AsyncConnection, row_id: str, r: PaymentRefunded, pay: dict[str, Any], now: datetime
    ) -> None:
        amount, refunded = ledger.money(pay["amount"]), ledger.money(pay["refunded"])
        left = amount - refunded
        what = f"refund {r.refund_id} of payment {r.channel}/{r.transaction_id}"
        if r.amount > left:
            raise DomainRejected(f"{what} asks for {r.amount} but only {left} of the payment is left")
        if r.kind is RefundKind.REVERSAL and r.amount != left:
            raise DomainRejected(f"{what} is a reversal: it must cancel all {left} left of the payment, not {r.amount}")
        split = {"from_credit": Decimal("0.00"), "from_bills": Decimal("0.00"), "from_prepaid": Decimal("0.00")}
        meter_id = await ledger.topped_up_meter(conn, pay["id"])
        if meter_id is not None:
            await ledger.move_prepaid(conn, meter_id=meter_id, account_id=pay["account_id"], payment_id=pay["id"],
                                      amount=-r.amount, refund_row_id=row_id, now=now)
            split["from_prepaid"] = r.amount
        else:
            unused, placed = await ledger.payment_holdings(conn, pay["id"])
            try:
                taken = take_back(r.amount, unused, placed)
            except NotEnoughToTakeBack as exc:  # the ledgers disagree with the payment row
                raise Conflict(f"{what}: {exc}") from None
            await ledger.write_take_back(conn, account_id=pay["account_id"], payment_id=pay["id"],
                                         refund_row_id=row_id, from_credit=taken.from_credit,
                                         from_bills=taken.from_bills, now=now)
            split["from_credit"] = taken.from_credit
            split["from_bills"] = taken.total - taken.from_credit
        refunded += r.amount
        if r.kind is RefundKind.REVERSAL:
            status = "reversed"
        else:
            status = "refunded" if refunded == amount else "partly_refunded"
        await conn.execute(update(refund).where(refund.c.id == row_id).values(**split))
        await conn.execute(update(payment).where(payment.c.id == pay["id"]).values(refunded=refunded, status=status))
        pay["refunded"] = refunded

    # --- invoice answers --------------------------------------------------------------------------

    async def invoice_issued(self, conn: AsyncConnection, items: Sequence[Incoming], now: datetime) -> Emitted:
        """Store the answers; request the red invoices waiting for them; SMS the holders (``notify_invoice``)."""
        cipher = self._cipher()
        events, issued = await record_issued(conn, cipher, items, now)
        if self.settings.notify_invoice:
            events += await invoice_notices(conn, cipher, issued)
        return events

    async def invoice_failed(self, conn: AsyncConnection, items: Sequence[Incoming], now: datetime) -> None:
        await record_failed(conn, items, now)


def _as(item: Incoming, model: type[Any]) -> Any:
    if not isinstance(item.data, model):
        raise DomainRejected(f"expected {model.__name__}, got {type(item.data).__name__}")
    return item.data


async def _same_as_stored(conn: AsyncConnection, seen: Sequence[PaymentReceived]) -> None:
    """A payment seen again must say what the stored one says (account and amount)."""
    keys = sorted({(p.channel.value, p.transaction_id) for p in seen})
    stored = {(r.channel, r.transaction_id): r for r in await conn.execute(
        select(payment.c.channel, payment.c.transaction_id, payment.c.account_id, payment.c.amount)
        .where(tuple_(payment.c.channel, payment.c.transaction_id).in_(keys)))}
    for p in seen:
        row = stored.get((p.channel.value, p.transaction_id))
        if row is None:
            raise TemporarilyUnavailable(f"payment {p.channel}/{p.transaction_id} collided with one not yet visible")
        if row.account_id != p.account_id or ledger.money(row.amount) != p.amount:
            raise Conflict(f"payment {p.channel}/{p.transaction_id} was credited as {row.amount} to account "
                           f"{row.account_id}; this message says {p.amount} to account {p.account_id}")


async def _same_refunds(conn: AsyncConnection, seen: Sequence[tuple[PaymentRefunded, dict[str, Any]]]) -> None:
    """A refund seen again must say what the stored one says (amount and kind)."""
    for r, pay in seen:
        row = (await conn.execute(select(refund.c.amount, refund.c.kind).where(
            refund.c.payment_id == pay["id"], refund.c.refund_id == r.refund_id))).one()
        if ledger.money(row.amount) != r.amount or row.kind != r.kind.value:
            raise Conflict(f"refund {r.refund_id} of payment {r.channel}/{r.transaction_id} was {row.kind} of "
                           f"{row.amount}; this message says {r.kind.value} of {r.amount}")


def utc_now() -> datetime:
    return datetime.now(UTC)
