"""NB-IoT meters through the operators' IoT platforms: China Telecom's CTWing (pushes in, valve
commands out through its command API) and China Mobile's OneNET (signed pushes in).

``ctwing`` and ``onenet`` are the connectors; ``uplink`` turns what either platform carries (a CJ/T 188
frame or decoded fields) into a ``meter.reading``; ``aep`` is CTWing's command API; ``signing`` both
platforms' signatures; ``simulator`` stands in for both platforms and their meters.
"""

from connectors.nbiot.ctwing import CtwingConnector
from connectors.nbiot.onenet import OneNetConnector
from connectors.nbiot.settings import CtwingSettings, OneNetSettings

__all__ = ["CtwingConnector", "CtwingSettings", "OneNetConnector", "OneNetSettings"]
