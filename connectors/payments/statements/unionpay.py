"""UnionPay's merchant reconciliation file (全渠道商户对账文件, the ``INN<yymmdd>88ZM_<merId>`` file in
the zip that ``fileTransfer`` (``txnType=76``, ``fileType=00``) returns): one transaction per line in
fixed-width fields, each followed by one separator byte, GBK (the field widths are those of
《全渠道平台接入接口规范 第3部分 文件接口》 6.1, as UnionPay's own SDK reads them).

Used fields: 交易传输时间 (``MMDDhhmmss``), 交易金额 (12 digits, fen), 查询流水号 (``queryId``, the
transaction id the payment notification carried), 商户订单号 (``orderId``), 交易类型 (``txnType``:
``01`` consumption → payment; ``04`` return → refund of 原交易查询流水号, its own queryId the refund id;
``31`` consumption void → reversal of 原交易查询流水号). Other types (pre-authorisation …) are noted and
left out. The zip itself is accepted too (its ``ZM_`` member is read).
"""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime
from decimal import Decimal

from connectors.payments.statements.common import MAX_BYTES, Progress, tick
from core.catalogue.messages import PaymentChannel
from core.reconciliation import STATEMENT_TZ, LineKind, Statement, StatementError, StatementLine

FORMAT = "unionpay"
ENCODING = "gb18030"
WIDTHS = (3, 11, 11, 6, 10, 19, 12, 4, 2, 21, 2, 32, 2, 6, 10, 13, 13, 4, 15, 2, 2, 6, 2, 4, 32, 1, 21, 15, 1, 15, 32,
          13, 13, 8, 32, 13, 13, 12, 2, 1, 32, 98)
"""ZM file field widths in bytes; each field is followed by one separator byte."""
TXN_TIME, AMOUNT, QUERY_ID, ORDER_ID, TXN_TYPE, ORIG_QUERY_ID = 4, 6, 9, 11, 19, 26
KINDS = {"01": LineKind.PAYMENT, "04": LineKind.REFUND, "31": LineKind.REVERSAL}
_STARTS = [sum(WIDTHS[:i]) + i for i in range(len(WIDTHS))]
MIN_LENGTH = _STARTS[ORIG_QUERY_ID] + WIDTHS[ORIG_QUERY_ID]


def field(raw: bytes, index: int) -> str:
    start = _STARTS[index]
    return raw[start:start + WIDTHS[index]].decode(ENCODING, "replace").strip()


def _zm(data: bytes) -> bytes:
    if data[:4] != b"PK\x03\x04":
        return data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for m in archive.infolist():
                if "ZM_" in m.filename and "ZME_" not in m.filename:
                    if m.file_size > MAX_BYTES:
                        raise StatementError(f"{m.filename} is larger than {MAX_BYTES // (1024 * 1024)} MiB")
                    return archive.read(m)
    except zipfile.BadZipFile as exc:
        raise StatementError(f"the zip file is damaged: {exc}") from None
    raise StatementError("the zip holds no ZM file (INN…ZM_<merId>)")


def _time(text: str, day: date, line_no: int) -> datetime:
    try:
        at = datetime.strptime(f"{day.year}{text}", "%Y%m%d%H%M%S")
    except ValueError:
        raise StatementError(f"line {line_no}: 交易传输时间 {text!r} is not MMDDhhmmss") from None
    if at.month > day.month + 1:  # a December trade in January's file
        at = at.replace(year=day.year - 1)
    return at.replace(tzinfo=STATEMENT_TZ)


def parse(data: bytes, day: date, progress: Progress | None = None) -> Statement:
    """Read the ZM file of settlement day ``day``."""
    lines: list[StatementLine] = []
    skipped: dict[str, int] = {}
    for line_no, raw in enumerate(_zm(data).splitlines(), start=1):
        if not raw.strip():
            continue
        if len(raw) < MIN_LENGTH:
            raise StatementError(f"line {line_no}: {len(raw)} bytes, a ZM line has at least {MIN_LENGTH}")
        txn_type = field(raw, TXN_TYPE)
        kind = KINDS.get(txn_type)
        if kind is None:
            skipped[txn_type] = skipped.get(txn_type, 0) + 1
            continue
        amount_text = field(raw, AMOUNT)
        if not amount_text.isdigit():
            raise StatementError(f"line {line_no}: 交易金额 {amount_text!r} is not a number of fen")
        amount = (Decimal(int(amount_text)) / 100).quantize(Decimal("0.01"))
        query_id = field(raw, QUERY_ID)
        if kind is LineKind.PAYMENT:
            tx, refund_id = query_id, ""
        else:
            tx, refund_id = field(raw, ORIG_QUERY_ID), (query_id if kind is LineKind.REFUND else "")
        if not tx:
            raise StatementError(f"line {line_no}: no 查询流水号")
        lines.append(StatementLine(kind, tx, amount, _time(field(raw, TXN_TIME), day, line_no), line_no,
                                   field(raw, ORDER_ID), refund_id))
        tick(progress, len(lines))
    notes = [f"{n} lines of txnType {t} left out" for t, n in sorted(skipped.items())]
    return Statement(FORMAT, PaymentChannel.UNIONPAY, lines, notes=notes)
