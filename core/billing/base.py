"""The base of every billing model: immutable, strict about unknown fields."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class BillingModel(BaseModel):
    """Frozen and closed: a tariff or a bill never changes after it is built, and a typo is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)
