"""Validate and store meter readings (E1): the VEE rules of ``core.readings`` on every batch.

For a batch, in the caller's transaction:

1. load what the rules need in set-based queries (``reading_context``): the meters and accounts,
   each meter's anchor and previous accepted reading, and what is stored through the batch's times;
2. validate each meter's readings in time order, each against the stored ones *and* the batch's
   earlier ones (an accepted reading becomes the next one's baseline);
3. for readings that may complete a day of continuous flow, load the last day's accepted readings
   (one more query) and validate them again with their hourly use (the leak rule);
4. refuse a reading that contradicts a stored one (same meter and time, another value: ``Conflict``,
   dead-lettered for an operator) and drop exact duplicates;
5. insert the rest with their quality flags (``valid``/``suspect``, ``derived``, ``estimated``);
6. for the readings really inserted, write their events to the outbox (``reading_events``);
7. charge the accepted ones of prepaid meters (``core.prepaid.PrepaidMeters``, when configured):
   deduct their cost from the balance (with the household's uplift where its approval covers the
   days: one query per batch with residential prepaid readings), warn of a low balance, close the
   valve at zero.

Steps 6 and 7 follow the insert: a reading delivered again (another message for the same meter and
time and value, or the same message after a crash) inserts nothing, so it emits nothing and is
never charged twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from core.accounts import Privacy, households_for
from core.billing import TariffCategory
from core.catalogue.messages import MeterReading, ReadingSource
from core.db.bulk import insert_columns
from core.db.tables import reading
from core.db.tables_accounts import customer
from core.errors import Conflict
from core.handlers import reading_context as ctx
from core.handlers import reading_events as ev
from core.messages import Event, Incoming
from core.outbox import emit
from core.prepaid import AcceptedReading, PrepaidMeters
from core.privacy import DecryptionError, field_context
from core.readings import (
    DEFAULT_READINGS,
    Action,
    MeterContext,
    PreviousReading,
    QualityFlag,
    ReadingInput,
    ReadingsSettings,
    RuleId,
    ValidationResult,
    hour_floor,
    hourly_use,
    validate_reading,
)
from core.readings.hourly import HOUR
from core.readings.register import SECONDS_PER_DAY, baseline, seconds
from core.readings.rules import leak

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    item: Incoming
    data: MeterReading
    input: ReadingInput
    context: MeterContext | None = None
    result: ValidationResult | None = None
    stored: bool = False
    """Neither a duplicate nor a conflict: to be inserted."""
    accepted: bool = False
    """Stored, actual and not suspect: a baseline for what follows."""

    def judge(self, result: ValidationResult) -> None:
        self.result = result
        actions = result.actions
        self.stored = Action.DROP_DUPLICATE not in actions and Action.FLAG_CONFLICT not in actions
        self.accepted = self.stored and not self.input.is_estimate and QualityFlag.SUSPECT not in result.quality


@dataclass(slots=True)
class _Meter:
    """One meter's readings in the batch (in time order) and what is known of it."""

    meter_id: str
    pending: list[_Pending] = field(default_factory=list)
    facts: ctx.MeterFacts | None = None
    valve_reported_at: datetime | None = None


async def record_reading(
    conn: AsyncConnection,
    items: Sequence[Incoming],
    *,
    settings: ReadingsSettings = DEFAULT_READINGS,
    privacy: Privacy | None = None,
    prepaid: PrepaidMeters | None = None,
    now: datetime | None = None,
) -> Sequence[Mapping[str, Any] | None]:
    """Validate and insert readings, then emit what their findings call for and charge prepaid meters
    (module notes).

    The same meter and time again with the same value is dropped (idempotent); with another value it
    is a ``Conflict`` that an operator resolves from the dead-letter list.
    """
    if not settings.run_rules:
        await _insert_unvalidated(conn, items)
        return [None] * len(items)
    now = now or datetime.now(UTC)
    meters: dict[str, _Meter] = {}
    for item in items:
        data = item.data
        assert isinstance(data, MeterReading)
        pending = _Pending(item, data, ReadingInput.from_message(data))
        meters.setdefault(data.meter_id, _Meter(data.meter_id)).pending.append(pending)
    for m in meters.values():
        m.pending.sort(key=lambda p: p.input.read_at)

    loaded = await ctx.load(conn, [
        ctx.Span(m.meter_id, m.pending[0].input.read_at, m.pending[-1].input.read_at,
                 m.pending[0].input.read_at - settings.history_window)
        for m in meters.values()
    ])
    for m in meters.values():
        m.facts = loaded.meters.get(m.meter_id)
    closed = [m.meter_id for m in meters.values() if m.facts is not None and m.facts.valve_state == "closed"]
    if closed:
        reported = await ctx.valve_reported_at(conn, closed)
        for meter_id in closed:
            meters[meter_id].valve_reported_at = reported.get(meter_id)

    for m in meters.values():
        _validate_meter(m, loaded, settings, now)
    if settings.rules.enabled(RuleId.LEAK):
        await _check_leaks(conn, meters, settings, now)

    stored = await _insert(conn, [p for m in meters.values() for p in m.pending])
    await _emit(conn, stored, meters, settings, privacy)
    if prepaid is not None:
        charged = await _with_households(conn, _prepaid_readings(stored, meters))
        if charged:
            async def phones(meter_ids: set[str]) -> dict[str, str]:
                return await _phones(conn, meter_ids, privacy)

            await prepaid.deduct(conn, charged, phones=phones, now=now)
    return [None] * len(items)


