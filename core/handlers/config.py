"""What the hub hands the core handlers when it builds them (``core.handlers.build_handlers``).

The core reads no settings of its own: the hub's composition root builds a ``CoreConfig`` from its
settings (``GASHUB_CORE__*``, ``[core]`` in ``config/*.toml``) once at start-up and passes it in.
Defaults are the domain's figures, so ``CoreConfig()`` is a working configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.accounts import Privacy
from core.readings.settings import DEFAULT_READINGS, ReadingsSettings


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """The core handlers' configuration."""

    readings: ReadingsSettings = field(default=DEFAULT_READINGS)
    """Reading validation and what ``record_reading`` does with its findings."""
    privacy: Privacy | None = None
    """The personal-data keys; without them no handler can read a phone number (no notifications)."""
