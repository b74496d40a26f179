from connectors.tax_demo.connector import TaxDemoConnector
from connectors.tax_demo.settings import TaxDemoSettings

__all__ = ["TaxDemoConnector", "TaxDemoSettings"]