# ---- validation ----------------------------------------------------------------------------------


def _to_previous(s: ctx.Stored) -> PreviousReading:
    return PreviousReading(read_at=s.read_at, volume_m3=s.volume_m3, source=s.source)


def _average_daily_use(
    anchor: ctx.Stored | None, prev: ctx.Stored | None, settings: ReadingsSettings
) -> Decimal | None:
    if anchor is None or prev is None or prev.read_at - anchor.read_at < settings.average_min_span:
        return None
    used = prev.volume_m3 - anchor.volume_m3
    if used < 0:
        return None
    return used * SECONDS_PER_DAY / seconds(prev.read_at - anchor.read_at)


def _validate_meter(m: _Meter, loaded: ctx.Loaded, settings: ReadingsSettings, now: datetime) -> None:
    """Validate one meter's readings in time order; accepted ones join the baselines."""
    recent = loaded.recent.get(m.meter_id, [])
    anchor = loaded.anchors.get(m.meter_id)
    first_at = m.pending[0].input.read_at
    prev = max((s for s in recent if s.accepted and s.read_at < first_at), key=lambda s: s.read_at, default=None)
    known = [_to_previous(s) for s in recent if s.accepted or s.source is ReadingSource.ESTIMATE]
    if anchor is not None and all(p.read_at != anchor.read_at for p in known):
        known.append(_to_previous(anchor))
    others: dict[datetime, list[PreviousReading]] = {}  # the rest, where the batch has a reading too
    batch_times = {p.input.read_at for p in m.pending}
    for s in recent:
        if not s.accepted and s.source is not ReadingSource.ESTIMATE and s.read_at in batch_times:
            others.setdefault(s.read_at, []).append(_to_previous(s))

    facts = m.facts
    common: dict[str, Any] = {
        "meter_id": m.meter_id,
        "avg_daily_use_m3": _average_daily_use(anchor, prev, settings),
    }
    if facts is not None:
        common.update(category=facts.category, account_active=facts.account_active, meter_model=facts.model)
    closed = facts is not None and facts.valve_state == "closed"
    last = m.pending[-1]
    for p in m.pending:
        at = p.input.read_at
        previous = (*known, *others.get(at, ()))
        valve_closed = False
        if closed:
            base = baseline(previous, at)
            valve_closed = base is not None and (m.valve_reported_at is None or m.valve_reported_at <= base.read_at)
        p.context = MeterContext(previous=previous, valve_closed=valve_closed, **common)
        p.judge(validate_reading(p.input, p.context, now=now, settings=settings.rules))
        if not p.stored or p is last:
            continue
        this = PreviousReading(read_at=at, volume_m3=p.input.volume_m3, source=p.input.source, valve=p.input.valve)
        if p.accepted or p.input.is_estimate:
            known.append(this)
        else:
            others.setdefault(at, []).append(this)


def _leak_candidate(p: _Pending, settings: ReadingsSettings) -> bool:
    """Whether this reading may complete ``leak_window_hours`` hours of flow: it is accepted, close
    enough to its baseline for hourly use, crosses into a new hour, and did not measure that the
    last complete hour used nothing."""
    r = p.result
    if r is None or not p.accepted or r.baseline is None or r.consumption_m3 is None or r.consumption_m3 < 0:
        return False
    base_at, at = r.baseline.read_at, p.input.read_at
    end = hour_floor(at)
    if at - base_at > settings.hourly_max_gap or hour_floor(base_at) >= end:
        return False
    return not (r.consumption_m3 == 0 and base_at <= end - HOUR)


def _may_flow_throughout(series: list[tuple[datetime, Decimal]], start: datetime, max_gap: timedelta) -> bool:
    """A quick test before the hourly sums: readings reach back to ``start`` and no interval after
    it is too long to say anything about its hours while gas was used (such hours are unknown, and an
    unknown hour breaks the run)."""
    if not series or series[0][0] > start:
        return False
    return all(not (b > start and b - a > max_gap and vb != va) for (a, va), (b, vb) in pairwise(series))


