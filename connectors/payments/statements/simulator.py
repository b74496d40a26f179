"""The channels' side: statement files written the way WeChat Pay, Alipay and UnionPay write them,
from a list of :class:`Trade`, for the demo, the tests and the benchmark. Each writer produces the
whole file (header, comments, summary or footer), so the parsers are tested against complete files.
:class:`BillDownloadSimulator` serves them the way Alipay's bill centre does: at a short-lived URL.
"""

from __future__ import annotations

import io
import secrets
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from urllib.parse import quote

from aiohttp import web

from connectors.payments.statements import unionpay
from core.reconciliation import STATEMENT_TZ, LineKind
from hub.connectors.simulation import HttpSimulator

WECHAT_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,"
                 "交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,"
                 "商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
                 "手续费,费率,订单金额,申请退款金额,费率备注")
WECHAT_SUMMARY = ("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,"
                  "订单总金额,申请退款总金额")
ALIPAY_HEADER = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,"
                 "操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,"
                 "集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,"
                 "商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,"
                 "分润（元）,备注")
RULE = "-" * 41


@dataclass(frozen=True, slots=True)
class Trade:
    kind: LineKind
    transaction_id: str
    amount: Decimal
    at: datetime
    out_trade_no: str = ""
    refund_id: str = ""


def _local(at: datetime) -> str:
    return at.astimezone(STATEMENT_TZ).strftime("%Y-%m-%d %H:%M:%S")


def wechatpay_bill(trades: Sequence[Trade], *, appid: str = "wxd678efh567hg6787", mchid: str = "1230000109") -> bytes:
    """A trade bill (``bill_type=ALL``), UTF-8, every data field prefixed with a backtick."""
    out = [WECHAT_HEADER]
    paid = refunded = Decimal("0.00")
    state = {LineKind.PAYMENT: "SUCCESS", LineKind.REFUND: "REFUND", LineKind.REVERSAL: "REVOKED"}
    for t in trades:
        is_refund = t.kind is LineKind.REFUND
        settle = Decimal("0.00") if is_refund else t.amount
        refund = t.amount if is_refund else Decimal("0.00")
        paid += settle
        refunded += refund
        fee = (settle * Decimal("0.006")).quantize(Decimal("0.01"))
        cells = [_local(t.at), appid, mchid, "0", "", t.transaction_id, t.out_trade_no, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
                 "NATIVE", state[t.kind], "OTHERS", "CNY", f"{settle}", "0.00", t.refund_id or "0",
                 f"R{t.refund_id}" if is_refund else "0", f"{refund}", "0.00", "ORIGINAL" if is_refund else "",
                 "SUCCESS" if is_refund else "", "燃气费", "", f"{fee}", "0.60%", f"{settle}", f"{refund}", ""]
        out.append(",".join("`" + c for c in cells))
    out.append(WECHAT_SUMMARY)
    out.append(",".join("`" + c for c in (str(len(trades)), f"{paid}", f"{refunded}", "0.00",
                                          f"{(paid * Decimal('0.006')).quantize(Decimal('0.01'))}", f"{paid}",
                                          f"{refunded}")))
    return ("\r\n".join(out) + "\r\n").encode("utf-8")


def alipay_details_csv(trades: Sequence[Trade], day: date, *, account: str = "20881234567890120156") -> bytes:
    """The ``…_业务明细.csv`` file, GBK, with Alipay's comment header and footer."""
    out = ["#支付宝业务明细查询", f"#账号：[{account}]",
           f"#起始日期：[{day.year}年{day.month:02d}月{day.day:02d}日 00:00:00]   "
           f"终止日期：[{day.year}年{day.month:02d}月{day.day:02d}日 23:59:59]",
           f"#{RULE}业务明细列表{RULE[:-1]}", ALIPAY_HEADER]
    pays = [t for t in trades if t.kind is LineKind.PAYMENT]
    backs = [t for t in trades if t.kind is LineKind.REFUND]
    for t in trades:
        sign = "-" if t.kind is LineKind.REFUND else ""
        kind = "退款" if t.kind is LineKind.REFUND else "交易"
        amount = f"{sign}{t.amount}"
        cells = [t.transaction_id + "\t", t.out_trade_no + "\t", kind, "燃气费", _local(t.at), _local(t.at), "", "", "",
                 "", "张**(138****0000)", amount, amount, "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00", "0.00",
                 (t.refund_id + "\t") if t.refund_id else "", "0.00", "0.00", ""]
        out.append(",".join(cells))
    out.append(f"#{RULE}业务明细列表结束{RULE[:-5]}")
    paid = sum((t.amount for t in pays), Decimal("0.00"))
    out.append(f"#交易合计：{len(pays)}笔，商家实收共{paid}元，商家优惠共0.00元")
    out.append(f"#退款合计：{len(backs)}笔，商家实收退款共-{sum((t.amount for t in backs), Decimal('0.00'))}元，"
               "商家优惠退款共0.00元")
    out.append(f"#导出时间：[{day.year}年{day.month:02d}月{day.day:02d}日 09:12:33]")
    return ("\r\n".join(out) + "\r\n").encode("gbk")


