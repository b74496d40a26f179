from connectors.tax.connector import TaxConnector
from connectors.tax.settings import TaxSettings

__all__ = ["TaxConnector", "TaxSettings"]
