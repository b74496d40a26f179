"""e-CNY orders and the payments the bank reports, in our terms.

An order is the bank's JSON object ``{merchantNo, orderNo, txnNo, amount, currency, status, paidAt,
walletId, attach}``: ``amount`` is integer fen (分); ``txnNo`` is the bank's transaction number for
the digital-RMB payment, the same in every resend and query, so it is the transaction id;
``walletId`` (the payer's wallet, as the bank masks it) is personal (``payer_ref``). Order numbers
follow WeChat Pay's scheme (``{account_id}-{tag}``, :mod:`connectors.payments.wechatpay.transaction`),
and ``attach`` carries the account id too, for orders created elsewhere.

A notification is ``{notifyId, eventType, createTime, order}``; only ``PAYMENT.SUCCESS`` is taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from connectors.payments.notify import problems
from connectors.payments.wechatpay.transaction import account_of
from core.catalogue.messages import PaymentChannel, PaymentReceived

PAID_EVENT = "PAYMENT.SUCCESS"
SUCCESS = "SUCCESS"


class NotPayable(ValueError):
    """A verified order that is not a payment we can credit; the message says why."""


def payment_from(order: Mapping[str, Any], *, merchant_no: str) -> PaymentReceived:
    """``payment.received`` for a paid order of ours; ``NotPayable`` otherwise."""
    if order.get("merchantNo") != merchant_no:
        raise NotPayable(f"order of merchant {str(order.get('merchantNo'))[:32]!r}, not ours ({merchant_no})")
    if order.get("status") != SUCCESS:
        raise NotPayable(f"status is {str(order.get('status'))[:20]!r}, not {SUCCESS}")
    amount = order.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise NotPayable("amount is not an integer number of fen")
    order_no = str(order.get("orderNo") or "")
    account = account_of(order_no) or str(order.get("attach") or "").strip()
    if not account:
        raise NotPayable(f"orderNo {order_no[:32]!r} names no account and attach is empty")
    wallet = order.get("walletId")
    try:
        return PaymentReceived.model_validate({
            "channel": PaymentChannel.ECNY, "transaction_id": str(order.get("txnNo") or ""),
            "out_trade_no": order_no, "account_id": account, "amount": Decimal(amount).scaleb(-2),
            "currency": str(order.get("currency") or "CNY"), "paid_at": order.get("paidAt"),
            "payer_ref": wallet if isinstance(wallet, str) and wallet else None,
        })
    except ValidationError as exc:
        raise NotPayable(f"not a valid payment: {problems(exc)}") from None