async def _check_leaks(conn: AsyncConnection, meters: dict[str, _Meter], settings: ReadingsSettings,
                       now: datetime) -> None:
    """Give the leak rule the hourly use of readings that may complete a day of flow (one query)."""
    rules = settings.rules
    window = rules.leak_window_hours * HOUR
    candidates = {m.meter_id: [p for p in m.pending if _leak_candidate(p, settings)] for m in meters.values()}
    candidates = {k: v for k, v in candidates.items() if v}
    if not candidates:
        return
    spans = [
        ctx.Span(meter_id, hour_floor(ps[0].input.read_at) - window - settings.hourly_max_gap,
                 ps[-1].input.read_at, ps[-1].input.read_at)
        for meter_id, ps in candidates.items()
    ]
    history = await ctx.accepted_history(conn, spans)
    for meter_id, ps in candidates.items():
        points = dict(history.get(meter_id, []))
        points.update((p.input.read_at, p.input.volume_m3) for p in meters[meter_id].pending if p.accepted)
        ordered = sorted(points.items())
        for p in ps:
            at = p.input.read_at
            end = hour_floor(at)
            series = [(t, v) for t, v in ordered if t <= at]
            if not _may_flow_throughout(series, end - window, settings.hourly_max_gap):
                continue
            hours = hourly_use(series, end=end, hours=rules.leak_window_hours, max_gap=settings.hourly_max_gap)
            assert p.context is not None
            context = p.context.model_copy(update={"hourly_use_m3": hours})
            if leak(meter_id, context, rules) is not None:
                p.context = context
                p.judge(validate_reading(p.input, context, now=now, settings=rules))


# ---- storing -------------------------------------------------------------------------------------


async def _insert(conn: AsyncConnection, pending: list[_Pending]) -> list[_Pending]:
    """Insert the readings that are neither duplicates nor conflicts; return those really inserted."""
    for p in pending:
        assert p.result is not None
        if p.result.conflict:
            raise Conflict(p.result.findings[0].message)
    todo = [p for p in pending if p.stored]
    inserted = await store_readings(conn, [p.item for p in todo], [_quality(p) for p in todo])
    return [p for p in todo if p.item.message_id in inserted]


async def _insert_unvalidated(conn: AsyncConnection, items: Sequence[Incoming]) -> None:
    """``run_rules = false``: store the readings as they come (quality ``unvalidated``); duplicates and
    conflicts are found as always."""
    await store_readings(conn, items, ["unvalidated"] * len(items))


async def store_readings(conn: AsyncConnection, items: Sequence[Incoming], quality: Sequence[str]) -> set[str]:
    """Insert readings (``meter.reading`` items; also the final readings of ``core.lifecycle``) (``COPY``
    unless one collides), each in the flow it came in; return the ids really inserted. A reading refused
    for its meter and time is a duplicate, or a ``Conflict`` if its value differs."""
    readings = [item.data for item in items if isinstance(item.data, MeterReading)]
    assert len(readings) == len(items), "record_reading takes meter.reading only"
    ids = [item.message_id for item in items]
    columns: dict[str, list[Any]] = {
        "id": ids,
        "meter_id": [d.meter_id for d in readings],
        "read_at": [d.read_at.astimezone(UTC) for d in readings],
        "volume_m3": [d.volume_m3 for d in readings],
        "source": [d.source.value for d in readings],
        "quality": list(quality),
        "message_id": ids,
        "correlation_id": [item.correlation_id for item in items],
    }
    inserted = {r[0] for r in await insert_columns(conn, reading, columns, ignore_conflicts=True, returning=("id",),
                                                   mostly_new=True)}
    if len(inserted) < len(ids):
        await _check_duplicates(conn, [(columns["meter_id"][i], columns["read_at"][i], columns["volume_m3"][i])
                                       for i, mid in enumerate(ids) if mid not in inserted])
    return inserted


def _quality(p: _Pending) -> str:
    assert p.result is not None
    return ",".join(q.value for q in p.result.quality)


async def _check_duplicates(conn: AsyncConnection, skipped: list[tuple[str, datetime, Decimal]]) -> None:
    """Rows the database refused (meter, UTC time, volume): stored meanwhile by another batch, or
    twice in this one. Same value: a duplicate; another value: a conflict."""
    keys = [(meter_id, at) for meter_id, at, _ in skipped]
    result = await conn.execute(
        select(reading.c.meter_id, reading.c.read_at, reading.c.volume_m3).where(
            tuple_(reading.c.meter_id, reading.c.read_at).in_(keys)
        )
    )
    stored = {(m, t.astimezone(UTC)): v for m, t, v in result}
    seen: dict[tuple[str, datetime], Decimal] = {}
    for (meter_id, at, volume), key in zip(skipped, keys, strict=True):
        value = stored.get(key, seen.get(key))
        if value is not None and value != volume:
            raise Conflict(
                f"meter {meter_id} already has {value} m³ at {at.isoformat()}; this message says {volume} m³"
            )
        seen[key] = volume


