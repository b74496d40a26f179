from connectors.valve_http.connector import ValveHttpConnector
from connectors.valve_http.settings import ValveHttpSettings

__all__ = ["ValveHttpConnector", "ValveHttpSettings"]
