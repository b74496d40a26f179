"""The channels' statement parsers against files in the real formats: WeChat Pay's trade bill (backticked
fields, summary lines, plain and gzip), Alipay's trade details (GBK, comment header and footer, tab-padded
values, the zip with GBK member names) and UnionPay's fixed-width ZM file (and its zip). Each sample here
is written out by hand as the channel prints it (``tests/data/statements/``; the Alipay file is GBK on
disk); the writers of ``simulator.py`` are checked against the parsers with hypothesis. Damaged files are
refused naming the line."""

from __future__ import annotations

import gzip
import io
import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.payments.statements import PARSERS, alipay, unionpay, wechatpay
from connectors.payments.statements.simulator import (
    Trade,
    alipay_bill_zip,
    alipay_details_csv,
    ecny_statement,
    unionpay_zm,
    wechatpay_bill,
)
from core.catalogue.messages import PaymentChannel
from core.reconciliation import STATEMENT_TZ, LineKind, StatementError

DAY = date(2026, 11, 26)
D = Decimal

DATA = Path(__file__).resolve().parents[1] / "data" / "statements"
WECHAT = (DATA / "wechatpay-tradebill-ALL-20261126.csv").read_bytes().decode("utf-8")
WECHAT_OLD = (DATA / "wechatpay-tradebill-ALL-20261126-before-2018-11.csv").read_bytes().decode("utf-8")
"""The layout before November 2018: 总金额 / 企业红包金额, no 订单金额 at the end."""
ALIPAY = (DATA / "20881234567890120156_20261126_业务明细.csv").read_bytes().decode("gbk")

# 《全渠道平台接入接口规范 第3部分 文件接口》 6.1, as UnionPay's SDK reads it
ZM_WIDTHS = [3, 11, 11, 6, 10, 19, 12, 4, 2, 21, 2, 32, 2, 6, 10, 13, 13, 4, 15, 2, 2, 6, 2, 4, 32, 1, 21, 15, 1, 15,
             32, 13, 13, 8, 32, 13, 13, 12, 2, 1, 32, 98]


def zm_line(**fields: str) -> bytes:
    """One ZM line: each field left-aligned in its width and followed by a space."""
    at = {"code": 0, "trace": 3, "time": 4, "card": 5, "amount": 6, "query_id": 9, "order_id": 11, "txn_type": 19,
          "sub_type": 20, "biz": 21, "orig": 26, "mer": 27}
    values = {at[k]: v for k, v in fields.items()}
    return b"".join(values.get(i, "").encode("gbk").ljust(w) + b" " for i, w in enumerate(ZM_WIDTHS))


ZM = b"\r\n".join([
    zm_line(code="S22", trace="000001", time="1126080301", card="6216***********0018", amount="000000012345",
            query_id="562611260803010000001", order_id="SX100000000001-a7", txn_type="01", sub_type="01",
            biz="000201", mer="777290058110097"),
    zm_line(code="S30", trace="000002", time="1126093000", card="6216***********0018", amount="000000002000",
            query_id="562611260930000000002", order_id="SX100000000002-r1", txn_type="04", sub_type="00",
            biz="000201", orig="562611250803010000009", mer="777290058110097"),
    zm_line(code="S31", trace="000003", time="1126100000", card="6216***********0018", amount="000000000800",
            query_id="562611261000000000003", order_id="SX100000000003-v1", txn_type="31", sub_type="00",
            biz="000201", orig="562611260759000000004", mer="777290058110097"),
    zm_line(code="S10", trace="000004", time="1126110000", amount="000000010000", query_id="562611261100000000005",
            txn_type="02", sub_type="01", mer="777290058110097"),  # a pre-authorisation: not a payment
]) + b"\r\n"


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=STATEMENT_TZ)


# --- WeChat Pay -----------------------------------------------------------------------------------------