def _prepaid_readings(stored: list[_Pending], meters: dict[str, _Meter]) -> list[AcceptedReading]:
    """The accepted readings, of the ones inserted, of meters on prepaid accounts."""
    out = []
    for p in stored:
        facts = meters[p.data.meter_id].facts
        if not p.accepted or facts is None or facts.billing != "prepaid" or facts.account_id is None:
            continue
        assert p.result is not None
        assert p.context is not None
        base = p.result.baseline
        out.append(AcceptedReading(
            cause=p.item, meter_id=p.data.meter_id, account_id=facts.account_id,
            category=TariffCategory(facts.category.value), read_at=p.input.read_at, volume_m3=p.input.volume_m3,
            baseline_at=base.read_at if base is not None else None, consumption_m3=p.result.consumption_m3,
            avg_daily_use_m3=p.context.avg_daily_use_m3))
    return out


async def _with_households(conn: AsyncConnection, charged: list[AcceptedReading]) -> list[AcceptedReading]:
    """The residential readings with their account's household for the uplift (rule 4): one query for
    the batch, the household in force before the day after its latest reading (its approval's dates
    still decide which days get the uplift)."""
    residential = [r for r in charged if r.category is TariffCategory.RESIDENTIAL]
    if not residential:
        return charged
    last_day = max(r.read_at for r in residential).astimezone(ev.CHINA_TZ).date() + timedelta(days=1)
    found = await households_for(conn, {r.account_id for r in residential}, last_day)
    if not found:
        return charged
    return [replace(r, household=found[r.account_id]) if r.category is TariffCategory.RESIDENTIAL
            and r.account_id in found else r for r in charged]


# ---- events --------------------------------------------------------------------------------------


async def _emit(conn: AsyncConnection, inserted: list[_Pending], meters: dict[str, _Meter],
                settings: ReadingsSettings, privacy: Privacy | None) -> None:
    done: list[tuple[ev.StoredReading, Incoming]] = []
    for p in inserted:
        assert p.result is not None
        if p.result.findings:
            facts = meters[p.data.meter_id].facts
            account_id = facts.account_id if facts else None
            done.append((ev.StoredReading(p.item.message_id, p.data, p.result, account_id), p.item))
    if not done:
        return
    leaking = {r.data.meter_id for r, _ in done if any(ev.leak_alarm(f) for f in ev.alarm_findings(r.result))}
    open_leaks = await ctx.open_leak_alarms(conn, leaking) if leaking else set()
    wanted = {r.data.meter_id for r, _ in done if ev.notify_rules(r.result, settings)}
    phones = await _phones(conn, wanted, privacy) if wanted else {}

    events: list[tuple[Event, Incoming | None]] = []
    for r, cause in done:  # in time order per meter: the first reading of a leak raises it, once
        told_already = r.data.meter_id in open_leaks
        telling = set(ev.notify_rules(r.result, settings)) if r.data.meter_id in phones else set()
        if settings.raise_alarms:  # an alarm whose rule the holder is told of here carries user_notified
            events.extend((ev.alarm_event(r, f, user_notified=f.rule in telling), cause)
                          for f in ev.alarm_findings(r.result) if not (ev.leak_alarm(f) and told_already))
        if any(ev.leak_alarm(f) for f in ev.alarm_findings(r.result)):
            open_leaks.add(r.data.meter_id)
        for rule in ev.notify_rules(r.result, settings):
            if rule is RuleId.LEAK and told_already:
                continue
            phone = phones.get(r.data.meter_id)
            if phone is None:
                log.info("readings.notification_skipped", extra={
                    "meter_id": r.data.meter_id, "rule": rule.value,
                    "reason": "no holder's phone (meter on no account, or no personal-data keys)"})
                continue
            events.append((ev.notification_event(r, rule, phone), cause))
        if settings.request_work_orders:
            events.extend((e, cause) for e in ev.work_order_events(r))
        if settings.flag_events and ev.is_flagged(r.result):
            events.append((ev.flagged_event(r), cause))
    await emit(conn, events)


async def _phones(conn: AsyncConnection, meter_ids: set[str], privacy: Privacy | None) -> dict[str, str]:
    """The holders' mobile numbers, decrypted (only for readings that notify)."""
    if privacy is None:
        return {}
    out = {}
    for meter_id, holder in (await ctx.holders(conn, meter_ids)).items():
        try:
            out[meter_id] = privacy.cipher.decrypt(
                holder.phone_enc, context=field_context(customer.name, "phone", holder.customer_id))
        except DecryptionError:
            log.warning("readings.phone_unreadable", extra={"meter_id": meter_id, "account_id": holder.account_id})
    return out
