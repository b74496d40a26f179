"""What prepaid accounts do with their balance: ``[core.prepaid]`` in the hub's settings
(``GASHUB_CORE__PREPAID__*``)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class PrepaidSettings(BaseModel):
    """Deductions per reading, the low-balance reminder and the valve closing at zero.

    The low-balance threshold is the higher of ``low_balance_yuan`` and ``low_balance_days`` days of the
    meter's average daily use at the price it pays now; leave one out (``None``) to use the other
    alone, both to send no reminder. The valve closes when a deduction leaves the balance at zero or
    below; it reopens only with a field engineer's on-site confirmation (``POST
    /api/v1/meters/{id}/valve/reopen``), never by a top-up.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    """Price each accepted reading of a prepaid meter and deduct it. Needs the tariff book: the hub
    reads it from the database (``core.tariffs``), so a version added later applies from its date."""
    low_balance_yuan: Decimal | None = Field(default=Decimal("20.00"), ge=0, max_digits=14, decimal_places=2)
    low_balance_days: Decimal | None = Field(default=Decimal("5"), gt=0, le=365)
    notify: bool = True
    """Tell the holder by SMS (``notification.requested``, kind ``low_balance``) when the balance
    falls below the threshold (once until the next top-up) and when it reaches zero (the valve
    closes). Needs the personal-data keys to read the holder's phone; without them it is skipped
    and logged."""
    close_valve: bool = True
    """Send ``valve.command`` close (safety lane) when the balance reaches zero. Off where the meters
    close their own valves on a balance they hold."""

    def emits(self) -> tuple[str, ...]:
        """What pricing readings may add to ``record_reading``'s outbox."""
        if not self.enabled:
            return ()
        return tuple(t for t, on in (("valve.command", self.close_valve), ("notification.requested", self.notify))
                     if on)


DEFAULT_PREPAID = PrepaidSettings()
