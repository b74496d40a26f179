"""The e-CNY bank adapter's daily reconciliation file (对账文件).

Digital RMB reaches a merchant through an operating bank, and each bank has its own file; there is no
public standard. This is the format of the project's bank adapter (``connectors/payments/ecny``), the
same way its notifications are: UTF-8 CSV, a header comment naming the merchant and the day, a column
line, one line per transaction, and a footer with the count and the sum that the parser checks::

    # ecny-statement,1,<merchant>,<YYYY-MM-DD>
    txnNo,orderNo,type,amount,txnTime,refundNo
    E2026112600000001,A1-X1,PAY,86.40,2026-11-26 09:30:00,
    E2026112600000002,A1-X1,REFUND,10.00,2026-11-26 11:00:00,R0001
    # total,2,96.40

``type`` is ``PAY`` (payment), ``REFUND`` (its ``txnNo`` is the paid transaction's, ``refundNo`` the
refund's own) or ``REVERSE`` (the bank cancelled the payment); amounts are yuan with two places, times
Beijing wall-clock. A bank whose file differs needs its own parser beside this one.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from connectors.payments.statements.common import MAX_BYTES, Progress, tick
from core.catalogue.messages import PaymentChannel
from core.reconciliation import LineKind, Statement, StatementError, StatementLine
from core.reconciliation.model import ISO_SECONDS, local_time, money

FORMAT = "ecny"
MAGIC = "# ecny-statement"
COLUMNS = "txnNo,orderNo,type,amount,txnTime,refundNo"
KINDS = {"PAY": LineKind.PAYMENT, "REFUND": LineKind.REFUND, "REVERSE": LineKind.REVERSAL}


def parse(data: bytes, day: date, progress: Progress | None = None) -> Statement:
    """Read the file of ``day``; a damaged file is refused naming the line."""
    if len(data) > MAX_BYTES:
        raise StatementError(f"the statement is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StatementError(f"the file is not UTF-8 (byte {exc.start})") from None
    rows = text.splitlines()
    if not rows or not rows[0].startswith(MAGIC + ","):
        raise StatementError(f"line 1: not an e-CNY statement (it starts with {MAGIC!r})")
    head = rows[0].split(",")
    if len(head) != 4:
        raise StatementError("line 1: the header is '# ecny-statement,1,<merchant>,<YYYY-MM-DD>'")
    try:
        stated = date.fromisoformat(head[3].strip())
    except ValueError:
        raise StatementError(f"line 1: {head[3][:20]!r} is not a day") from None
    if len(rows) < 3 or rows[1].strip() != COLUMNS:
        raise StatementError(f"line 2: the columns are {COLUMNS!r}")
    lines: list[StatementLine] = []
    footer: list[str] | None = None
    for line_no, row in enumerate(rows[2:], start=3):
        if not row.strip():
            continue
        if row.startswith("# total,"):
            footer = row.split(",")
            break
        cells = row.split(",")
        if len(cells) != 6:
            raise StatementError(f"line {line_no}: {len(cells)} fields, a transaction line has 6")
        txn_no, order_no, kind_text, amount_text, at_text, refund_no = (c.strip() for c in cells)
        kind = KINDS.get(kind_text)
        if kind is None:
            raise StatementError(f"line {line_no}: type {kind_text[:20]!r} is not PAY, REFUND or REVERSE")
        if not txn_no:
            raise StatementError(f"line {line_no}: no txnNo")
        lines.append(StatementLine(kind, txn_no, money(amount_text, line_no=line_no, what="amount"),
                                   local_time(at_text, ISO_SECONDS, line_no=line_no, what="txnTime"), line_no,
                                   order_no, refund_no if kind is LineKind.REFUND else ""))
        tick(progress, len(lines))
    if footer is None or len(footer) != 3:
        raise StatementError("the footer '# total,<count>,<sum>' is missing: the file is cut short")
    count = footer[1].strip()
    total = money(footer[2], line_no=len(rows), what="the footer's sum")
    found = sum((line.amount for line in lines), start=Decimal("0.00"))
    if count != str(len(lines)) or total != found:
        raise StatementError(f"the footer says {count} lines and {total} yuan; the file has {len(lines)} lines "
                             f"and {found} yuan: it is damaged or cut short")
    return Statement(FORMAT, PaymentChannel.ECNY, lines, statement_date=stated)
