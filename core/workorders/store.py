"""Opening work orders, moving them through the loop, and finding the ones past their SLA.

Every change appends to the order's history (``core_work_order_event``) in the caller's transaction.
Opening is idempotent by ``source``; a transition to the state the order is already in changes nothing
(a retried request is not an error); any other move not in :data:`~core.workorders.states.TRANSITIONS`
is refused with ``DomainRejected`` naming the moves allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from core.db.bulk import insert_many
from core.db.tables_workorders import work_order, work_order_event
from core.errors import DomainRejected
from core.workorders.calendar import due_at
from core.workorders.settings import WorkOrderSettings
from core.workorders.states import (
    DONE,
    REOPENS_FROM,
    SETTABLE_FLAGS,
    TRANSITIONS,
    Priority,
    WorkOrderFlag,
    WorkOrderStatus,
    reached,
)


class WorkOrderNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class NewWorkOrder:
    """What opens an order. ``source`` identifies what asked for it (``alarm:<id>``): once per source."""

    source: str
    category: str
    priority: Priority
    correlation_id: str
    account_id: str | None = None
    meter_id: str | None = None
    alarm_id: str | None = None
    summary: str = ""


@dataclass(frozen=True, slots=True)
class WorkOrder:
    id: str
    source: str
    category: str
    priority: Priority
    status: WorkOrderStatus
    flags: frozenset[WorkOrderFlag]
    account_id: str | None
    meter_id: str | None
    alarm_id: str | None
    summary: str
    opened_at: datetime
    due_at: datetime
    clock_until: WorkOrderStatus
    clock_stopped_at: datetime | None
    updated_at: datetime
    correlation_id: str

    @property
    def done(self) -> bool:
        return self.status in DONE


def _flags(text: str) -> frozenset[WorkOrderFlag]:
    return frozenset(WorkOrderFlag(f) for f in text.split(",") if f)


def _flag_text(flags: frozenset[WorkOrderFlag]) -> str:
    return ",".join(sorted(f.value for f in flags))


def order_of(r: Row[Any]) -> WorkOrder:
    return WorkOrder(id=r.id, source=r.source, category=r.category, priority=Priority(r.priority),
                     status=WorkOrderStatus(r.status), flags=_flags(r.flags), account_id=r.account_id,
                     meter_id=r.meter_id, alarm_id=r.alarm_id, summary=r.summary, opened_at=r.opened_at,
                     due_at=r.due_at, clock_until=WorkOrderStatus(r.clock_until),
                     clock_stopped_at=r.clock_stopped_at, updated_at=r.updated_at, correlation_id=r.correlation_id)


def _event(order_id: str, at: datetime, by: str, action: str, *, from_status: str | None = None,
           to_status: str | None = None, flag: str | None = None, note: str = "") -> dict[str, Any]:
    return {"id": str(ULID()), "order_id": order_id, "at": at, "by": by, "action": action,
            "from_status": from_status, "to_status": to_status, "flag": flag, "note": note}


async def open_work_orders(conn: AsyncConnection, orders: Sequence[NewWorkOrder], settings: WorkOrderSettings, *,
                           by: str, now: datetime) -> dict[str, str]:
    """Open the orders not opened before (by ``source``); returns source → order id for the ones opened
    now. An unknown category is refused (``DomainRejected``)."""
    now = now.astimezone(UTC)
    rows = []
    for o in orders:
        sla = settings.categories.get(o.category)
        if sla is None:
            raise DomainRejected(f"work order for {o.source}: no category {o.category!r} "
                                 f"(known: {', '.join(sorted(settings.categories))})")
        rows.append({"id": str(ULID()), "source": o.source, "category": o.category, "priority": o.priority.value,
                     "status": WorkOrderStatus.ACCEPTED.value, "flags": "", "account_id": o.account_id,
                     "meter_id": o.meter_id, "alarm_id": o.alarm_id, "summary": o.summary, "opened_at": now,
                     "due_at": due_at(now, sla, settings), "clock_until": sla.until.value, "clock_stopped_at": None,
                     "updated_at": now, "correlation_id": o.correlation_id})
    opened = await insert_many(conn, work_order, rows, ignore_conflicts=True, returning=("id", "source"))
    await insert_many(conn, work_order_event, [
        _event(order_id, now, by, "open", to_status=WorkOrderStatus.ACCEPTED.value) for order_id, _ in opened
    ])
    return {source: order_id for order_id, source in opened}


async def get_work_order(conn: AsyncConnection, order_id: str, *, for_update: bool = False) -> WorkOrder:
    stmt = select(work_order).where(work_order.c.id == order_id)
    if for_update and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    if row is None:
        raise WorkOrderNotFound(order_id)
    return order_of(row)


async def transition(conn: AsyncConnection, order_id: str, to: WorkOrderStatus, settings: WorkOrderSettings, *,
                     by: str, note: str, now: datetime) -> tuple[WorkOrder, bool]:
    """Move the order to ``to``; returns the order and whether it changed. Reopening (closed or visited
    → accepted) starts a new SLA clock and sets ``reopened``; reaching the clock's state stops it."""
    order = await get_work_order(conn, order_id, for_update=True)
    if order.status is to:
        return order, False
    if to not in TRANSITIONS[order.status]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[order.status])) or "none (archived)"
        raise DomainRejected(f"work order {order_id} is {order.status.value}: it cannot move to {to.value} "
                             f"(allowed: {allowed})")
    now = now.astimezone(UTC)
    values: dict[str, Any] = {"status": to.value, "updated_at": now}
    flags = order.flags
    if to is WorkOrderStatus.ACCEPTED and order.status in REOPENS_FROM:
        flags = (flags | {WorkOrderFlag.REOPENED}) - {WorkOrderFlag.OVERDUE}
        sla = settings.categories.get(order.category)
        if sla is not None:
            values |= {"due_at": due_at(now, sla, settings), "clock_until": sla.until.value}
        values["clock_stopped_at"] = None
    elif order.clock_stopped_at is None and reached(to, order.clock_until):
        values["clock_stopped_at"] = now
    values["flags"] = _flag_text(flags)
    moved = await conn.execute(update(work_order).where(work_order.c.id == order_id,
                                                        work_order.c.status == order.status.value).values(**values))
    if moved.rowcount != 1:  # SQLite takes no row lock: another transaction moved it since we read it
        raise DomainRejected(f"work order {order_id} was moved by someone else meanwhile: read it again")
    await insert_many(conn, work_order_event, [_event(order_id, now, by, "status", from_status=order.status.value,
                                                      to_status=to.value, note=note)])
    return await get_work_order(conn, order_id), True


