"""The matching rules, pure: each discrepancy kind, what is not one, and a statement of 100,000 lines
(timed in bench/reconcile.py, with the database side; tests here are not timed)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from core.reconciliation import STATEMENT_TZ, DiscrepancyKind, Imported, LineKind, StatementLine
from core.reconciliation.matching import CorePayment, CoreRefund, Found, match
from hub.reconcile import summary

D = Decimal
AT = datetime(2026, 11, 26, 9, tzinfo=STATEMENT_TZ)
K = DiscrepancyKind


def line(kind: LineKind, tx: str, amount: str, n: int, refund_id: str = "") -> StatementLine:
    return StatementLine(kind, tx, D(amount), AT, n, f"O-{tx}", refund_id)


def pay(tx: str, amount: str, status: str = "received") -> CorePayment:
    return CorePayment(f"P-{tx}", tx, f"O-{tx}", D(amount), status)


def back(tx: str, refund_id: str, amount: str, kind: str = "refund") -> CoreRefund:
    return CoreRefund(f"P-{tx}", tx, refund_id, D(amount), kind)


def kinds(found: list[Found]) -> list[tuple[K, str, str]]:
    return [(f.kind, f.transaction_id, f.refund_id) for f in found]


def test_everything_matches() -> None:
    payments = {"T1": pay("T1", "10.00"), "T2": pay("T2", "20.00", "partly_refunded"),
                "T3": pay("T3", "5.00", "reversed")}
    refunds = {("T2", "R1"): back("T2", "R1", "4.00"), ("T3", "V1"): back("T3", "V1", "5.00", "reversal")}
    lines = [line(LineKind.PAYMENT, "T1", "10.00", 2), line(LineKind.PAYMENT, "T2", "20.00", 3),
             line(LineKind.REFUND, "T2", "4.00", 4, "R1"), line(LineKind.PAYMENT, "T3", "5.00", 5),
             line(LineKind.REVERSAL, "T3", "5.00", 6)]
    out = match(lines, payments, refunds, payments.values(), refunds.values())
    assert out.found == []
    assert out.matched == 5


def test_each_kind_of_discrepancy() -> None:
    payments = {"OK": pay("OK", "10.00"), "AMT": pay("AMT", "20.00"), "GONE": pay("GONE", "30.00"),
                "REF": pay("REF", "40.00"), "REV": pay("REV", "15.00", "reversed"), "CANC": pay("CANC", "8.00"),
                "RAMT": pay("RAMT", "9.00", "partly_refunded")}
    refunds = {("RAMT", "R9"): back("RAMT", "R9", "3.00"), ("REV", "V1"): back("REV", "V1", "15.00", "reversal"),
               ("OK", "R-LOST"): back("OK", "R-LOST", "1.00")}
    lines = [
        line(LineKind.PAYMENT, "OK", "10.00", 2),
        line(LineKind.PAYMENT, "OK", "10.00", 3),           # listed twice
        line(LineKind.PAYMENT, "AMT", "25.00", 4),          # 25 against 20
        line(LineKind.PAYMENT, "NEW", "9.99", 5),           # the core never heard of it
        line(LineKind.PAYMENT, "REF", "40.00", 6),
        line(LineKind.REFUND, "REF", "5.00", 7, "R-X"),     # refunded by the channel, not in the core
        line(LineKind.PAYMENT, "REV", "15.00", 8),          # reversed in the core, paid in the statement
        line(LineKind.REVERSAL, "CANC", "8.00", 9),         # cancelled by the channel, counted by the core
        line(LineKind.PAYMENT, "RAMT", "9.00", 10),
        line(LineKind.REFUND, "RAMT", "3.50", 11, "R9"),    # refund of another amount
        line(LineKind.REFUND, "RAMT", "3.50", 12, "R9"),    # and listed twice
        line(LineKind.REFUND, "GHOST", "1.00", 13, "R-G"),  # refund of a payment the core never had
    ]
    out = match(lines, payments, refunds, payments.values(), refunds.values())
    assert kinds(out.found) == [
        (K.DUPLICATED, "OK", ""), (K.AMOUNT_MISMATCH, "AMT", ""), (K.MISSING_IN_CORE, "NEW", ""),
        (K.STATUS_MISMATCH, "REF", "R-X"), (K.STATUS_MISMATCH, "REV", ""), (K.STATUS_MISMATCH, "CANC", ""),
        (K.AMOUNT_MISMATCH, "RAMT", "R9"), (K.DUPLICATED, "RAMT", "R9"), (K.MISSING_IN_CORE, "GHOST", "R-G"),
        (K.MISSING_IN_STATEMENT, "GONE", ""),
        (K.MISSING_IN_STATEMENT, "REV", "V1"), (K.MISSING_IN_STATEMENT, "OK", "R-LOST")]
    assert out.matched == 3  # OK, REF and RAMT's payments
    by = {(f.kind, f.transaction_id, f.refund_id): f for f in out.found}
    amt = by[(K.AMOUNT_MISMATCH, "AMT", "")]
    assert (amt.statement_amount, amt.core_amount, amt.line_no, amt.payment_id) == (D("25.00"), D("20.00"), 4, "P-AMT")
    refund_amt = by[(K.AMOUNT_MISMATCH, "RAMT", "R9")]
    assert (refund_amt.statement_amount, refund_amt.core_amount) == (D("3.50"), D("3.00"))
    new = by[(K.MISSING_IN_CORE, "NEW", "")]
    assert (new.core_amount, new.payment_id, new.out_trade_no, new.line_no) == (None, None, "O-NEW", 5)
    gone = by[(K.MISSING_IN_STATEMENT, "GONE", "")]
    assert (gone.statement_amount, gone.core_amount, gone.line_no, gone.core_status) == (None, D("30.00"), None,
                                                                                          "received")
    assert by[(K.STATUS_MISMATCH, "REF", "R-X")].statement_status == "refunded"
    assert by[(K.DUPLICATED, "OK", "")].detail == "listed again (first on line 2)"


def test_payments_of_other_days_and_cancelled_unknowns_are_no_discrepancy() -> None:
    # Paid yesterday, listed today (cut at midnight differently): matched, not missing anywhere.
    old = pay("OLD", "7.00")
    out = match([line(LineKind.PAYMENT, "OLD", "7.00", 2), line(LineKind.REVERSAL, "NEVER", "3.00", 3)],
                {"OLD": old}, {}, day_payments=[], day_refunds=[])
    assert (out.found, out.matched) == ([], 2)


def test_a_statement_of_100k_lines() -> None:
    n = 100_000
    payments = {f"T{i:09d}": pay(f"T{i:09d}", "12.34") for i in range(n)}
    lines = [line(LineKind.PAYMENT, f"T{i:09d}", "12.34" if i % 1000 else "12.35", i + 2) for i in range(n)]
    out = match(lines, payments, {}, payments.values(), [])
    assert [f.transaction_id for f in out.found] == [f"T{i:09d}" for i in range(0, n, 1000)]
    assert {f.kind for f in out.found} == {K.AMOUNT_MISMATCH}
    assert out.matched == n - n // 1000


def test_the_command_says_the_outcome_in_words() -> None:
    done = Imported("R1", True, 10, 8, {"missing_in_core": 1, "amount_mismatch": 1},
                    ("1 lines of txnType 02 left out",))
    assert summary(done, "unionpay", date(2026, 11, 26)) == [
        "unionpay statement of 2026-11-26: 10 lines, 8 matched — run R1",
        "  note: 1 lines of txnType 02 left out",
        "  amount mismatch: 1",
        "  missing in core: 1",
        "see GET /api/v1/reconciliation/runs/R1 or the ops page"]
    again = Imported("R1", False, 10, 8, {})
    assert summary(again, "unionpay", date(2026, 11, 26)) == [
        "this file was imported before (run R1); nothing new was written"]
