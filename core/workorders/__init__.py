"""Work orders: the record the dispatch loop builds on (states, side states, SLA clocks, history).

Opened by the core's own use cases (an alarm's policy) and moved through the loop through the API; the
dispatch loop proper (crews, return visits) will grow on these functions.
"""

from core.workorders.calendar import due_at, is_working_day
from core.workorders.settings import DEFAULT_WORK_ORDERS, SlaCommitment, WorkOrderSettings
from core.workorders.states import TRANSITIONS, Priority, WorkOrderFlag, WorkOrderStatus
from core.workorders.store import (
    NewWorkOrder,
    WorkOrder,
    WorkOrderNotFound,
    get_work_order,
    history,
    list_overdue,
    mark_overdue,
    open_work_orders,
    orders_for_alarms,
    set_flag,
    transition,
)

__all__ = [
    "DEFAULT_WORK_ORDERS",
    "TRANSITIONS",
    "NewWorkOrder",
    "Priority",
    "SlaCommitment",
    "WorkOrder",
    "WorkOrderFlag",
    "WorkOrderNotFound",
    "WorkOrderSettings",
    "WorkOrderStatus",
    "due_at",
    "get_work_order",
    "history",
    "is_working_day",
    "list_overdue",
    "mark_overdue",
    "open_work_orders",
    "orders_for_alarms",
    "set_flag",
    "transition",
]
