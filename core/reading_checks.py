"""The daily reading checks (E1, VEE table): the rules that fire on time passing rather than on a
reading, run over the whole database.

* **stale**: IoT meters on active accounts whose last reading over their own link (``iot_sources``)
  is older than ``stale_after`` (72 h): a communication work order. A meter never heard over a link
  is read by hand and cannot go silent.
* **zero use**: active accounts (valve not closed) whose meter's register has not moved for
  ``zero_use_period`` (30 days) or longer: a vacancy / stuck-meter order. The idle run starts at the
  first accepted reading showing the latest value (after the last one below it), or at the move-in
  if that is later; a second reading must show the same value (one old reading proves nothing).
* **prolonged estimation**: accounts whose latest ``estimated_bills_limit`` (2) or more issued bills
  in a row are estimates: a mandatory actual-read order.

Each is one set-based query, no query per meter or account; the pure rules of
:mod:`core.readings.periodic` then decide. On PostgreSQL (EXPLAIN on a migrated database): stale is
one backward index probe into ``core_reading`` per metered active account; zero use four (latest
time and value, the last lower value — which walks back over the idle run only — and the first
reading after it), each run once thanks to the ``OFFSET 0`` fences; prolonged estimation reads the
partial index of estimated bills and probes ``uq_core_bill_account_period`` once per account in it.

A finding is recorded once on the exceptions list (``core_reading_exception``, ``kind = 'check'``,
id ``<rule>-<subject>-<local day>``), with a ``work_order.requested`` event when
``request_work_orders`` is on, in the caller's transaction. Running again the same day inserts
nothing and emits nothing; on later days a subject whose finding of that rule is still open is left
alone, so an empty flat is one open exception, not one a day.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any

import orjson
from sqlalchemy import Select, and_, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue.messages import ReadingSource, WorkOrderRequested
from core.db.bulk import insert_columns
from core.db.tables import reading, reading_exception
from core.db.tables_accounts import account
from core.db.tables_billing import bill, meter
from core.messages import Event, derived_id
from core.outbox import emit
from core.readings import (
    AccountUse,
    Finding,
    ReadingsSettings,
    RuleId,
    actual_read_required,
    stale_meters,
    zero_use_accounts,
)
from core.readings.model import require_aware

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
LONG_AGO = datetime(1900, 1, 1, tzinfo=UTC)
CHECKS = (RuleId.STALE, RuleId.ZERO_USE, RuleId.PROLONGED_ESTIMATION)


@dataclass(slots=True)
class CheckResult:
    """What a run found and recorded, per rule."""

    day: date
    found: dict[str, int] = field(default_factory=dict)
    """Findings per rule, open ones included."""
    recorded: dict[str, int] = field(default_factory=dict)
    """New exceptions (and work-order requests) per rule."""

    @property
    def total_recorded(self) -> int:
        return sum(self.recorded.values())


async def run_reading_checks(
    conn: AsyncConnection,
    *,
    settings: ReadingsSettings,
    now: datetime,
    tz: tzinfo = CHINA_TZ,
    progress: Callable[[RuleId, CheckResult], None] | None = None,
) -> CheckResult:
    """Run the three checks as of ``now`` (aware) and record their new findings (module notes).
    ``progress`` is called after each check."""
    require_aware(now, "now")
    result = CheckResult(day=now.astimezone(tz).date())
    rules = settings.rules
    for rule in CHECKS:
        findings: list[Finding] = []
        if rules.enabled(rule):
            if rule is RuleId.STALE:
                findings = await _stale(conn, settings, now)
            elif rule is RuleId.ZERO_USE:
                findings = await _zero_use(conn, settings, now)
            else:
                findings = await _prolonged_estimation(conn, settings)
        result.found[rule.value] = len(findings)
        result.recorded[rule.value] = await _record(conn, rule, findings, now, result.day, settings)
        if progress is not None:
            progress(rule, result)
    return result


# ---- the checks ----------------------------------------------------------------------------------


FENCE = 0
"""``OFFSET 0`` on a subquery keeps PostgreSQL from pulling it up into the outer query, where each
scalar subquery it computes would be run again for every reference to its column."""


def _accepted() -> tuple[Any, ...]:
    """Actual readings that are not suspect: the ones that say what the register shows."""
    return reading.c.source != ReadingSource.ESTIMATE.value, reading.c.quality.not_like("%suspect%")


def stale_query(settings: ReadingsSettings, now: datetime) -> Select[Any]:
    """Meters on active accounts with their last reading over a link, where that is too old. One
    backward index probe per meter (``max(read_at)`` for the meter, filtered on the source)."""
    iot = sorted(s.value for s in settings.rules.iot_sources)
    last = (select(func.max(reading.c.read_at)).where(reading.c.meter_id == meter.c.id, reading.c.source.in_(iot))
            .scalar_subquery())
    heard = (select(meter.c.id.label("meter_id"), last.label("last_at"))
             .join(account, account.c.id == meter.c.account_id)
             .where(account.c.status == "active").offset(FENCE).subquery("heard"))
    return (select(heard.c.meter_id, heard.c.last_at)
            .where(heard.c.last_at < now - settings.rules.stale_after).order_by(heard.c.meter_id))


async def _stale(conn: AsyncConnection, settings: ReadingsSettings, now: datetime) -> list[Finding]:
    silent = {m: at for m, at in await conn.execute(stale_query(settings, now))}
    return stale_meters(silent, now, settings.rules)


def zero_use_query(settings: ReadingsSettings, now: datetime) -> Select[Any]:
    """Per metered active account: the meter's latest accepted register value and time, when the
    register last showed less, and the first reading at the latest value after that. Backward index
    probes per meter (the first two stop at once, the third after the idle run); candidates only
    (idle since at least ``zero_use_period`` before ``now``)."""
    ok = _accepted()
    latest = (select(reading.c.read_at, reading.c.volume_m3).where(reading.c.meter_id == meter.c.id, *ok)
              .order_by(reading.c.read_at.desc()).limit(1))
    base = (select(account.c.id.label("account_id"), meter.c.id.label("meter_id"), account.c.opened_at,
                   meter.c.valve_state,
                   latest.with_only_columns(reading.c.read_at).scalar_subquery().label("latest_at"),
                   latest.with_only_columns(reading.c.volume_m3).scalar_subquery().label("latest_m3"))
            .join(meter, meter.c.account_id == account.c.id)
            .where(account.c.status == "active").offset(FENCE).subquery("base"))
    below = (select(func.max(reading.c.read_at))
             .where(reading.c.meter_id == base.c.meter_id, *ok, reading.c.volume_m3 < base.c.latest_m3,
                    reading.c.read_at < base.c.latest_at)
             .scalar_subquery())
    runs = (select(base.c.account_id, base.c.meter_id, base.c.opened_at, base.c.valve_state, base.c.latest_at,
                   below.label("below_at"))
            .where(base.c.latest_at.is_not(None)).offset(FENCE).subquery("runs"))
    since = (select(func.min(reading.c.read_at))
             .where(reading.c.meter_id == runs.c.meter_id, *ok,
                    reading.c.read_at > func.coalesce(runs.c.below_at, literal(LONG_AGO, reading.c.read_at.type)))
             .scalar_subquery())
    idle = (select(runs.c.account_id, runs.c.meter_id, runs.c.opened_at, runs.c.valve_state, runs.c.latest_at,
                   since.label("since_at")).offset(FENCE).subquery("idle"))
    cutoff = now - settings.rules.zero_use_period
    return (select(idle.c.account_id, idle.c.meter_id, idle.c.opened_at, idle.c.valve_state, idle.c.since_at)
            .where(idle.c.since_at <= cutoff, idle.c.latest_at > idle.c.since_at, idle.c.opened_at <= cutoff)
            .order_by(idle.c.account_id))


async def _zero_use(conn: AsyncConnection, settings: ReadingsSettings, now: datetime) -> list[Finding]:
    rows = (await conn.execute(zero_use_query(settings, now))).all()
    accounts = [AccountUse(account_id=a, meter_id=m, last_use_at=max(since, opened), active=True,
                           valve_closed=valve == "closed")
                for a, m, opened, valve, since in rows]
    return zero_use_accounts(accounts, now, settings.rules)


def estimated_run_query(settings: ReadingsSettings) -> Select[Any]:
    """Accounts whose issued bills since their last actual one are ``estimated_bills_limit`` or more
    estimates: read from the partial index of estimated bills, one probe per account for its latest
    actual bill."""
    later = bill.alias("actual")
    last_actual = (select(func.max(later.c.period_end))
                   .where(later.c.account_id == bill.c.account_id, later.c.quality == "actual",
                          later.c.status == "issued")
                   .scalar_subquery())
    return (select(bill.c.account_id, func.max(bill.c.meter_id), func.count())
            .where(bill.c.quality == "estimated", bill.c.status == "issued",
                   bill.c.period_end > func.coalesce(last_actual, date(1900, 1, 1)))
            .group_by(bill.c.account_id)
            .having(func.count() >= settings.rules.estimated_bills_limit)
            .order_by(bill.c.account_id))


async def _prolonged_estimation(conn: AsyncConnection, settings: ReadingsSettings) -> list[Finding]:
    found = []
    for account_id, meter_id, count in await conn.execute(estimated_run_query(settings)):
        finding = actual_read_required(meter_id, int(count), settings.rules)
        if finding is not None:
            found.append(finding.model_copy(update={"account_id": account_id}))
    return found


# ---- recording -----------------------------------------------------------------------------------


def exception_id(rule: RuleId, subject: str, day: date) -> str:
    """``<rule>-<subject>-<YYYYMMDD>``: one finding of a rule per subject and day."""
    return f"{rule.value}-{subject}-{day:%Y%m%d}"


def _subject(rule: RuleId, finding: Finding) -> str:
    subject = finding.meter_id if rule is RuleId.STALE else finding.account_id
    assert subject is not None, f"a {rule.value} finding names its subject"
    return subject


async def _meters_of(conn: AsyncConnection, account_ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.execute(select(meter.c.account_id, func.min(meter.c.id))
                              .where(meter.c.account_id.in_(sorted(set(account_ids))))
                              .group_by(meter.c.account_id))
    return {a: m for a, m in rows}


async def _accounts_of(conn: AsyncConnection, meter_ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.execute(select(meter.c.id, meter.c.account_id).where(meter.c.id.in_(sorted(set(meter_ids)))))
    return {m: a for m, a in rows if a is not None}


async def _open_subjects(conn: AsyncConnection, rule: RuleId) -> set[str]:
    """Subjects (meter for stale, account otherwise) with an open finding of ``rule`` from the checks."""
    column = reading_exception.c.meter_id if rule is RuleId.STALE else reading_exception.c.account_id
    rows = await conn.execute(select(column).where(
        and_(reading_exception.c.kind == "check", reading_exception.c.status == "open",
             reading_exception.c.rules == rule.value)))
    return {s for (s,) in rows if s is not None}


async def _record(conn: AsyncConnection, rule: RuleId, findings: list[Finding], now: datetime, day: date,
                  settings: ReadingsSettings) -> int:
    """Insert the findings not yet open as exceptions and request their work orders; returns how many
    were new."""
    if not findings:
        return 0
    still_open = await _open_subjects(conn, rule)
    findings = [f for f in findings if _subject(rule, f) not in still_open]
    if not findings:
        return 0
    if rule is RuleId.STALE:
        owners = await _accounts_of(conn, [f.meter_id for f in findings if f.meter_id])
        findings = [f.model_copy(update={"account_id": owners.get(f.meter_id or "")}) for f in findings]
    else:
        missing = [f.account_id for f in findings if f.meter_id is None and f.account_id]
        meters = await _meters_of(conn, missing) if missing else {}
        findings = [f if f.meter_id else f.model_copy(update={"meter_id": meters.get(f.account_id or "")})
                    for f in findings]
        findings = [f for f in findings if f.meter_id is not None]
    ids = [exception_id(rule, _subject(rule, f), day) for f in findings]
    columns: dict[str, list[Any]] = {
        "id": ids,
        "meter_id": [f.meter_id for f in findings],
        "account_id": [f.account_id for f in findings],
        "read_at": [now] * len(ids),
        "volume_m3": [None] * len(ids),
        "consumption_m3": [None] * len(ids),
        "rules": [rule.value] * len(ids),
        "billable": [True] * len(ids),
        "findings": [orjson.dumps([_finding_json(f)]).decode() for f in findings],
        "status": ["open"] * len(ids),
        "created_at": [now] * len(ids),
        "message_id": ids,
        "kind": ["check"] * len(ids),
        "severity": [f.severity.value for f in findings],
    }
    inserted = {r[0] for r in await insert_columns(conn, reading_exception, columns, ignore_conflicts=True,
                                                   returning=("id",))}
    if settings.request_work_orders:
        await emit(conn, [(_work_order(row_id, f, now), None)
                          for row_id, f in zip(ids, findings, strict=True) if row_id in inserted])
    return len(inserted)


def _finding_json(f: Finding) -> dict[str, Any]:
    """As ``reading.flagged`` carries findings (``ReadingFinding``)."""
    out: dict[str, Any] = {"rule": f.rule.value, "severity": f.severity.value, "action": f.action.value,
                           "message": f.message[:500]}
    if f.work_order is not None:
        out["work_order"] = f.work_order.value
    return out


def _work_order(row_id: str, f: Finding, now: datetime) -> Event:
    assert f.work_order is not None
    data = WorkOrderRequested(
        work_order_id=derived_id("wo", row_id), kind=f.work_order.value, rule=f.rule.value,
        severity=f.severity.value, meter_id=f.meter_id, account_id=f.account_id, detected_at=now,
        reason=f.message[:500])
    return Event("work_order.requested", data, subject=f.meter_id)
