"""Orders we create and the transactions WeChat Pay reports, in our terms.

**Order numbers.** An order we create for a gas account has ``out_trade_no = "{account_id}-{tag}"``
(at most 32 characters, WeChat's limit, so account ids of up to 29): the account is everything
before the last ``-`` and the tag is 2-5 characters of ``[0-9A-Z]``. A bill's order takes its tag
from the bill id and an attempt number, so creating the order for a bill again gives the same number
(the platform answers the same QR code while the order is open); a top-up's tag is random.
``attach`` carries the account id as well, the convention of orders other merchant systems create
(the ``wechat-transaction`` mapping reads it), and is used when ``out_trade_no`` is not one of ours.

**Transactions.** A ``TRANSACTION.SUCCESS`` notification's resource (or an order query's answer) with
``trade_state`` SUCCESS for our merchant becomes ``payment.received``: amounts are integer fen and
become ``Decimal`` yuan; ``success_time`` is RFC 3339; the payer's openid is personal (``payer_ref``).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from core.catalogue.messages import PaymentChannel, PaymentReceived

OUT_TRADE_NO_MAX = 32
_TAG = re.compile(r"[0-9A-Z]{2,5}")
_ACCOUNT = re.compile(r"[0-9A-Za-z_-]{1,29}")


class NotPayable(ValueError):
    """A verified transaction that is not a payment we can credit; the message says why."""


def _tag(seed: bytes, size: int) -> str:
    return base64.b32encode(hashlib.sha256(seed).digest()).decode()[:size]


def _room(account_id: str) -> int:
    if not _ACCOUNT.fullmatch(account_id):
        raise ValueError(f"account id {account_id[:40]!r} cannot be carried in out_trade_no (1-29 of [0-9A-Za-z_-])")
    return min(5, OUT_TRADE_NO_MAX - len(account_id) - 1)


def bill_order_no(account_id: str, bill_id: str, attempt: int = 0) -> str:
    """The order number for paying ``bill_id``; a closed or expired order is created anew with
    ``attempt + 1``."""
    return f"{account_id}-{_tag(f'{bill_id}:{attempt}'.encode(), _room(account_id))}"


def top_up_order_no(account_id: str) -> str:
    """A fresh order number for an amount paid onto the account (prepaid top-up, credit)."""
    return f"{account_id}-{_tag(secrets.token_bytes(16), _room(account_id))}"


def account_of(out_trade_no: str) -> str | None:
    """The account an order number of ours names; ``None`` for order numbers in another scheme."""
    account, sep, tag = out_trade_no.rpartition("-")
    if not sep or not _TAG.fullmatch(tag) or not _ACCOUNT.fullmatch(account):
        return None
    return account


def payment_from(transaction: Mapping[str, Any], *, mchid: str) -> PaymentReceived:
    """``payment.received`` for a paid transaction of ours; ``NotPayable`` otherwise."""
    if transaction.get("mchid") != mchid:
        raise NotPayable(f"transaction of merchant {str(transaction.get('mchid'))[:32]!r}, not ours ({mchid})")
    state = transaction.get("trade_state")
    if state != "SUCCESS":
        raise NotPayable(f"trade_state is {str(state)[:20]!r}, not SUCCESS")
    out_trade_no = str(transaction.get("out_trade_no") or "")
    account = account_of(out_trade_no) or str(transaction.get("attach") or "").strip()
    if not account:
        raise NotPayable(f"out_trade_no {out_trade_no[:32]!r} names no account and attach is empty")
    amount = transaction.get("amount")
    total = amount.get("total") if isinstance(amount, Mapping) else None
    if not isinstance(total, int) or isinstance(total, bool):
        raise NotPayable("amount.total is not an integer number of fen")
    payer = transaction.get("payer")
    openid = payer.get("openid") if isinstance(payer, Mapping) else None
    try:
        return PaymentReceived.model_validate({
            "channel": PaymentChannel.WECHAT, "transaction_id": str(transaction.get("transaction_id") or ""),
            "out_trade_no": out_trade_no, "account_id": account, "amount": Decimal(total).scaleb(-2),
            "currency": str(amount.get("currency") or "CNY") if isinstance(amount, Mapping) else "CNY",
            "paid_at": transaction.get("success_time"),
            "payer_ref": openid if isinstance(openid, str) and openid else None,
        })
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise NotPayable(f"not a valid payment: {problems}") from None
