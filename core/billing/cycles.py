"""The annual tier cycle: it starts on a configurable month and day, and the cumulative resets there."""

from __future__ import annotations

from datetime import date

from pydantic import Field, model_validator

from core.billing.base import BillingModel


class CycleStart(BillingModel):
    """The first day of each annual cycle (default 1 January).

    29 February is refused: a cycle must start on a day every year has.
    """

    month: int = Field(default=1, ge=1, le=12)
    day: int = Field(default=1, ge=1, le=31)

    @model_validator(mode="after")
    def _a_day_every_year_has(self) -> CycleStart:
        try:
            date(2001, self.month, self.day)  # 2001 is not a leap year
        except ValueError:
            raise ValueError(f"the cycle cannot start on month {self.month}, day {self.day}") from None
        return self

    def in_year(self, year: int) -> date:
        return date(year, self.month, self.day)

    def cycle_of(self, day: date) -> date:
        """The start of the cycle that ``day`` belongs to (the latest cycle start on or before it)."""
        this_year = self.in_year(day.year)
        return this_year if this_year <= day else self.in_year(day.year - 1)

    def next_after(self, day: date) -> date:
        """The first cycle start strictly after ``day``."""
        this_year = self.in_year(day.year)
        return this_year if this_year > day else self.in_year(day.year + 1)

    def starts_within(self, start: date, end: date) -> tuple[date, ...]:
        """Cycle starts strictly inside ``(start, end)``: the days where a period must be cut."""
        found: list[date] = []
        cut = self.next_after(start)
        while cut < end:
            found.append(cut)
            cut = self.in_year(cut.year + 1)
        return tuple(found)
