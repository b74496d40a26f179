"""Reopening a valve: only with a field engineer's on-site confirmation, and only when what closed it
is over.

A valve the core closed stays closed until someone has been there. :func:`reopen_valve` sends
``valve.command`` open (safety lane, ``on_site_confirmed``) when:

* the confirmation says the on-site check was done, by whom and when: not in the future, not older
  than ``CONFIRMATION_MAX_AGE``, and not before the valve was closed;
* no leak, abnormal-flow or gas-detector alarm of the meter is still ``open``, nor any other alarm that
  closed it (the alarm policy may close for other kinds); acknowledged or closed ones are over: someone
  has taken charge;
* a prepaid meter's balance is above zero (a top-up never reopens by itself);
* there is something to reopen: a closure not yet resolved, or a valve not reported open.

The reopen resolves every open closure of the meter (``core_valve_closure.reopen_id``) and is stored
once per ``client_request_id``: the same request again returns the first answer; the same id with
other content is a ``Conflict``. The open command joins the flow of the latest closure, so one trace
shows the valve closed and reopened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from core.catalogue import Lane
from core.catalogue.messages import ValveAction, ValveCommand
from core.db.tables import alarm
from core.db.tables_accounts import account
from core.db.tables_billing import meter
from core.db.tables_valves import valve_closure, valve_reopen
from core.errors import Conflict, CoreError, DomainRejected
from core.messages import Caused, Event
from core.outbox import emit
from core.valves.closures import CLOSE_VALVE_FOR, ClosedBy, Closure, closure_of, open_closures

CONFIRMATION_MAX_AGE = timedelta(hours=24)
"""An on-site check older than this no longer says how the site is now."""
CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future a confirmation's time may be (the engineer's device clock)."""


class MeterNotFound(CoreError, LookupError):
    """No meter with that id."""


class ReopenRefused(DomainRejected):
    """The valve may not be reopened (yet); ``reasons`` says why, each in a sentence."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = tuple(reasons)


@dataclass(frozen=True, slots=True)
class Confirmation:
    """What the field engineer confirms: the on-site check was done, by whom, when, with notes."""

    on_site_check_done: bool
    checked_by: str
    checked_at: datetime
    notes: str = ""


@dataclass(frozen=True, slots=True)
class ValveStatus:
    """A meter's valve as the core knows it, and what stands in the way of reopening it."""

    meter_id: str
    valve_state: str
    prepaid: bool
    closures: tuple[Closure, ...]
    """Open closures, oldest first."""
    open_alarms: tuple[str, ...]
    """Ids of the meter's open alarms that keep its valve closed."""
    blockers: tuple[str, ...]

    @property
    def reopen_allowed(self) -> bool:
        """Whether a confirmed reopen would be accepted now."""
        return not self.blockers


@dataclass(frozen=True, slots=True)
class Reopened:
    reopen_id: str
    command_id: str
    meter_id: str
    closures: tuple[Closure, ...]
    """The closures this reopen resolved."""
    requested_at: datetime
    replayed: bool
    """The same request was answered before: nothing new was sent."""


async def valve_status(conn: AsyncConnection, meter_id: str, *, lock: bool = False) -> ValveStatus:
    """The valve's state, open closures and blockers; ``lock`` holds the meter row (reopen)."""
    stmt = (select(meter.c.valve_state, meter.c.prepaid_balance, account.c.billing)
            .select_from(meter.outerjoin(account, account.c.id == meter.c.account_id))
            .where(meter.c.id == meter_id))
    if lock:
        stmt = stmt.with_for_update(of=meter)
    row = (await conn.execute(stmt)).first()
    if row is None:
        raise MeterNotFound(f"there is no meter {meter_id[:40]!r}")
    closures = tuple((await open_closures(conn, [meter_id])).get(meter_id, []))
    closed_by_alarm = select(valve_closure.c.reference).where(valve_closure.c.meter_id == meter_id,
                                                              valve_closure.c.reason == ClosedBy.SAFETY.value)
    alarms = tuple((await conn.execute(
        select(alarm.c.id).where(alarm.c.meter_id == meter_id, alarm.c.status == "open",
                                 or_(alarm.c.kind.in_(sorted(CLOSE_VALVE_FOR)), alarm.c.id.in_(closed_by_alarm)))
        .order_by(alarm.c.detected_at, alarm.c.id)
    )).scalars())
    prepaid = row.billing == "prepaid"
    blockers = [f"alarm {a} is open: acknowledge or close it once the site is safe" for a in alarms]
    if prepaid and row.prepaid_balance <= 0:
        blockers.append("the prepaid balance is not above zero: the account must be topped up first")
    if not closures and row.valve_state == "open":
        blockers.append("the valve is reported open and no closure is pending: nothing to reopen")
    return ValveStatus(meter_id, row.valve_state, prepaid, closures, alarms, tuple(blockers))


