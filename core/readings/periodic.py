"""Checks run on a schedule rather than on a reading: silent meters, idle accounts, long estimation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from core.readings.model import Finding, require_aware
from core.readings.rules import actual_read_finding, stale_finding, zero_use_finding
from core.readings.settings import DEFAULT_SETTINGS, ValidationSettings
from core.readings.vocabulary import RuleId


class AccountUse(BaseModel):
    """When an account's meter last registered any use (its move-in date if it never has)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    account_id: str = Field(min_length=1)
    meter_id: str | None = None
    last_use_at: AwareDatetime
    active: bool = True
    valve_closed: bool = False


def stale_meters(
    last_contact_by_meter: Mapping[str, datetime],
    now: datetime,
    settings: ValidationSettings = DEFAULT_SETTINGS,
) -> list[Finding]:
    """Communication orders for IoT meters silent for more than ``stale_after``, by meter id.

    Pass IoT meters only: a manually read meter is silent by nature.
    """
    require_aware(now, "now")
    if not settings.enabled(RuleId.STALE):
        return []
    findings = (stale_finding(meter, last, now, settings) for meter, last in sorted(last_contact_by_meter.items()))
    return [f for f in findings if f is not None]


def zero_use_accounts(
    accounts: Iterable[AccountUse],
    now: datetime,
    settings: ValidationSettings = DEFAULT_SETTINGS,
) -> list[Finding]:
    """Vacancy / stuck-meter orders for active accounts (valve open) with no use for ``zero_use_period``
    or longer, by account id. Inactive accounts and closed valves are expected to use nothing."""
    require_aware(now, "now")
    if not settings.enabled(RuleId.ZERO_USE):
        return []
    found = []
    for account in sorted(accounts, key=lambda a: a.account_id):
        if not account.active or account.valve_closed:
            continue
        finding = zero_use_finding(account.meter_id, account.last_use_at, now, settings,
                                   account_id=account.account_id)
        if finding is not None:
            found.append(finding)
    return found


def actual_read_required(
    meter_id: str | None,
    consecutive_estimated_bills: int,
    settings: ValidationSettings = DEFAULT_SETTINGS,
) -> Finding | None:
    """For the billing run: the mandatory actual-read order once the estimated bills in a row reach
    ``estimated_bills_limit``."""
    if not settings.enabled(RuleId.PROLONGED_ESTIMATION):
        return None
    return actual_read_finding(meter_id, consecutive_estimated_bills, settings)
