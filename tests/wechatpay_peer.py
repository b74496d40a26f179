"""The platform's side of WeChat Pay notifications, built with WeChat Pay's own SDK code.

``wechatpayv3.utils.rsa_sign`` signs (SHA256withRSA over ``timestamp\\nnonce\\nbody\\n``) and
``cryptography``'s ``AESGCM`` encrypts the resource, as the platform does; ``sdk_accepts`` runs the
SDK's own notification check (``WeChatPay.callback``) so a test can show its peer is genuine.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from functools import cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.utils import rsa_sign

from connectors.payments.wechatpay.simulator import new_key, private_pem, public_pem

MCHID = "1230000109"
APPID = "wxd678efh567hg6787"
API_V3_KEY = "0123456789abcdefABCDEF0123456789"
MERCHANT_SERIAL = "444F4864EA9B34415A7D5B8F2F4E5B6C7D8E9F01"
PUBLIC_KEY_ID = "PUB_KEY_ID_0114232134912410000000000000"


@cache
def keys() -> dict[str, rsa.RSAPrivateKey]:
    """Key pairs made once per test run: the merchant's, the platform's, and a stranger's."""
    return {"merchant": new_key(), "platform": new_key(), "stranger": new_key()}


def connector_settings(**overrides: Any) -> dict[str, Any]:
    k = keys()
    values: dict[str, Any] = {
        "kind": "wechatpay", "mchid": MCHID, "appid": APPID, "api_v3_key": API_V3_KEY,
        "merchant_private_key": private_pem(k["merchant"]), "merchant_serial_no": MERCHANT_SERIAL,
        "platform_keys": {PUBLIC_KEY_ID: public_pem(k["platform"])},
    }
    values.update(overrides)
    return values


def transaction(account_id: str, *, fen: int = 12345, out_trade_no: str | None = None,
                transaction_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "appid": APPID, "mchid": MCHID, "out_trade_no": out_trade_no or f"{account_id}-B1A2C",
        "transaction_id": transaction_id or f"4200{secrets.randbelow(10**24):024d}", "trade_type": "NATIVE",
        "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "CMC", "attach": account_id,
        "success_time": "2026-03-05T09:30:00+08:00", "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": fen, "payer_total": fen, "currency": "CNY", "payer_currency": "CNY"}, **extra,
    }


def notification(txn: dict[str, Any], *, event_type: str = "TRANSACTION.SUCCESS", notification_id: str | None = None,
                 api_v3_key: str = API_V3_KEY) -> bytes:
    """The body: the transaction encrypted under the APIv3 key (AEAD_AES_256_GCM, AAD "transaction")."""
    nonce = secrets.token_hex(6)
    ciphertext = AESGCM(api_v3_key.encode()).encrypt(nonce.encode(), json.dumps(txn).encode(), b"transaction")
    return json.dumps({
        "id": notification_id or "EV-018E2A5B7C", "create_time": "2026-03-05T09:30:01+08:00",
        "resource_type": "encrypt-resource", "event_type": event_type, "summary": "支付成功",
        "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                     "ciphertext": base64.b64encode(ciphertext).decode(), "associated_data": "transaction",
                     "nonce": nonce},
    }, ensure_ascii=False).encode()


def signed(body: bytes, *, timestamp: int | None = None, nonce: str | None = None, serial: str = PUBLIC_KEY_ID,
           signer: str = "platform", signature: str | None = None) -> dict[str, str]:
    """The platform's headers for ``body``, signed with the SDK's ``rsa_sign``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_hex(16)
    if signature is None:
        signature = rsa_sign(keys()[signer], f"{stamp}\n{nonce}\n{body.decode()}\n")
    return {"Wechatpay-Timestamp": stamp, "Wechatpay-Nonce": nonce, "Wechatpay-Signature": signature,
            "Wechatpay-Serial": serial, "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
            "Content-Type": "application/json"}


def sdk(gateway: str | None = None) -> WeChatPay:
    """The merchant SDK, configured with the platform's public key (no certificate download)."""
    k = keys()
    pay = WeChatPay(wechatpay_type=WeChatPayType.NATIVE, mchid=MCHID, private_key=private_pem(k["merchant"]),
                    cert_serial_no=MERCHANT_SERIAL, appid=APPID, apiv3_key=API_V3_KEY,
                    public_key=public_pem(k["platform"]), public_key_id=PUBLIC_KEY_ID)
    if gateway is not None:
        pay._core._gate_way = gateway
    return pay


def sdk_accepts(headers: dict[str, str], body: bytes) -> dict[str, Any] | None:
    """What the SDK's own notification check makes of it: the decrypted notification, or None."""
    result: dict[str, Any] | None = sdk().callback(headers, body)
    return result
