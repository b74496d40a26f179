"""UnionPay back-end notifications (后台通知) in our terms.

A consumption (``txnType=01``) of our merchant (``merId``) whose ``respCode`` is ``00`` (success) or
``A6`` (success with a defect, still money received) becomes ``payment.received``: the transaction id
is UnionPay's ``queryId`` (its serial for the transaction, the same in every resend), the order number
is our ``orderId``, ``txnAmt`` is integer fen, ``txnTime`` is Beijing time ``yyyyMMddHHmmss``. The
account travels in ``reqReserved`` (请求方保留域, echoed back unchanged), because ``orderId`` allows
only letters and digits. The masked card number (``accNo``) is personal (``payer_ref``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from pydantic import ValidationError

from connectors.payments.notify import problems
from core.catalogue.messages import PaymentChannel, PaymentReceived

BEIJING = timezone(timedelta(hours=8))
PAID_CODES = frozenset({"00", "A6"})
CONSUMPTION = "01"
CNY = "156"


class NotPayable(ValueError):
    """A genuine notification that is not a payment we can credit; the message says why."""


class NotPaid(NotPayable):
    """A genuine notification of a transaction that did not succeed (``respCode`` other than 00/A6)."""


def txn_time(fields: Mapping[str, str]) -> datetime:
    """``txnTime`` (Beijing, ``yyyyMMddHHmmss``) as an aware datetime; ``NotPayable`` when malformed."""
    raw = fields.get("txnTime", "")
    try:
        if len(raw) != 14 or not raw.isdigit():
            raise ValueError(raw)
        return datetime.strptime(raw, "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
    except ValueError:
        raise NotPayable(f"txnTime {raw[:20]!r} is not yyyyMMddHHmmss") from None


def payment_from(fields: Mapping[str, str], *, mer_id: str) -> PaymentReceived:
    """``payment.received`` for a successful consumption of ours; ``NotPaid``/``NotPayable`` otherwise."""
    if fields.get("merId") != mer_id:
        raise NotPayable(f"transaction of merchant {fields.get('merId', '')[:20]!r}, not ours ({mer_id})")
    if fields.get("txnType") != CONSUMPTION:
        raise NotPayable(f"txnType {fields.get('txnType', '')[:4]!r} is not 01 (consumption)")
    code = fields.get("respCode", "")
    if code not in PAID_CODES:
        raise NotPaid(f"respCode {code[:4]!r} ({fields.get('respMsg', '')[:60]}) is not a success")
    amount = fields.get("txnAmt", "")
    if not amount.isdigit() or len(amount) > 12:
        raise NotPayable(f"txnAmt {amount[:14]!r} is not a whole number of fen")
    if fields.get("currencyCode", CNY) != CNY:
        raise NotPayable(f"currencyCode {fields.get('currencyCode', '')[:4]!r} is not 156 (CNY)")
    account = fields.get("reqReserved", "").strip()
    if not account:
        raise NotPayable(f"order {fields.get('orderId', '')[:40]!r}: reqReserved names no account")
    try:
        return PaymentReceived.model_validate({
            "channel": PaymentChannel.UNIONPAY, "transaction_id": fields.get("queryId", ""),
            "out_trade_no": fields.get("orderId", ""), "account_id": account,
            "amount": Decimal(int(amount)).scaleb(-2), "currency": "CNY", "paid_at": txn_time(fields),
            "payer_ref": fields.get("accNo") or None,
        })
    except ValidationError as exc:
        raise NotPayable(f"not a valid payment: {problems(exc)}") from None
