"""What the core's handlers need from the deployment.

The composition root builds one ``CoreConfig`` at start-up from its settings (the personal-data keys,
``[core.payments]``, ``[core.readings]``, ``[core.prepaid]`` and the tariff book) and binds it into the
handler table with :func:`core.handlers.build_handlers`; handlers never read settings themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.accounts import Privacy
from core.billing import TariffBook
from core.payments.settings import PaymentSettings
from core.prepaid.settings import DEFAULT_PREPAID, PrepaidSettings
from core.readings.settings import DEFAULT_READINGS, ReadingsSettings


@dataclass(frozen=True, slots=True)
class CoreConfig:
    privacy: Privacy | None = None
    """Field cipher and blind index; ``None`` when no key is configured (handlers that need it refuse)."""
    payments: PaymentSettings = field(default_factory=PaymentSettings)
    """Invoice policy of the payment handlers."""
    readings: ReadingsSettings = field(default=DEFAULT_READINGS)
    """Reading validation and what ``record_reading`` does with its findings."""
    prepaid: PrepaidSettings = field(default=DEFAULT_PREPAID)
    """Deductions per reading for prepaid meters, the low-balance reminder and the valve at zero."""
    tariffs: TariffBook | None = None
    """The tariff book (``config/tariffs.toml``); prepaid deductions need it."""

    @property
    def prepaid_active(self) -> bool:
        """Whether ``record_reading`` charges prepaid meters (``ValueError`` if enabled without tariffs)."""
        if self.prepaid.enabled and self.tariffs is None:
            raise ValueError("prepaid deductions are enabled but no tariff book was given (CoreConfig.tariffs): "
                             "the hub loads it from billing.tariffs_file")
        return self.prepaid.enabled
