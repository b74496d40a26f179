"""What the core's handlers need from the deployment.

The composition root builds one ``CoreConfig`` at start-up from its settings (the personal-data keys,
``[core.payments]``) and binds it into the handler table with
:func:`core.handlers.build_handlers`; handlers never read settings themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.accounts import Privacy
from core.payments.settings import PaymentSettings
from core.readings.settings import DEFAULT_READINGS, ReadingsSettings


@dataclass(frozen=True, slots=True)
class CoreConfig:
    privacy: Privacy | None = None
    """Field cipher and blind index; ``None`` when no key is configured (handlers that need it refuse)."""
    payments: PaymentSettings = field(default_factory=PaymentSettings)
    """Invoice policy of the payment handlers."""
    readings: ReadingsSettings = field(default=DEFAULT_READINGS)
    """Reading validation and what ``record_reading`` does with its findings."""
