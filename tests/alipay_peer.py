"""Alipay's side of notifications, built with python-alipay-sdk's own code.

``alipay.AliPay.sign_data`` signs (SHA256withRSA over the sorted ``k=v`` string) and URL-encodes the
form, as Alipay does when it POSTs a notification; ``sdk_accepts`` runs the SDK's own notification
check (``AliPay.verify``) so a test can show its peer is genuine. The SDK is configured "as Alipay"
(its private key is Alipay's) to sign, and "as the merchant" (with Alipay's public key) to verify.
"""

from __future__ import annotations

import secrets
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

from alipay import AliPay
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.payments.alipay.simulator import beijing_now, new_key, private_pem, public_pem

APP_ID = "2021004112345678"
SELLER_ID = "2088102146225135"
BUYER_ID = "2088202954065786"


@cache
def keys() -> dict[str, rsa.RSAPrivateKey]:
    """Key pairs made once per test run: the application's, Alipay's, and a stranger's."""
    return {"app": new_key(), "alipay": new_key(), "stranger": new_key()}


def connector_settings(**overrides: Any) -> dict[str, Any]:
    k = keys()
    values: dict[str, Any] = {"kind": "alipay", "app_id": APP_ID, "seller_id": SELLER_ID,
                              "app_private_key": private_pem(k["app"]), "alipay_public_key": public_pem(k["alipay"])}
    values.update(overrides)
    return values


def as_alipay(signer: str = "alipay") -> AliPay:
    """The SDK holding Alipay's private key (or a stranger's): it signs what Alipay signs."""
    k = keys()
    return AliPay(appid=APP_ID, app_private_key_string=private_pem(k[signer]),
                  alipay_public_key_string=public_pem(k["app"]), sign_type="RSA2")


def as_merchant(gateway: str | None = None) -> AliPay:
    """The SDK as a merchant uses it: our application key signs, Alipay's public key verifies."""
    k = keys()
    sdk = AliPay(appid=APP_ID, app_private_key_string=private_pem(k["app"]),
                 alipay_public_key_string=public_pem(k["alipay"]), sign_type="RSA2")
    if gateway is not None:
        sdk._gateway = gateway
    return sdk


def trade(account_id: str, *, total: str = "123.45", status: str = "TRADE_SUCCESS", out_trade_no: str | None = None,
          trade_no: str | None = None, **extra: str) -> dict[str, str]:
    """A notification's fields, unsigned (no sign, no sign_type)."""
    fields = {
        "notify_time": "", "notify_type": "trade_status_sync", "notify_id": secrets.token_hex(17),
        "app_id": APP_ID, "auth_app_id": APP_ID, "charset": "utf-8", "version": "1.0",
        "trade_no": trade_no or f"20260305220014{secrets.randbelow(10**14):014d}",
        "out_trade_no": out_trade_no or f"{account_id}-B1A2C", "buyer_id": BUYER_ID, "seller_id": SELLER_ID,
        "trade_status": status, "total_amount": total, "receipt_amount": total, "buyer_pay_amount": total,
        "subject": "燃气费 2026-02", "gmt_create": "2026-03-05 09:29:50", "gmt_payment": "2026-03-05 09:30:00",
        "fund_bill_list": f'[{{"amount":"{total}","fundChannel":"ALIPAYACCOUNT"}}]',
    }
    fields.update(extra)
    return fields


def signed_form(fields: dict[str, str], *, signer: str = "alipay", sign_type: str = "RSA2") -> bytes:
    """The body Alipay POSTs: the SDK signs the fields (sign_type is not signed in a notification)
    and URL-encodes them; ``sign_type`` is added after."""
    fields = {**fields, "notify_time": fields["notify_time"] or beijing_now()}
    body = as_alipay(signer).sign_data(dict(fields))
    return f"{body}&sign_type={sign_type}".encode()


def form_params(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


def sdk_accepts(body: bytes) -> bool:
    """The SDK's own notification check over the decoded form."""
    params = form_params(body)
    signature = params.pop("sign")
    return bool(as_merchant().verify(params, signature))
