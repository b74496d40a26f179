from connectors.payments.wechatpay.connector import WeChatPayConnector
from connectors.payments.wechatpay.settings import WeChatPaySettings

__all__ = ["WeChatPayConnector", "WeChatPaySettings"]
