"""WeChat Pay's trade bill (交易账单, ``GET /v3/bill/tradebill``, ``bill_type=ALL``): UTF-8 CSV.

The first line names the columns; every data field is prefixed with a backtick (`` ` ``) so that
spreadsheets keep long numbers as text; the data ends with the summary header
``总交易单数,应结订单总金额,退款总金额,…`` and one line of backticked totals. Columns are found by
name, so the older layout (``总金额`` instead of ``应结订单金额``, no ``订单金额``) reads too. A gzip
download (``tar_type=GZIP``) is unpacked first.

States (交易状态): ``SUCCESS`` → a payment of 订单金额 (the order total, which is what the payment
notification's ``amount.total`` credited; 应结订单金额 when the column is absent); ``REFUND`` → a
refund of 申请退款金额 (else 退款金额) with 微信退款单号 as its id, once its 退款状态 is ``SUCCESS``
(``PROCESSING``, ``CHANGE`` and ``REFUNDCLOSE`` refunds returned no money yet and are noted, not
matched); ``REVOKED`` → a reversal. The summary's 总交易单数 must equal the data lines, or the file is
refused as truncated.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from connectors.payments.statements.common import Progress, gunzip, tick
from core.catalogue.messages import PaymentChannel
from core.reconciliation import LineKind, Statement, StatementError, StatementLine
from core.reconciliation.model import local_time, money

FORMAT = "wechatpay"
SUMMARY = "总交易单数"
REQUIRED = ("交易时间", "微信订单号", "商户订单号", "交易状态", "微信退款单号", "退款金额")
KINDS = {"SUCCESS": LineKind.PAYMENT, "REFUND": LineKind.REFUND, "REVOKED": LineKind.REVERSAL}


def _cells(raw: str, line_no: int) -> list[str]:
    if not raw.startswith("`"):
        raise StatementError(f"line {line_no}: a data field of WeChat's bill starts with a backtick: {raw[:40]!r}")
    return raw[1:].split(",`")


def parse(data: bytes, day: date, progress: Progress | None = None) -> Statement:
    """Read a trade bill of ``day`` (the bill itself does not print its date)."""
    if data[:2] == b"\x1f\x8b":
        data = gunzip(data)
    try:
        rows = data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise StatementError(f"WeChat's bill is UTF-8; byte {exc.start} is not") from None
    if not rows:
        raise StatementError("the file is empty")
    header = [h.strip().lstrip("`") for h in rows[0].split(",")]
    missing = [name for name in REQUIRED if name not in header]
    settle = "应结订单金额" if "应结订单金额" in header else "总金额"
    if missing or settle not in header:
        raise StatementError(f"line 1 is not a WeChat trade bill header: no {', '.join(missing or [settle])}")
    col = {name: i for i, name in enumerate(header)}
    amount_col = col.get("订单金额", col[settle])
    refund_col = col.get("申请退款金额", col["退款金额"])
    lines: list[StatementLine] = []
    pending: dict[str, int] = {}
    rows_read = 0
    declared: int | None = None
    for line_no, raw in enumerate(rows[1:], start=2):
        if not raw.strip():
            continue
        if raw.lstrip("`").startswith(SUMMARY):
            declared = _declared(rows, line_no)
            break
        cells = _cells(raw, line_no)
        rows_read += 1
        if len(cells) != len(header):
            raise StatementError(f"line {line_no}: {len(cells)} fields, the header has {len(header)}")
        state = cells[col["交易状态"]].strip()
        kind = KINDS.get(state)
        if kind is None:
            raise StatementError(f"line {line_no}: 交易状态 {state[:20]!r} is none of {', '.join(KINDS)}")
        at = local_time(cells[col["交易时间"]], "%Y-%m-%d %H:%M:%S", line_no=line_no, what="交易时间")
        if kind is LineKind.REFUND:
            refund_state = cells[col["退款状态"]].strip() if "退款状态" in col else "SUCCESS"
            if refund_state not in ("SUCCESS", ""):
                pending[refund_state] = pending.get(refund_state, 0) + 1
                continue
            amount = money(cells[refund_col], line_no=line_no, what="退款金额")
            refund_id = cells[col["微信退款单号"]].strip()
            if not refund_id or refund_id == "0":
                raise StatementError(f"line {line_no}: a REFUND line without 微信退款单号")
        else:
            amount = money(cells[amount_col] or cells[col[settle]], line_no=line_no, what="订单金额")
            if amount == 0 and amount_col != col[settle]:
                amount = money(cells[col[settle]], line_no=line_no, what=settle)
            refund_id = ""
        tx = cells[col["微信订单号"]].strip()
        if not tx:
            raise StatementError(f"line {line_no}: no 微信订单号")
        lines.append(StatementLine(kind, tx, abs(amount), at, line_no, cells[col["商户订单号"]].strip(), refund_id))
        tick(progress, len(lines))
    if declared is None:
        raise StatementError("the bill has no summary (总交易单数): it is truncated")
    if declared != rows_read:
        raise StatementError(f"the summary counts {declared} trades, the file lists {rows_read}: it is damaged")
    notes = [f"{n} refunds in state {state} left out (no money returned yet)" for state, n in sorted(pending.items())]
    return Statement(FORMAT, PaymentChannel.WECHAT, lines, notes=notes)


def _declared(rows: list[str], line_no: int) -> int:
    for raw in rows[line_no:]:
        if raw.strip():
            first = raw.split(",")[0].strip().lstrip("`")
            try:
                return int(Decimal(first))
            except ArithmeticError:
                break
    raise StatementError(f"line {line_no + 1}: the summary's 总交易单数 is missing or not a number")
