"""``gashub demo``: a seeded city, partner simulators and sample traffic on the embedded default.

The demo wires simulators, which live beside their connectors, so it lives here and the hub finds it
by import path (``hub.demo``). :mod:`connectors.demo.run` drives it; :mod:`~connectors.demo.city`
plans the city, :mod:`~connectors.demo.seed` loads it through the core's services,
:mod:`~connectors.demo.payments` plays the customers paying (WeChat Pay's over the wire through
:mod:`~connectors.demo.wechat`), :mod:`~connectors.demo.report` tells what happened.
"""

from __future__ import annotations

from connectors.demo.run import run_demo

__all__ = ["run_demo"]
