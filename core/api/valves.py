"""A meter's valve in /api/v1: why it is closed, and reopening it after an on-site check.

* ``GET /meters/{id}/valve`` — the valve's last reported state, the closures still pending (closed for
  a prepaid balance at zero, a safety alarm, an operator) and what stands in the way of reopening it
  (an open leak-type alarm, a prepaid balance not above zero). The balance itself is not shown.
* ``POST /meters/{id}/valve/reopen`` — a field engineer (or an administrator) confirms the on-site
  check (done, by whom, when, notes) and the core sends ``valve.command`` open on the safety lane
  (:func:`core.valves.reopen_valve`). Idempotent by ``client_request_id``: the same request again
  answers the same, without a second command; the same id with other content is a 409.

Errors: 400 a malformed body (a missing ``confirmation`` is named), 404 no such meter, 409 a reused
request id, 422 a refused reopen (each reason in ``detail``: the check not confirmed, too old, before
the closure or in the future; an open alarm; the balance; nothing to reopen). Every call to the
reopen route, allowed, refused or failed, is audited with what it did (never the engineer's notes).
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from core.api.framework import API, AUDIT_DETAIL, Endpoint, parse_body, principal_of, require
from core.api.permissions import Action, Resource
from core.api.problems import ProblemError, json_response
from core.errors import Conflict
from core.valves import Closure, Confirmation, MeterNotFound, ReopenRefused, reopen_valve, valve_status

AUDIT_LIMIT = 200


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OnSiteConfirmation(_Body):
    on_site_check_done: bool = Field(description="The engineer was on site and found it safe to open the valve.")
    checked_by: str = Field(min_length=1, max_length=64, description="Who did the check (name or staff number).")
    checked_at: AwareDatetime = Field(description="When: after the valve was closed, within the last 24 hours.")
    notes: str = Field(default="", max_length=1000, description="What was checked and found.")


class ReopenBody(_Body):
    client_request_id: str = Field(min_length=1, max_length=64,
                                   description="Chosen by the client; a retry with the same id and content "
                                               "returns the first answer.")
    confirmation: OnSiteConfirmation


class ClosureView(BaseModel):
    id: str = Field(description="The close command's id.")
    reason: str = Field(description="prepaid, safety or operator.")
    reference: str = Field(description="The reading (prepaid) or the alarm (safety) that closed it.")
    closed_at: datetime


class ValveView(BaseModel):
    meter_id: str
    valve_state: str = Field(description="As the meter last reported it.")
    prepaid: bool
    closures: list[ClosureView] = Field(description="Closures no reopen has resolved yet, oldest first.")
    open_alarms: list[str] = Field(description="Open alarms of the meter that keep its valve closed.")
    reopen_allowed: bool = Field(description="Whether a confirmed reopen would be accepted now.")
    blockers: list[str]


class ReopenView(BaseModel):
    reopen_id: str
    command_id: str = Field(description="The valve.command open sent to the meter platform.")
    meter_id: str
    resolved: list[ClosureView]
    requested_at: datetime
    replayed: bool = Field(description="The same request was answered before: nothing new was sent.")


def _closures(closures: tuple[Closure, ...]) -> list[ClosureView]:
    return [ClosureView(id=c.id, reason=c.reason.value, reference=c.reference, closed_at=c.closed_at)
            for c in closures]


def _not_found(meter_id: str) -> ProblemError:
    return ProblemError(404, "Not found", f"There is no meter '{meter_id[:40]}'.")


@require(Resource.VALVES, Action.READ)
async def get_valve(request: web.Request) -> web.StreamResponse:
    meter_id = request.match_info["id"]
    async with request.app[API].engine.connect() as conn:
        try:
            status = await valve_status(conn, meter_id)
        except MeterNotFound:
            raise _not_found(meter_id) from None
    view = ValveView(meter_id=meter_id, valve_state=status.valve_state, prepaid=status.prepaid,
                     closures=_closures(status.closures), open_alarms=list(status.open_alarms),
                     reopen_allowed=status.reopen_allowed, blockers=list(status.blockers))
    return json_response(view.model_dump(mode="json"))


@require(Resource.VALVES, Action.WRITE)
async def reopen_valve_route(request: web.Request) -> web.StreamResponse:
    """Reopen after an on-site check (module notes); 200 with the command sent (or sent before)."""
    meter_id = request.match_info["id"]
    body = await parse_body(request, ReopenBody)
    c = body.confirmation
    confirmation = Confirmation(on_site_check_done=c.on_site_check_done, checked_by=c.checked_by.strip(),
                                checked_at=c.checked_at, notes=c.notes)
    ctx = request.app[API]
    try:
        async with ctx.engine.begin() as conn:
            done = await reopen_valve(conn, meter_id, body.client_request_id.strip(), confirmation,
                                      user_id=principal_of(request).user_id, now=ctx.clock())
    except MeterNotFound:
        request[AUDIT_DETAIL] = "no such meter"
        raise _not_found(meter_id) from None
    except ReopenRefused as exc:
        request[AUDIT_DETAIL] = ("refused: " + "; ".join(exc.reasons))[:AUDIT_LIMIT]
        raise ProblemError(422, "Reopen refused", "The valve stays closed: " + "; ".join(exc.reasons) + ".") from None
    except Conflict as exc:
        request[AUDIT_DETAIL] = "conflict: request id reused"
        raise ProblemError(409, "Conflict", f"{exc}.") from None
    reasons = ",".join(sorted({cl.reason.value for cl in done.closures})) or "none pending"
    request[AUDIT_DETAIL] = (f"{'replayed' if done.replayed else 'reopen sent'}: {done.command_id} "
                             f"(closures: {reasons})")[:AUDIT_LIMIT]
    view = ReopenView(reopen_id=done.reopen_id, command_id=done.command_id, meter_id=meter_id,
                      resolved=_closures(done.closures), requested_at=done.requested_at, replayed=done.replayed)
    return json_response(view.model_dump(mode="json"))


def valve_endpoints() -> list[Endpoint]:
    """The valve routes (relative to /api/v1)."""
    return [
        Endpoint("GET", "/meters/{id}/valve", get_valve,
                 "A meter's valve: its state, why it is closed, and what stands in the way of reopening it",
                 ValveView, Resource.VALVES, Action.READ, path_params=("id",), errors=(401, 403, 404)),
        Endpoint("POST", "/meters/{id}/valve/reopen", reopen_valve_route,
                 "Reopen a closed valve after an on-site check (idempotent by client_request_id)", ReopenView,
                 Resource.VALVES, Action.WRITE, body=ReopenBody, path_params=("id",),
                 errors=(400, 401, 403, 404, 409, 422)),
    ]
