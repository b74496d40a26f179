"""A household and its large-household uplift approval (rule 4).

Larger households get higher tier thresholds only with evidence and an approval, for the approval's
validity period: on a day the approval does not cover, the household bills at the plain thresholds.
"""

from __future__ import annotations

from datetime import date

from pydantic import Field, model_validator

from core.billing.base import BillingModel


class UpliftApproval(BillingModel):
    """An approved application for the uplift, valid on ``[valid_from, valid_until)``.

    ``valid_until`` is exclusive (the first day it no longer applies); ``None`` means open-ended.
    ``reference`` points at the evidence and the decision (e.g. the application number).
    """

    reference: str = Field(min_length=1, max_length=64)
    valid_from: date
    valid_until: date | None = None

    @model_validator(mode="after")
    def _until_after_from(self) -> UpliftApproval:
        if self.valid_until is not None and self.valid_until <= self.valid_from:
            raise ValueError(f"approval {self.reference}: valid_until must be after valid_from")
        return self

    def covers(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_until is None or day < self.valid_until)

    def boundaries(self) -> tuple[date, ...]:
        """The days the approval starts or stops applying."""
        return (self.valid_from,) if self.valid_until is None else (self.valid_from, self.valid_until)


class Household(BillingModel):
    """How many people live at the premises and, when granted, the approval for the uplift."""

    residents: int = Field(default=1, ge=1, le=99)
    approval: UpliftApproval | None = None

    def uplift_approved_on(self, day: date) -> bool:
        return self.approval is not None and self.approval.covers(day)