async def set_flag(conn: AsyncConnection, order_id: str, flag: WorkOrderFlag, *, by: str, note: str,
                   now: datetime) -> tuple[WorkOrder, bool]:
    """Set a side state a user may set (supervised, extension requested); setting it again changes nothing."""
    if flag not in SETTABLE_FLAGS:
        raise DomainRejected(f"'{flag.value}' is not set by hand: it follows from the SLA clock or a reopen")
    order = await get_work_order(conn, order_id, for_update=True)
    if flag in order.flags:
        return order, False
    if order.status is WorkOrderStatus.ARCHIVED:
        raise DomainRejected(f"work order {order_id} is archived: nothing more is done with it")
    now = now.astimezone(UTC)
    await conn.execute(update(work_order).where(work_order.c.id == order_id)
                       .values(flags=_flag_text(order.flags | {flag}), updated_at=now))
    await insert_many(conn, work_order_event, [_event(order_id, now, by, "flag", flag=flag.value, note=note)])
    return await get_work_order(conn, order_id), True


def _running_late(now: datetime) -> Any:
    return and_(work_order.c.clock_stopped_at.is_(None), work_order.c.due_at < now,
                work_order.c.status.not_in([s.value for s in DONE]))


async def list_overdue(conn: AsyncConnection, now: datetime, limit: int = 1000) -> list[WorkOrder]:
    """Orders whose SLA clock still runs past its deadline, the most late first."""
    stmt = select(work_order).where(_running_late(now.astimezone(UTC))).order_by(work_order.c.due_at,
                                                                                 work_order.c.id).limit(limit)
    return [order_of(r) for r in await conn.execute(stmt)]


async def mark_overdue(conn: AsyncConnection, now: datetime, *, by: str = "core.sla") -> list[str]:
    """Set ``overdue`` on the orders past their deadline that do not carry it yet (a scheduler calls it);
    returns their ids."""
    marked = []
    for order in await list_overdue(conn, now):
        if WorkOrderFlag.OVERDUE in order.flags:
            continue
        await conn.execute(update(work_order).where(work_order.c.id == order.id)
                           .values(flags=_flag_text(order.flags | {WorkOrderFlag.OVERDUE})))
        await insert_many(conn, work_order_event, [_event(order.id, now.astimezone(UTC), by, "flag",
                                                          flag=WorkOrderFlag.OVERDUE.value,
                                                          note=f"due {order.due_at.isoformat()}")])
        marked.append(order.id)
    return marked


async def history(conn: AsyncConnection, order_id: str) -> list[dict[str, Any]]:
    stmt = select(work_order_event).where(work_order_event.c.order_id == order_id).order_by(
        work_order_event.c.at, work_order_event.c.id)
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def orders_for_alarms(conn: AsyncConnection, alarm_ids: Sequence[str]) -> dict[str, list[WorkOrder]]:
    if not alarm_ids:
        return {}
    found: dict[str, list[WorkOrder]] = {}
    stmt = select(work_order).where(work_order.c.alarm_id.in_(sorted(set(alarm_ids)))).order_by(work_order.c.id)
    for r in await conn.execute(stmt):
        found.setdefault(r.alarm_id, []).append(order_of(r))
    return found
