from connectors.vendor_push.connector import VendorPushConnector
from connectors.vendor_push.settings import VendorPushSettings

__all__ = ["VendorPushConnector", "VendorPushSettings"]