def _confirmation_problems(c: Confirmation, closures: tuple[Closure, ...], now: datetime) -> list[str]:
    problems = []
    if not c.on_site_check_done:
        problems.append("the on-site check is not confirmed (on_site_check_done must be true)")
    if c.checked_at > now + CLOCK_SKEW:
        problems.append(f"the check's time {c.checked_at.isoformat()} is in the future")
    elif c.checked_at < now - CONFIRMATION_MAX_AGE:
        problems.append(f"the check at {c.checked_at.isoformat()} is older than "
                        f"{int(CONFIRMATION_MAX_AGE.total_seconds() // 3600)} hours: check the site again")
    if closures and c.checked_at < max(cl.closed_at for cl in closures):
        last = max(closures, key=lambda cl: cl.closed_at)
        problems.append(f"the check at {c.checked_at.isoformat()} was before the valve was closed "
                        f"({last.reason.value}, {last.closed_at.isoformat()}): check the site again")
    return problems


async def reopen_valve(conn: AsyncConnection, meter_id: str, client_request_id: str, confirmation: Confirmation,
                       *, user_id: str, now: datetime) -> Reopened:
    """Send ``valve.command`` open for ``meter_id`` if the confirmation and the meter allow it (module
    notes), in the caller's transaction. Raises :class:`MeterNotFound`, :class:`ReopenRefused` or
    ``Conflict`` (the request id was used for another reopen)."""
    status = await valve_status(conn, meter_id, lock=True)
    earlier = (await conn.execute(
        select(valve_reopen).where(valve_reopen.c.client_request_id == client_request_id))).first()
    if earlier is not None:
        same = (earlier.meter_id, earlier.checked_by, earlier.checked_at, earlier.notes) == (
            meter_id, confirmation.checked_by, confirmation.checked_at, confirmation.notes)
        if not same:
            raise Conflict(f"client request id {client_request_id!r} was used for another reopen; "
                           "use a new request id for a new request")
        resolved = tuple(closure_of(r) for r in await conn.execute(
            select(valve_closure).where(valve_closure.c.reopen_id == earlier.id).order_by(valve_closure.c.closed_at)))
        return Reopened(earlier.id, earlier.command_id, meter_id, resolved, earlier.requested_at, replayed=True)

    problems = _confirmation_problems(confirmation, status.closures, now) + list(status.blockers)
    if problems:
        raise ReopenRefused(problems)
    reopen_id = str(ULID())
    command_id = f"reopen-{reopen_id}"
    reasons = sorted({c.reason.value for c in status.closures}) or ["state " + status.valve_state]
    await conn.execute(valve_reopen.insert().values(
        id=reopen_id, client_request_id=client_request_id, meter_id=meter_id, command_id=command_id,
        checked_by=confirmation.checked_by, checked_at=confirmation.checked_at, notes=confirmation.notes,
        user_id=user_id, requested_at=now))
    if status.closures:
        await conn.execute(update(valve_closure).where(valve_closure.c.id.in_([c.id for c in status.closures]))
                           .values(reopen_id=reopen_id))
    command = ValveCommand(command_id=command_id, meter_id=meter_id, action=ValveAction.OPEN,
                           reason=f"reopen {reopen_id} confirmed on site (closed: {', '.join(reasons)})",
                           requested_by=f"field:{user_id}"[:64], on_site_confirmed=True)
    latest = max(status.closures, key=lambda c: c.closed_at, default=None)
    cause = (Caused(latest.message_id, latest.correlation_id, meter_id)
             if latest is not None and latest.message_id is not None else None)
    await emit(conn, [(Event("valve.command", command, subject=meter_id, lane=Lane.SAFETY), cause)])
    return Reopened(reopen_id, command_id, meter_id, status.closures, now, replayed=False)


