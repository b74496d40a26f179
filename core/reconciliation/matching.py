"""Matching a statement against what the core recorded: pure, one pass over each side (no I/O).

The rules, per channel and statement day:

* a **payment** line is matched by transaction id to the core's payment: none → ``missing_in_core``;
  another amount → ``amount_mismatch``; the core says it was reversed (冲正) while the statement shows
  no reversal → ``status_mismatch``; the same transaction id listed again → ``duplicated``;
* a **refund** line is matched by (transaction id, refund id) to the core's refunds: payment unknown →
  ``missing_in_core``; refund unknown → ``status_mismatch`` (the channel says refunded, the core does
  not); another amount → ``amount_mismatch``; listed again → ``duplicated``;
* a **reversal** line (the channel cancelled the payment): the core's payment must be ``reversed``, else
  ``status_mismatch``; a payment the core never recorded is no discrepancy (no money moved);
* every core payment paid that day (Beijing time) and every core refund made that day that the
  statement does not list → ``missing_in_statement``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from core.reconciliation.model import DiscrepancyKind, LineKind, StatementLine


@dataclass(frozen=True, slots=True)
class CorePayment:
    id: str
    transaction_id: str
    out_trade_no: str
    amount: Decimal
    status: str


@dataclass(frozen=True, slots=True)
class CoreRefund:
    payment_id: str
    transaction_id: str
    refund_id: str
    amount: Decimal
    kind: str


@dataclass(frozen=True, slots=True)
class Found:
    kind: DiscrepancyKind
    transaction_id: str
    detail: str
    refund_id: str = ""
    out_trade_no: str = ""
    statement_amount: Decimal | None = None
    core_amount: Decimal | None = None
    statement_status: str | None = None
    core_status: str | None = None
    line_no: int | None = None
    payment_id: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    found: list[Found]
    matched: int
    """Lines that agree with the core."""


def match(
    lines: Iterable[StatementLine],
    payments: Mapping[str, CorePayment],
    refunds: Mapping[tuple[str, str], CoreRefund],
    day_payments: Iterable[CorePayment],
    day_refunds: Iterable[CoreRefund],
) -> Outcome:
    """Compare (module notes). ``payments``/``refunds``: the core's rows for every transaction the
    statement names; ``day_*``: the core's rows of the statement's day, whatever the statement says."""
    found: list[Found] = []
    matched = 0
    listed: dict[str, StatementLine] = {}
    listed_refunds: set[tuple[str, str]] = set()
    reversed_ids: set[str] = set()
    ordered = list(lines)
    for line in ordered:
        if line.kind is LineKind.REVERSAL:
            reversed_ids.add(line.transaction_id)
    for line in ordered:
        tx = line.transaction_id
        core = payments.get(tx)
        if line.kind is LineKind.PAYMENT:
            if tx in listed:
                found.append(_line(DiscrepancyKind.DUPLICATED, line, core,
                                   f"listed again (first on line {listed[tx].line_no})"))
                continue
            listed[tx] = line
            if core is None:
                found.append(_line(DiscrepancyKind.MISSING_IN_CORE, line, None,
                                   "the channel was paid; the core has no such payment"))
            elif core.amount != line.amount:
                found.append(_line(DiscrepancyKind.AMOUNT_MISMATCH, line, core,
                                   f"statement {line.amount}, core {core.amount}"))
            elif core.status == "reversed" and tx not in reversed_ids:
                found.append(_line(DiscrepancyKind.STATUS_MISMATCH, line, core,
                                   "the core reversed it; the statement shows it paid", statement_status="paid"))
            else:
                matched += 1
        elif line.kind is LineKind.REFUND:
            key = (tx, line.refund_id)
            if key in listed_refunds:
                found.append(_line(DiscrepancyKind.DUPLICATED, line, core, "refund listed again"))
                continue
            listed_refunds.add(key)
            stored = refunds.get(key)
            if core is None:
                found.append(_line(DiscrepancyKind.MISSING_IN_CORE, line, None,
                                   "a refund of a payment the core never recorded"))
            elif stored is None:
                found.append(_line(DiscrepancyKind.STATUS_MISMATCH, line, core,
                                   f"the channel refunded {line.amount}; the core has no such refund",
                                   statement_status="refunded", refund=True))
            elif stored.amount != line.amount:
                found.append(_line(DiscrepancyKind.AMOUNT_MISMATCH, line, core,
                                   f"refund: statement {line.amount}, core {stored.amount}",
                                   refund=True, refund_amount=stored.amount))
            else:
                matched += 1
        else:
            listed.setdefault(tx, line)
            if core is not None and core.status != "reversed":
                found.append(_line(DiscrepancyKind.STATUS_MISMATCH, line, core,
                                   "the channel cancelled the payment; the core still counts it",
                                   statement_status="reversed"))
            else:
                matched += 1
    found.extend(
        Found(DiscrepancyKind.MISSING_IN_STATEMENT, p.transaction_id,
              "the core recorded this payment; the statement does not list it",
              out_trade_no=p.out_trade_no, core_amount=p.amount, core_status=p.status, payment_id=p.id)
        for p in day_payments if p.transaction_id not in listed)
    for r in day_refunds:
        shown = (r.transaction_id, r.refund_id) in listed_refunds or (
            r.kind == "reversal" and r.transaction_id in reversed_ids)
        if not shown:
            found.append(Found(DiscrepancyKind.MISSING_IN_STATEMENT, r.transaction_id,
                               f"the core recorded this {r.kind}; the statement does not list it",
                               refund_id=r.refund_id, core_amount=r.amount, core_status=r.kind,
                               payment_id=r.payment_id))
    return Outcome(found, matched)


def _line(kind: DiscrepancyKind, line: StatementLine, core: CorePayment | None, detail: str, *,
          statement_status: str | None = None, refund: bool = False, refund_amount: Decimal | None = None) -> Found:
    """A discrepancy about one line; ``core_amount`` is the payment's, or for refunds the refund's."""
    amount = refund_amount if refund else (core.amount if core is not None else None)
    return Found(
        kind, line.transaction_id, detail, refund_id=line.refund_id,
        out_trade_no=line.out_trade_no or (core.out_trade_no if core else ""), statement_amount=line.amount,
        core_amount=amount,
        statement_status=statement_status or line.kind.value,
        core_status=core.status if core is not None else None, line_no=line.line_no,
        payment_id=core.id if core is not None else None)
