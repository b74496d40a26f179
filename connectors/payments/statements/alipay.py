"""Alipay's trade details bill (业务明细, ``alipay.data.dataservice.bill.downloadurl.query`` with
``bill_type=trade``): a zip of two GBK CSV files, ``…_业务明细.csv`` and ``…_业务明细(汇总).csv``.

The details file opens with comment lines (``#支付宝业务明细查询``, ``#账号：[…]``,
``#起始日期：[2026年11月26日 00:00:00]   终止日期：[…]``, then
``#-----…业务明细列表-----``), has a column header and one line per trade or refund (values often
padded with a tab so spreadsheets keep them as text), and closes with ``#-----…业务明细列表结束-----``,
``#交易合计：N笔，…`` and ``#退款合计：M笔，…`` and the export time. Either the zip or the details CSV
alone is accepted.

业务类型 ``交易`` → a payment of 订单金额（元） with 支付宝交易号 as the transaction id; ``退款`` →
a refund of that trade (支付宝交易号 is the original trade's), amount without its minus sign, id
退款批次号/请求号. The footer's counts must equal the lines read.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import date

from connectors.payments.statements.common import MAX_BYTES, Progress, tick
from core.catalogue.messages import PaymentChannel
from core.reconciliation import LineKind, Statement, StatementError, StatementLine
from core.reconciliation.model import local_time, money

FORMAT = "alipay"
ENCODING = "gb18030"
"""Alipay writes GBK; GB 18030 reads every GBK file and the few characters GBK lacks."""
START, END = "业务明细列表", "业务明细列表结束"
KINDS = {"交易": LineKind.PAYMENT, "退款": LineKind.REFUND}
REQUIRED = ("支付宝交易号", "商户订单号", "业务类型", "完成时间", "订单金额（元）")


def _details(data: bytes) -> bytes:
    if data[:4] != b"PK\x03\x04":
        return data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            for m in members:
                name = m.filename if m.flag_bits & 0x800 else m.filename.encode("cp437").decode(ENCODING, "replace")
                if "汇总" not in name and name.lower().endswith(".csv"):
                    if m.file_size > MAX_BYTES:
                        raise StatementError(f"{name} is larger than {MAX_BYTES // (1024 * 1024)} MiB")
                    return archive.read(m)
    except zipfile.BadZipFile as exc:
        raise StatementError(f"the zip file is damaged: {exc}") from None
    raise StatementError("the zip holds no details file (…_业务明细.csv)")


def parse(data: bytes, day: date, progress: Progress | None = None) -> Statement:
    """Read the trade details of ``day``; the file's own 起始日期 must be that day."""
    try:
        text = _details(data).decode(ENCODING)
    except UnicodeDecodeError as exc:
        raise StatementError(f"Alipay's bill is GBK; byte {exc.start} is not") from None
    rows = text.splitlines()
    start = next((i for i, r in enumerate(rows) if r.startswith("#") and START in r and END not in r), None)
    if start is None or start + 1 >= len(rows):
        raise StatementError(f"no '#-----{START}-----' line: not Alipay's trade details")
    header = [h.strip() for h in next(csv.reader([rows[start + 1]]))]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise StatementError(f"line {start + 2}: the header has no {', '.join(missing)}")
    col = {name: i for i, name in enumerate(header)}
    stated = _stated_day(rows[:start])
    lines: list[StatementLine] = []
    end = None
    for line_no in range(start + 3, len(rows) + 1):
        raw = rows[line_no - 1]
        if raw.startswith("#"):
            if END in raw:
                end = line_no
                break
            raise StatementError(f"line {line_no}: a comment inside the details: {raw[:40]!r}")
        if not raw.strip():
            continue
        cells = [c.strip() for c in next(csv.reader([raw]))]
        if len(cells) < len(header):
            raise StatementError(f"line {line_no}: {len(cells)} fields, the header has {len(header)}")
        kind = KINDS.get(cells[col["业务类型"]])
        if kind is None:
            raise StatementError(f"line {line_no}: 业务类型 {cells[col['业务类型']][:10]!r} is neither 交易 nor 退款")
        amount = money(cells[col["订单金额（元）"]], line_no=line_no, what="订单金额")
        refund_id = cells[col["退款批次号/请求号"]] if kind is LineKind.REFUND and "退款批次号/请求号" in col else ""
        if kind is LineKind.REFUND and not refund_id:
            raise StatementError(f"line {line_no}: a refund without 退款批次号/请求号")
        at = local_time(cells[col["完成时间"]], "%Y-%m-%d %H:%M:%S", line_no=line_no, what="完成时间")
        lines.append(StatementLine(kind, cells[col["支付宝交易号"]], abs(amount), at, line_no,
                                   cells[col["商户订单号"]], refund_id))
        tick(progress, len(lines))
    if end is None:
        raise StatementError(f"no '#-----{END}-----' line: the file is truncated")
    _check_totals(rows[end:], lines)
    return Statement(FORMAT, PaymentChannel.ALIPAY, lines, statement_date=stated or day)


def _stated_day(head: list[str]) -> date | None:
    for raw in head:
        m = re.search(r"起始日期：\[(\d{4})年(\d{1,2})月(\d{1,2})日", raw)
        if m:
            return date(int(m[1]), int(m[2]), int(m[3]))
    return None


def _check_totals(footer: list[str], lines: list[StatementLine]) -> None:
    want = {"交易合计": LineKind.PAYMENT, "退款合计": LineKind.REFUND}
    for raw in footer:
        for label, kind in want.items():
            m = re.search(label + r"：\s*(\d+)\s*笔", raw)
            if m and int(m[1]) != sum(1 for x in lines if x.kind is kind):
                got = sum(1 for x in lines if x.kind is kind)
                raise StatementError(f"#{label} says {m[1]}, the file lists {got}: it is damaged")