def test_wechat_trade_bill() -> None:
    s = wechatpay.parse(WECHAT.encode("utf-8"), DAY)
    assert (s.format, s.channel) == ("wechatpay", PaymentChannel.WECHAT)
    assert [(x.kind, x.transaction_id, x.amount, x.out_trade_no, x.refund_id, x.line_no) for x in s.lines] == [
        (LineKind.PAYMENT, "4200002681202611261234567890", D("100.00"), "SX100000000001-a7", "", 2),
        (LineKind.REFUND, "4200002681202611250000000001", D("12.50"), "SX100000000002-b1", "50300000012026112600001",
         3),
        (LineKind.REVERSAL, "4200002681202611260000000003", D("8.00"), "SX100000000003-c2", "", 4)]
    # The order total (订单金额), what the notification credited, not the part settled after the coupon.
    assert s.lines[0].at == at("2026-11-26 08:03:11")
    assert s.lines[0].at.astimezone(UTC) == datetime(2026, 11, 26, 0, 3, 11, tzinfo=UTC)


def test_wechat_refunds_still_processing_are_noted_not_matched() -> None:
    text = WECHAT.replace("`ORIGINAL,`SUCCESS", "`ORIGINAL,`PROCESSING")
    s = wechatpay.parse(text.encode(), DAY)
    assert [x.kind for x in s.lines] == [LineKind.PAYMENT, LineKind.REVERSAL]
    assert s.notes == ["1 refunds in state PROCESSING left out (no money returned yet)"]


def test_wechat_old_layout_and_gzip_download() -> None:
    (line,) = wechatpay.parse(WECHAT_OLD.encode(), DAY).lines
    assert (line.kind, line.transaction_id, line.amount) == (
        LineKind.PAYMENT, "4200000480202611263149128488", D("0.12"))
    assert wechatpay.parse(gzip.compress(WECHAT.encode()), DAY).lines == wechatpay.parse(WECHAT.encode(), DAY).lines


@pytest.mark.parametrize(("damage", "message"), [
    (lambda t: t.split("总交易单数")[0], "truncated"),
    (lambda t: t.replace("`3,`95.00", "`4,`95.00"), "counts 4 trades, the file lists 3"),
    (lambda t: t.replace("`100.00,`0.00,`\n", "`1O0.00,`0.00,`\n", 1), "line 2: 订单金额 '1O0.00'"),
    (lambda t: t.replace("`REVOKED", "`PAYERROR"), "line 4: 交易状态 'PAYERROR'"),
    (lambda t: t.replace("`2026-11-26 09:15:40", "2026-11-26 09:15:40"), "line 3: a data field"),
    (lambda t: t.replace("微信订单号", "订单号", 1), "not a WeChat trade bill header"),
    (lambda t: t.replace("`50300000012026112600001", "`0"), "line 3: a REFUND line without 微信退款单号"),
])
def test_wechat_damaged_bills_are_refused_naming_the_line(damage: object, message: str) -> None:
    with pytest.raises(StatementError, match=message):
        wechatpay.parse(damage(WECHAT).encode(), DAY)  # type: ignore[operator]


def test_wechat_refuses_what_is_not_utf8_and_gzip_bombs() -> None:
    with pytest.raises(StatementError, match="UTF-8"):
        wechatpay.parse(WECHAT.lstrip("\ufeff").encode("gbk"), DAY)
    with pytest.raises(StatementError, match="damaged"):
        wechatpay.parse(b"\x1f\x8b" + b"not gzip at all", DAY)


# --- Alipay -----------------------------------------------------------------------------------------------


def test_alipay_trade_details_in_gbk() -> None:
    s = alipay.parse(ALIPAY.encode("gbk"), DAY)
    assert (s.format, s.channel, s.statement_date) == ("alipay", PaymentChannel.ALIPAY, DAY)
    assert [(x.kind, x.transaction_id, x.amount, x.out_trade_no, x.refund_id, x.at) for x in s.lines] == [
        (LineKind.PAYMENT, "2026112622001404561234567890", D("88.60"), "SX100000000001-a7", "",
         at("2026-11-26 08:00:09")),
        (LineKind.REFUND, "2026112522001404560000000001", D("20.00"), "SX100000000002-b1", "2026112611200001",
         at("2026-11-26 11:20:00"))]


