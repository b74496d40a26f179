"""What a channel's daily statement says, normalised: one :class:`StatementLine` per money movement.

Channel parsers (``connectors/payments/statements/``) turn a file in the channel's own format into a
:class:`Statement`; the core matches it against what it recorded (:mod:`core.reconciliation.matching`).
Amounts are ``Decimal`` yuan with two places, always positive: the line's ``kind`` says the direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum

from core.catalogue.messages import PaymentChannel
from core.errors import CoreError

STATEMENT_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
"""The channels cut their daily statements at Beijing midnight."""

CENT = Decimal("0.01")
ISO_SECONDS = "%Y-%m-%d %H:%M:%S"


class LineKind(StrEnum):
    PAYMENT = "payment"
    """Money received (WeChat ``SUCCESS``, Alipay 交易, UnionPay 消费)."""
    REFUND = "refund"
    """Money given back, all or part (WeChat ``REFUND``, Alipay 退款, UnionPay 退货)."""
    REVERSAL = "reversal"
    """The payment was cancelled by the channel (WeChat ``REVOKED``, UnionPay 消费撤销/冲正): no money kept."""


class DiscrepancyKind(StrEnum):
    MISSING_IN_CORE = "missing_in_core"
    """The channel took money (or gave it back) that the core never recorded."""
    MISSING_IN_STATEMENT = "missing_in_statement"
    """The core recorded a payment or refund of that day that the channel's statement does not list."""
    DUPLICATED = "duplicated"
    """The statement lists the same transaction (or refund) more than once."""
    AMOUNT_MISMATCH = "amount_mismatch"
    """Both know the transaction, with different amounts."""
    STATUS_MISMATCH = "status_mismatch"
    """Both know the transaction, but not in the same state (refunded or reversed on one side only)."""


class StatementError(CoreError):
    """The file is not a statement of that channel, or is damaged (the message names the line)."""


@dataclass(frozen=True, slots=True)
class StatementLine:
    kind: LineKind
    transaction_id: str
    """The channel's transaction id: what the core stores as ``core_payment.transaction_id``."""
    amount: Decimal
    at: datetime
    line_no: int
    out_trade_no: str = ""
    refund_id: str = ""
    """For refunds: the channel's refund id (WeChat 微信退款单号, Alipay 退款批次号/请求号)."""


@dataclass(frozen=True, slots=True)
class Statement:
    format: str
    """The parser that read it (``wechatpay``, ``alipay``, ``unionpay``)."""
    channel: PaymentChannel
    lines: list[StatementLine]
    statement_date: date | None = None
    """The day the file says it covers, when it says so (Alipay's header); the import checks it."""
    notes: list[str] = field(default_factory=list)


def money(text: str, *, line_no: int, what: str) -> Decimal:
    """A yuan amount as the statements print it (``1.00``, ``-3.00``, ``¥1,234.50``)."""
    cleaned = text.strip().lstrip("¥").replace(",", "")
    try:
        value = Decimal(cleaned)
    except ArithmeticError:
        raise StatementError(f"line {line_no}: {what} {text[:20]!r} is not an amount") from None
    if not value.is_finite():
        raise StatementError(f"line {line_no}: {what} {text[:20]!r} is not an amount")
    return value.quantize(CENT)


def local_time(text: str, fmt: str, *, line_no: int, what: str) -> datetime:
    """A Beijing wall-clock time as printed, made aware."""
    text = text.strip()
    try:
        if fmt == ISO_SECONDS and len(text) == 19:  # ten times faster than strptime, for the common format
            return datetime.fromisoformat(text).replace(tzinfo=STATEMENT_TZ)
        return datetime.strptime(text, fmt).replace(tzinfo=STATEMENT_TZ)
    except ValueError:
        raise StatementError(f"line {line_no}: {what} {text[:30]!r} is not a time like {fmt}") from None
