from connectors.payments.unionpay.connector import UnionPayConnector
from connectors.payments.unionpay.settings import UnionPaySettings

__all__ = ["UnionPayConnector", "UnionPaySettings"]
