"""A work order's life: its states, side states, priorities and the transitions allowed between states.

The closed loop of the 12345-hotline model (domain.md): accepted → dispatched → signed → on site →
handled → closed → visited → archived. The handling unit may send a misrouted order back
(dispatched/signed → accepted); handling the inspector does not accept goes back on site; a
dissatisfied return visit reopens the order (closed/visited → accepted, side state ``reopened``, a new
SLA clock). Side states are a set beside the state: ``overdue`` (the SLA clock ran out), ``supervised``
(督办: a supervisor is chasing it), ``extension_requested`` and ``reopened``.
"""

from __future__ import annotations

from enum import StrEnum


class WorkOrderStatus(StrEnum):
    ACCEPTED = "accepted"
    DISPATCHED = "dispatched"
    SIGNED = "signed"
    ON_SITE = "on_site"
    HANDLED = "handled"
    CLOSED = "closed"
    VISITED = "visited"
    ARCHIVED = "archived"


class WorkOrderFlag(StrEnum):
    OVERDUE = "overdue"
    SUPERVISED = "supervised"
    EXTENSION_REQUESTED = "extension_requested"
    REOPENED = "reopened"


class Priority(StrEnum):
    EMERGENCY = "emergency"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


S = WorkOrderStatus
TRANSITIONS: dict[WorkOrderStatus, frozenset[WorkOrderStatus]] = {
    S.ACCEPTED: frozenset({S.DISPATCHED}),
    S.DISPATCHED: frozenset({S.SIGNED, S.ACCEPTED}),
    S.SIGNED: frozenset({S.ON_SITE, S.ACCEPTED}),
    S.ON_SITE: frozenset({S.HANDLED}),
    S.HANDLED: frozenset({S.CLOSED, S.ON_SITE}),
    S.CLOSED: frozenset({S.VISITED, S.ARCHIVED, S.ACCEPTED}),
    S.VISITED: frozenset({S.ARCHIVED, S.ACCEPTED}),
    S.ARCHIVED: frozenset(),
}
"""State → the states it may move to. Anything else is refused (``DomainRejected``)."""

ORDER = tuple(WorkOrderStatus)
"""The states in the loop's order: a state at or past ``handled`` means the work was done."""

DONE = frozenset({S.HANDLED, S.CLOSED, S.VISITED, S.ARCHIVED})
"""The work is done: an alarm whose orders are all here may be closed without a reason."""

REOPENS_FROM = frozenset({S.CLOSED, S.VISITED})
"""Moving from these back to ``accepted`` reopens the order (new SLA clock, side state ``reopened``)."""

SETTABLE_FLAGS = frozenset({WorkOrderFlag.SUPERVISED, WorkOrderFlag.EXTENSION_REQUESTED})
"""Side states a user sets through the API; ``overdue`` and ``reopened`` follow from the clock and the
transitions."""


def reached(status: WorkOrderStatus, target: WorkOrderStatus) -> bool:
    """Whether ``status`` is ``target`` or past it in the loop's order."""
    return ORDER.index(status) >= ORDER.index(target)