def alipay_bill_zip(trades: Sequence[Trade], day: date, *, account: str = "20881234567890120156") -> bytes:
    """The zip the download URL serves: the details file and the summary file, GBK names as Alipay's."""
    stamp = day.strftime("%Y%m%d")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{account}_{stamp}_业务明细.csv", alipay_details_csv(trades, day, account=account))
        archive.writestr(f"{account}_{stamp}_业务明细(汇总).csv",
                         f"#支付宝业务汇总查询\r\n#账号：[{account}]\r\n".encode("gbk"))
    return buf.getvalue()


def ecny_statement(trades: Sequence[Trade], day: date, *, merchant: str = "M330600000001") -> bytes:
    """The e-CNY bank adapter's file: header, columns, one line per trade, footer with count and sum."""
    kinds = {LineKind.PAYMENT: "PAY", LineKind.REFUND: "REFUND", LineKind.REVERSAL: "REVERSE"}
    rows = [f"# ecny-statement,1,{merchant},{day.isoformat()}", "txnNo,orderNo,type,amount,txnTime,refundNo"]
    rows += [f"{t.transaction_id},{t.out_trade_no},{kinds[t.kind]},{t.amount:.2f},{_local(t.at)},"
             f"{t.refund_id if t.kind is LineKind.REFUND else ''}" for t in trades]
    rows.append(f"# total,{len(trades)},{sum((t.amount for t in trades), start=Decimal('0.00')):.2f}")
    return ("\n".join(rows) + "\n").encode("utf-8")


def unionpay_zm(trades: Sequence[Trade], *, mer_id: str = "777290058110097") -> bytes:
    """ZM lines: fixed-width fields, each followed by a space, GBK."""
    codes = {LineKind.PAYMENT: ("S22", "01"), LineKind.REFUND: ("S30", "04"), LineKind.REVERSAL: ("S31", "31")}
    out = []
    for n, t in enumerate(trades, start=1):
        code, txn_type = codes[t.kind]
        own_id = t.transaction_id if t.kind is LineKind.PAYMENT else (t.refund_id or f"{t.transaction_id[:15]}V")
        values = {0: code, 3: f"{n % 1_000_000:06d}", 4: t.at.astimezone(STATEMENT_TZ).strftime("%m%d%H%M%S"),
                  5: "6216***********0018", 6: f"{int(t.amount * 100):012d}", 9: own_id, 11: t.out_trade_no,
                  19: txn_type, 20: "01", 21: "000201", 26: "" if t.kind is LineKind.PAYMENT else t.transaction_id,
                  27: mer_id}
        cells = [values.get(i, "").encode("gbk").ljust(width)[:width] for i, width in enumerate(unionpay.WIDTHS)]
        out.append(b" ".join(cells) + b" ")
    return b"\r\n".join(out) + (b"\r\n" if out else b"")


class BillDownloadSimulator(HttpSimulator):
    """A channel's bill download centre: :meth:`publish` puts a file behind a random token and returns
    its URL (shaped like the ``bill_download_url`` Alipay's ``alipay.data.dataservice.bill.downloadurl.query``
    answers), which answers the file for ``valid_s`` seconds and 404 after; ``down`` answers 503."""

    def __init__(self, *, valid_s: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.valid_s = valid_s
        self.clock = clock
        self.files: dict[str, tuple[bytes, float]] = {}
        self.downloads = 0
        self.down = False

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/downloadBillFile.resource", self._download)]

    def publish(self, data: bytes, file_name: str, *, biz_date: date) -> str:
        token = secrets.token_hex(16)
        self.files[token] = (data, self.clock() + self.valid_s)
        return (f"{self.url}/downloadBillFile.resource?bizType=trade&fileType=csv.zip"
                f"&bizDates={biz_date:%Y%m%d}&downloadFileName={quote(file_name)}&token={token}")

    async def _download(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503, text="service unavailable")
        entry = self.files.get(request.query.get("token", ""))
        if entry is None or self.clock() > entry[1]:
            return web.Response(status=404, text="链接已失效")
        self.downloads += 1
        return web.Response(body=entry[0], content_type="application/zip")
