"""Smart gas meters reached over their own wire protocol: CJ/T 188 through DTUs that dial in over TCP.

``cjt188`` is the codec (frames, messages, meter-model profiles); ``connector`` the DTU server;
``simulator`` a DTU with meters on its bus, for the demo and tests.
"""

from connectors.meters.connector import DtuConnector
from connectors.meters.settings import DtuSettings

__all__ = ["DtuConnector", "DtuSettings"]