class _GbkName(zipfile.ZipInfo):
    """Alipay's zip names its members in GBK without the UTF-8 flag (zipfile would write UTF-8)."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        return self.filename.encode("gbk"), self.flag_bits & ~0x800


def test_alipay_zip_with_gbk_member_names() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, body in (("20881234567890120156_20261126_业务明细(汇总).csv", b"#summary\r\n"),
                           ("20881234567890120156_20261126_业务明细.csv", ALIPAY.encode("gbk"))):
            archive.writestr(_GbkName(name, date_time=(2026, 11, 27, 9, 12, 33)), body)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as archive:
        assert not any(m.flag_bits & 0x800 for m in archive.infolist())  # read back as cp437, as Alipay's are
    assert alipay.parse(buf.getvalue(), DAY).lines == alipay.parse(ALIPAY.encode("gbk"), DAY).lines


@pytest.mark.parametrize(("damage", "message"), [
    (lambda t: t.replace("#交易合计：1笔", "#交易合计：2笔"), "交易合计 says 2, the file lists 1"),
    (lambda t: t.replace("#退款合计：1笔", "#退款合计：0笔"), "退款合计 says 0, the file lists 1"),
    (lambda t: t.split("#-----------------------------------------业务明细列表结束")[0], "truncated"),
    (lambda t: t.replace(",退款,", ",转账,"), "line 7: 业务类型 '转账'"),
    (lambda t: t.replace("2026112611200001\t", ""), "line 7: a refund without"),
    (lambda t: t.replace("2026-11-26 08:00:09", "26/11/2026 08:00"), "line 6: 完成时间"),
    (lambda t: t.replace("业务明细列表-", "列表-", 1), "not Alipay's trade details"),
])
def test_alipay_damaged_files_are_refused(damage: object, message: str) -> None:
    with pytest.raises(StatementError, match=message):
        alipay.parse(damage(ALIPAY).encode("gbk"), DAY)  # type: ignore[operator]


def test_alipay_file_of_another_day_says_so() -> None:
    s = alipay.parse(ALIPAY.encode("gbk"), date(2026, 11, 27))
    assert s.statement_date == DAY  # the import refuses it for 27 November


# --- UnionPay ---------------------------------------------------------------------------------------------


def test_unionpay_zm_file() -> None:
    s = unionpay.parse(ZM, DAY)
    assert (s.format, s.channel) == ("unionpay", PaymentChannel.UNIONPAY)
    assert [(x.kind, x.transaction_id, x.amount, x.out_trade_no, x.refund_id) for x in s.lines] == [
        (LineKind.PAYMENT, "562611260803010000001", D("123.45"), "SX100000000001-a7", ""),
        (LineKind.REFUND, "562611250803010000009", D("20.00"), "SX100000000002-r1", "562611260930000000002"),
        (LineKind.REVERSAL, "562611260759000000004", D("8.00"), "SX100000000003-v1", "")]
    assert s.lines[0].at == at("2026-11-26 08:03:01")
    assert s.notes == ["1 lines of txnType 02 left out"]


def test_unionpay_zip_and_year_boundary() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("INN26112688ZME_777290058110097", b"")
        archive.writestr("INN26112688ZM_777290058110097", ZM)
    assert unionpay.parse(buf.getvalue(), DAY).lines == unionpay.parse(ZM, DAY).lines
    december = zm_line(time="1231235959", amount="000000000100", query_id="562612312359590000001", txn_type="01")
    (line,) = unionpay.parse(december, date(2027, 1, 1)).lines
    assert line.at == datetime(2026, 12, 31, 23, 59, 59, tzinfo=STATEMENT_TZ)


@pytest.mark.parametrize(("line", "message"), [
    (zm_line(amount="12.34", query_id="562611260803010000001", txn_type="01"), "line 1: 交易金额"),
    (zm_line(amount="000000000100", txn_type="01"), "line 1: no 查询流水号"),
    (b"S22 00049900000", "line 1: 15 bytes"),
    (zm_line(time="1340250000", amount="000000000100", query_id="5626", txn_type="01"), "MMDDhhmmss"),
])
def test_unionpay_damaged_lines_are_refused(line: bytes, message: str) -> None:
    with pytest.raises(StatementError, match=message):
        unionpay.parse(line, DAY)


# --- the writers against the parsers ------------------------------------------------------------------------

_ids = st.text(alphabet="0123456789", min_size=21, max_size=21)
_amounts = st.decimals(min_value=D("0.01"), max_value=D("99999.99"), places=2)
_trades = st.lists(st.builds(
    Trade, st.sampled_from(list(LineKind)), _ids, _amounts,
    st.integers(0, 86399).map(lambda s: datetime(2026, 11, 26, tzinfo=STATEMENT_TZ) + timedelta(seconds=s)),
    st.text(alphabet="ABCXYZ0123456789-", min_size=1, max_size=32), _ids), max_size=20)


def _normal(trades: list[Trade], *, refund_ids: bool = True) -> list[tuple[object, ...]]:
    return [(t.kind, t.transaction_id, t.amount, t.at, t.out_trade_no,
             t.refund_id if t.kind is LineKind.REFUND and refund_ids else "") for t in trades]


@settings(max_examples=40, deadline=None)
@given(_trades)
def test_each_writer_and_its_parser_agree(trades: list[Trade]) -> None:
    for data, fmt, kept in ((wechatpay_bill(trades), "wechatpay", trades),
                            (unionpay_zm(trades), "unionpay", trades),
                            (ecny_statement(trades, DAY), "ecny", trades),
                            (alipay_bill_zip([t for t in trades if t.kind is not LineKind.REVERSAL], DAY), "alipay",
                             [t for t in trades if t.kind is not LineKind.REVERSAL])):
        s = PARSERS[fmt](data, DAY, None)
        got = [(x.kind, x.transaction_id, x.amount, x.at, x.out_trade_no, x.refund_id) for x in s.lines]
        assert got == _normal(kept), fmt


def test_progress_is_reported_on_big_files() -> None:
    trades = [Trade(LineKind.PAYMENT, f"{n:021d}", D("1.00"), datetime(2026, 11, 26, 8, tzinfo=STATEMENT_TZ))
              for n in range(12_000)]
    seen: list[int] = []
    assert len(PARSERS["wechatpay"](wechatpay_bill(trades), DAY, seen.append).lines) == 12_000
    assert seen == [5000, 10000]
    assert len(alipay.parse(alipay_details_csv(trades[:3], DAY), DAY).lines) == 3


def test_ecny_statement_is_read_and_its_footer_checked() -> None:
    paid, refunded = (datetime(2026, 11, 26, h, tzinfo=STATEMENT_TZ) for h in (9, 11))
    trades = [Trade(LineKind.PAYMENT, "E2026112600000001", D("86.40"), paid, "A1-X1"),
              Trade(LineKind.REFUND, "E2026112600000001", D("10.00"), refunded, "A1-X1", "R0001")]
    data = ecny_statement(trades, DAY)
    s = PARSERS["ecny"](data, DAY, None)
    assert (s.channel, s.statement_date) == (PaymentChannel.ECNY, DAY)
    assert [(x.kind, x.transaction_id, x.amount, x.refund_id) for x in s.lines] == [
        (LineKind.PAYMENT, "E2026112600000001", D("86.40"), ""),
        (LineKind.REFUND, "E2026112600000001", D("10.00"), "R0001")]
    cut = data.rsplit(b"# total", 1)[0]
    with pytest.raises(StatementError, match="footer"):
        PARSERS["ecny"](cut, DAY, None)
    with pytest.raises(StatementError, match="damaged or cut short"):
        PARSERS["ecny"](data.replace(b"86.40", b"96.40", 1), DAY, None)
    with pytest.raises(StatementError, match="line 3: type"):
        PARSERS["ecny"](data.replace(b",PAY,", b",PAID,", 1), DAY, None)
    with pytest.raises(StatementError, match="not an e-CNY statement"):
        PARSERS["ecny"](b"txnNo,orderNo\n", DAY, None)
