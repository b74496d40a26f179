from connectors.http_sms.connector import HttpSmsConnector
from connectors.http_sms.settings import HttpSmsSettings

__all__ = ["HttpSmsConnector", "HttpSmsSettings"]
