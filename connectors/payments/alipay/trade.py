"""Alipay trades in our terms: which states credit, and a paid trade as ``payment.received``.

**Order numbers** are the WeChat Pay connector's (:mod:`connectors.payments.wechatpay.transaction`):
``out_trade_no = "{account_id}-{tag}"``, at most 32 characters, which also fits Alipay's 64; a bill's
order number is derived from the bill id, so the same bill gets the same number again. An order
number in another scheme names its account in ``passback_params`` (URL-encoded by the merchant, as
Alipay requires; the existing ``alipay-notify`` mapping reads it too).

**States** (``trade_status``): ``TRADE_SUCCESS`` and ``TRADE_FINISHED`` are paid and credit (once per
``trade_no``: a trade that is finished after it succeeded is the same payment); ``WAIT_BUYER_PAY``
and ``TRADE_CLOSED`` credit nothing and are acknowledged. ``total_amount`` is yuan with at most two
places; ``gmt_payment`` is Beijing time ``yyyy-MM-dd HH:mm:ss``; the buyer's id is personal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import unquote

from pydantic import ValidationError

from connectors.payments.wechatpay.transaction import account_of, bill_order_no, top_up_order_no
from core.catalogue.messages import PaymentChannel, PaymentReceived

__all__ = ["ACKNOWLEDGED", "BEIJING", "PAID", "NotPayable", "account_of", "beijing_time", "bill_order_no",
           "payment_from", "top_up_order_no", "yuan"]

BEIJING = timezone(timedelta(hours=8))
PAID = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
ACKNOWLEDGED = frozenset({"WAIT_BUYER_PAY", "TRADE_CLOSED"})
_YUAN = re.compile(r"\d{1,11}\.\d{2}")
_TIME = "%Y-%m-%d %H:%M:%S"


class NotPayable(ValueError):
    """A verified trade that is not a payment we can credit; the message says why."""


def yuan(text: str) -> Decimal:
    """``"168.00"`` → ``Decimal("168.00")``. Alipay always writes two places, so anything else (an
    integer that could be fen, three places, a sign, an exponent) is a ValueError."""
    if not _YUAN.fullmatch(text):
        raise ValueError(f"{text[:20]!r} is not an amount in yuan with two places")
    return Decimal(text)


def beijing_time(text: str) -> datetime:
    """Alipay's ``yyyy-MM-dd HH:mm:ss`` (Beijing time) as an aware datetime."""
    return datetime.strptime(text, _TIME).replace(tzinfo=BEIJING)


def payment_from(trade: Mapping[str, str]) -> PaymentReceived:
    """``payment.received`` for a paid trade (a notification's or a query's fields); ``NotPayable``
    otherwise."""
    state = trade.get("trade_status", "")
    if state not in PAID:
        raise NotPayable(f"trade_status is {state[:20]!r}, not TRADE_SUCCESS or TRADE_FINISHED")
    out_trade_no = trade.get("out_trade_no", "")
    account = account_of(out_trade_no) or unquote(trade.get("passback_params", "")).strip()
    if not account:
        raise NotPayable(f"out_trade_no {out_trade_no[:32]!r} names no account and passback_params is empty")
    try:
        amount = yuan(trade.get("total_amount", ""))
    except ValueError as exc:
        raise NotPayable(f"total_amount: {exc}") from None
    try:
        paid_at = beijing_time(trade.get("gmt_payment") or trade.get("send_pay_date") or "")
    except ValueError:
        raise NotPayable("gmt_payment is not yyyy-MM-dd HH:mm:ss") from None
    payer = trade.get("buyer_id") or trade.get("buyer_open_id") or trade.get("buyer_user_id")
    try:
        return PaymentReceived.model_validate({
            "channel": PaymentChannel.ALIPAY, "transaction_id": trade.get("trade_no", ""),
            "out_trade_no": out_trade_no, "account_id": account, "amount": amount, "currency": "CNY",
            "paid_at": paid_at, "payer_ref": payer or None,
        })
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise NotPayable(f"not a valid payment: {problems}") from None
