from connectors.payments.ecny.connector import EcnyConnector
from connectors.payments.ecny.settings import EcnySettings

__all__ = ["EcnyConnector", "EcnySettings"]
