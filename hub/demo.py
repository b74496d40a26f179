"""Entry point for ``gashub demo``. The demo wires partner simulators, which live beside their
connectors, so it is found through an import path like any connector: the hub never imports the
``connectors`` package statically."""

from __future__ import annotations

import importlib
from typing import Any


async def run_demo(**kwargs: Any) -> int:
    module = importlib.import_module("connectors.demo")
    result = await module.run_demo(**kwargs)
    assert isinstance(result, int)
    return result
