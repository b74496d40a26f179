"""Customers paying their bills through WeChat Pay, on the wire: the demo's WeChat side.

For each bill paid by WeChat the merchant creates a Native order through the hub's own WeChat Pay
client (signed with the merchant key; the platform simulator checks the signature), the payer "scans
and pays" (:meth:`WeChatPayPlatformSimulator.pay`), and the platform POSTs its ``TRANSACTION.SUCCESS``
notification, encrypted with the APIv3 key and signed with the platform key, to the hub's
``/partners/wechatpay/notify``, where the connector verifies, decrypts and publishes it. When a
payment is "notified twice" the platform sends a freshly signed copy, as it does after a lost answer.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Any

from connectors.demo.payments import Payment
from connectors.payments.wechatpay.client import WeChatPayClient
from connectors.payments.wechatpay.simulator import WeChatPayPlatformSimulator, new_key, private_pem, public_pem
from connectors.payments.wechatpay.transaction import bill_order_no

MCHID = "1230000109"
APPID = "wxd678efh567hg6787"
MERCHANT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"


@dataclass
class DemoWeChat:
    """The platform simulator and the merchant settings the demo's ``wechatpay`` connector gets."""

    platform: WeChatPayPlatformSimulator
    connector_settings: dict[str, Any]

    @classmethod
    def create(cls) -> DemoWeChat:
        merchant = new_key()
        api_v3_key = secrets.token_hex(16)  # 32 characters, as the merchant platform sets it
        platform = WeChatPayPlatformSimulator(mchid=MCHID, appid=APPID, api_v3_key=api_v3_key,
                                              merchant_public_key=public_pem(merchant))
        settings = {"kind": "wechatpay", "mchid": MCHID, "appid": APPID, "api_v3_key": api_v3_key,
                    "merchant_private_key": private_pem(merchant), "merchant_serial_no": MERCHANT_SERIAL,
                    "platform_keys": {platform.public_key_id: platform.platform_public_pem}}
        return cls(platform, settings)

    def base_url_settings(self) -> dict[str, Any]:
        """The connector's settings, pointed at the running simulator."""
        return {**self.connector_settings, "base_url": self.platform.url}


class WeChatPayer:
    """Pays ``Payment`` plans of channel ``wechat`` through the platform simulator and the hub."""

    def __init__(self, platform: WeChatPayPlatformSimulator, client: WeChatPayClient, notify_url: str) -> None:
        self.platform = platform
        self.client = client
        self.notify_url = notify_url
        self.refused: list[tuple[int, bytes]] = []

    async def pay(self, payment: Payment, twice: bool) -> Payment:
        """Order, pay and notify; returns the payment with the platform's transaction id and our order number."""
        out_trade_no = bill_order_no(payment.account_id, payment.bill_id)
        await self.client.native_order(out_trade_no=out_trade_no, description="管道天然气 燃气费",
                                       amount=payment.amount, attach=payment.account_id)
        transaction = self.platform.pay(out_trade_no)
        for _ in range(2 if twice else 1):
            headers, body = self.platform.notification(transaction)
            status, answer = await self.platform.send(self.notify_url, headers, body)
            if status != 204:
                self.refused.append((status, answer))
        return replace(payment, transaction_id=str(transaction["transaction_id"]), out_trade_no=out_trade_no,
                       payer_ref=str(transaction["payer"]["openid"]))
