"""The pure payment rules: settling bills oldest first, credit, refunds taken back, invoice VAT lines."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.catalogue.messages import InvoiceLine
from core.payments.allocation import (
    Fund,
    NotEnoughToTakeBack,
    OpenBill,
    Placed,
    Source,
    check_money,
    settle,
    take_back,
)
from core.payments.invoicing import (
    GrossLine,
    bill_lines,
    bill_serial,
    invoice_line,
    payment_lines,
    payment_serial,
    red_lines,
    red_serial,
    totals,
)

D = Decimal
T = datetime(2026, 3, 2, tzinfo=UTC)
NINE = D("0.09")
CODE = "1100301010000000000"


def bill_(bill_id: str, month: int, outstanding: str, issued: datetime = T) -> OpenBill:
    return OpenBill(bill_id, date(2026, month, 1), issued, D(outstanding))


def pay(amount: str, payment_id: str = "P1", source: Source = Source.PAYMENT) -> Fund:
    return Fund(payment_id, D(amount), source)


# --- settling ------------------------------------------------------------------------------------


def test_an_exact_payment_pays_the_bill_off_and_leaves_nothing() -> None:
    s = settle([pay("168.00")], [bill_("B1", 2, "168.00")])
    assert [(x.bill_id, x.amount) for x in s.shares] == [("B1", D("168.00"))]
    assert s.left == ()
    assert s.paid_off == ("B1",)


def test_an_overpayment_is_left_over_as_credit() -> None:
    s = settle([pay("200.00")], [bill_("B1", 2, "168.00")])
    assert [x.amount for x in s.shares] == [D("168.00")]
    assert s.left == (Fund("P1", D("32.00"), Source.PAYMENT),)
    assert s.paid_off == ("B1",)


def test_a_partial_payment_pays_part_of_the_oldest_bill_and_pays_nothing_off() -> None:
    s = settle([pay("50.01")], [bill_("B2", 3, "10.00"), bill_("B1", 2, "168.00")])
    assert [(x.bill_id, x.amount) for x in s.shares] == [("B1", D("50.01"))]
    assert s.left == ()
    assert s.paid_off == ()


def test_several_bills_are_paid_oldest_first_whatever_order_they_come_in() -> None:
    bills = [
        bill_("B-mar", 3, "30.00"),
        bill_("B-jan-late", 1, "20.00", datetime(2026, 2, 3, tzinfo=UTC)),
        bill_("B-feb", 2, "40.00"),
        bill_("B-jan", 1, "10.00", datetime(2026, 2, 1, tzinfo=UTC)),
        bill_("B-paid", 1, "0.00"),
    ]
    s = settle([pay("75.00")], bills)
    assert [(x.bill_id, x.amount) for x in s.shares] == [
        ("B-jan", D("10.00")), ("B-jan-late", D("20.00")), ("B-feb", D("40.00")), ("B-mar", D("5.00"))]
    assert s.paid_off == ("B-jan", "B-jan-late", "B-feb")
    assert s.left == ()


def test_credit_is_spent_before_new_money_and_each_fund_keeps_its_rest() -> None:
    funds = [pay("15.00", "OLD", Source.CREDIT), pay("100.00", "NEW")]
    s = settle(funds, [bill_("B1", 2, "40.00")])
    assert [(x.payment_id, x.bill_id, x.amount, x.source) for x in s.shares] == [
        ("OLD", "B1", D("15.00"), Source.CREDIT), ("NEW", "B1", D("25.00"), Source.PAYMENT)]
    assert s.left == (Fund("NEW", D("75.00"), Source.PAYMENT),)


def test_no_bills_leave_everything_as_credit() -> None:
    assert settle([pay("9.99")], []).left == (Fund("P1", D("9.99"), Source.PAYMENT),)


@pytest.mark.parametrize("bad", [D("1.001"), D("-1.00"), D("NaN"), D("Infinity")])
def test_money_with_more_than_two_decimals_or_negative_is_refused(bad: Decimal) -> None:
    with pytest.raises(ValueError, match="at most 2 decimals"):
        settle([pay("1.00")], [OpenBill("B", date(2026, 1, 1), T, bad)])


def test_floats_are_not_money() -> None:
    with pytest.raises(TypeError):
        check_money(1.5)  # type: ignore[arg-type]
    assert check_money(D("3")) == D("3.00")


amounts = st.decimals(min_value=D("0.01"), max_value=D("9999.99"), places=2)


@given(st.lists(amounts, min_size=1, max_size=5), st.lists(amounts, max_size=6))
def test_settling_never_creates_or_loses_a_cent(funds: list[Decimal], dues: list[Decimal]) -> None:
    bills = [bill_(f"B{i}", 1 + i % 12, str(due)) for i, due in enumerate(dues)]
    s = settle([pay(str(a), f"P{i}") for i, a in enumerate(funds)], bills)
    spent = sum((x.amount for x in s.shares), D(0))
    assert spent + sum((f.amount for f in s.left), D(0)) == sum(funds, D(0))
    assert spent == min(sum(funds, D(0)), sum(dues, D(0)))
    for b in bills:
        assert sum((x.amount for x in s.shares if x.bill_id == b.bill_id), D(0)) <= b.outstanding
    assert set(s.paid_off) <= {b.bill_id for b in bills}


# --- refunds -------------------------------------------------------------------------------------


def test_a_refund_takes_unused_credit_first_then_the_newest_bill() -> None:
    placed = [Placed("B-jan", date(2026, 1, 1), T, D("10.00")), Placed("B-feb", date(2026, 2, 1), T, D("40.00"))]
    t = take_back(D("45.00"), D("20.00"), placed)
    assert t.from_credit == D("20.00")
    assert t.from_bills == (("B-feb", D("25.00")),)
    assert t.total == D("45.00")


def test_a_refund_after_allocation_reverses_exactly_what_settling_did() -> None:
    s = settle([pay("100.00")], [bill_("B1", 1, "30.00"), bill_("B2", 2, "50.00")])
    credit = sum((f.amount for f in s.left), D(0))
    placed = [Placed(x.bill_id, date(2026, 1 if x.bill_id == "B1" else 2, 1), T, x.amount) for x in s.shares]
    t = take_back(D("100.00"), credit, placed)
    assert (t.from_credit, t.from_bills) == (D("20.00"), (("B2", D("50.00")), ("B1", D("30.00"))))


def test_a_refund_larger_than_the_payment_holds_is_refused() -> None:
    with pytest.raises(NotEnoughToTakeBack, match=r"0\.01"):
        take_back(D("10.01"), D("5.00"), [Placed("B1", date(2026, 1, 1), T, D("5.00"))])


# --- invoice lines and VAT -----------------------------------------------------------------------


def test_a_payment_invoice_is_one_line_with_the_vat_taken_out_half_up() -> None:
    (line,) = payment_lines(D("100.00"), name="管道天然气", tax_code=CODE, vat_rate=NINE)
    # 100.00 × 9/109 = 8.2568… → 8.26
    assert (line.quantity, line.unit, line.amount, line.tax, line.unit_price) == (
        D("1.000"), "", D("91.74"), D("8.26"), D("91.740000"))
    assert totals([line]) == (D("100.00"), D("8.26"))


@pytest.mark.parametrize(("gross", "tax"), [
    ("0.01", "0.00"), ("0.05", "0.00"), ("0.06", "0.00"),  # 0.06 × 9/109 = 0.00495… → 0.00
    ("0.07", "0.01"),  # 0.00578 → 0.01
    ("1.00", "0.08"), ("168.00", "13.87"), ("12345.67", "1019.37"),  # 111111.03 / 109 = 1019.367…
])
def test_vat_per_line_is_rounded_half_up_to_the_cent(gross: str, tax: str) -> None:
    (line,) = payment_lines(D(gross), name="gas", tax_code=CODE, vat_rate=NINE)
    assert line.tax == D(tax)
    assert line.amount + line.tax == D(gross)


def test_unit_prices_round_half_up_at_six_decimals() -> None:
    # net 0.01 for 0.256 m³ is 0.0390625 yuan/m³ exactly: half-up gives …063, half-even would give …062
    line = invoice_line(GrossLine("gas", CODE, "m3", D("0.256"), D("0.01"), NINE))
    assert (line.amount, line.tax, line.unit_price) == (D("0.01"), D("0.00"), D("0.039063"))


def test_a_bill_invoice_has_the_bill_lines_each_with_its_vat() -> None:
    # domain.md rule 2: 20 m³ at 3.00 and 30 m³ at 3.60 = 168.00
    lines = bill_lines([(D("20.000"), D("60.00"), D("0.0900")), (D("30.000"), D("108.00"), D("0.0900"))],
                       name="管道天然气", tax_code=CODE)
    assert [(x.quantity, x.unit, x.amount, x.tax, x.unit_price) for x in lines] == [
        (D("20.000"), "m3", D("55.05"), D("4.95"), D("2.752500")),
        (D("30.000"), "m3", D("99.08"), D("8.92"), D("3.302667")),
    ]
    assert totals(lines) == (D("168.00"), D("13.87"))


def test_red_lines_mirror_the_blue_line_for_the_refunded_amount() -> None:
    (blue,) = payment_lines(D("100.00"), name="gas", tax_code=CODE, vat_rate=NINE)
    (full,) = red_lines(blue, D("100.00"))
    assert (full.quantity, full.amount, full.tax, full.unit_price) == (D("-1.000"), D("-91.74"), D("-8.26"),
                                                                      D("91.740000"))
    (part,) = red_lines(blue, D("30.00"))
    assert (part.amount, part.tax) == (D("-27.52"), D("-2.48"))
    assert totals([part]) == (D("-30.00"), D("-2.48"))
    with pytest.raises(ValueError, match="positive"):
        red_lines(blue, D("0.00"))
    assert isinstance(part, InvoiceLine)


def test_serials_fit_the_catalogue_and_differ_by_kind() -> None:
    ulid = "01JDZ5X3P6T8Q9R0S1V2W3X4Y5"
    serials = {payment_serial(ulid), bill_serial(ulid), red_serial(ulid)}
    assert len(serials) == 3
    assert all(len(s) <= 64 for s in serials)
