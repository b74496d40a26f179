from connectors.aliyun_sms.connector import AliyunSmsConnector
from connectors.aliyun_sms.settings import AliyunSmsSettings

__all__ = ["AliyunSmsConnector", "AliyunSmsSettings"]
