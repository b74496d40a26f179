"""What the core's handlers need from the deployment.

The composition root builds one ``CoreConfig`` at start-up from its settings (the personal-data keys,
``[core.payments]``, ``[core.readings]``, ``[core.prepaid]`` and where the tariff book comes from) and
binds it into the handler table with :func:`core.handlers.build_handlers`; handlers never read settings
themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.accounts import Privacy
from core.billing import TariffBook
from core.payments.settings import PaymentSettings
from core.prepaid.settings import DEFAULT_PREPAID, PrepaidSettings
from core.readings.settings import DEFAULT_READINGS, ReadingsSettings
from core.tariffs import TariffShelf


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
    tariffs: TariffBook | TariffShelf | None = None
    """The tariff book prepaid deductions price with: a :class:`~core.tariffs.TariffShelf` reads it from the
    database (``core_tariff_version``) in each batch's transaction, so a version added while the hub runs
    applies from its date; a fixed ``TariffBook`` serves tests and checks."""

    @property
    def prepaid_active(self) -> bool:
        """Whether ``record_reading`` charges prepaid meters (``ValueError`` if enabled without tariffs)."""
        if self.prepaid.enabled and self.tariffs is None:
            raise ValueError("prepaid deductions are enabled but no tariff book was given (CoreConfig.tariffs): "
                             "the hub reads it from the database (core.tariffs.TariffShelf)")
        return self.prepaid.enabled
