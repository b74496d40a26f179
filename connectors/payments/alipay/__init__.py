from connectors.payments.alipay.connector import AlipayConnector
from connectors.payments.alipay.settings import AlipaySettings

__all__ = ["AlipayConnector", "AlipaySettings"]
