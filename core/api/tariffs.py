"""The tariff book in /api/v1 (:mod:`core.tariffs`).

* ``GET /tariffs`` — every stored version by category and date, each marked ``past``, ``current`` (in
  force today, Asia/Shanghai; ``current: true``) or ``future``, with who added it, when and why.
* ``POST /tariffs`` — the administrator adds a version: the body's ``tariff`` is validated by the same
  model as the shipped tariff file (:data:`core.billing.Tariff`), then with the stored book. Idempotent:
  the same version again answers ``created: false`` and stores nothing. Versions are never edited: 409
  when the category already has a version with that date or label and other content (the detail names
  it), 422 when the version would change the price of a day a stored version already prices (only days
  still to come may get a new price) or makes the book inconsistent.

Every POST, allowed, refused or failed, is in the write-audit log with the version it concerned.
"""

from __future__ import annotations

from datetime import date, datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from core.api.framework import API, AUDIT_DETAIL, Endpoint, parse_body, principal_of, require
from core.api.permissions import Action, Resource
from core.api.problems import ProblemError, json_response
from core.billing import Tariff
from core.tariffs import (
    ListedVersion,
    VersionConflict,
    VersionRefused,
    VersionState,
    add_versions,
    company_today,
    list_versions,
)

AUDIT_LIMIT = 200


class NewTariffVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tariff: Tariff = Field(description="The version, as one [[versions]] entry of config/tariffs.toml: residential "
                                       "tiers (thresholds_m3, prices, uplift, cycle_start) or a flat price.")
    note: str = Field(default="", max_length=500, description="Why: the price approval it implements, for example.")


class TariffVersionView(BaseModel):
    id: int
    category: str
    version: str = Field(description="The label printed on bill lines.")
    effective_from: date
    state: VersionState
    current: bool = Field(description="In force today (Asia/Shanghai).")
    tariff: Tariff
    created_at: datetime
    created_by: str
    note: str


class TariffList(BaseModel):
    today: date = Field(description="The day 'current' refers to (Asia/Shanghai).")
    items: list[TariffVersionView] = Field(description="By category, then effective date.")


class AddedTariff(BaseModel):
    created: bool = Field(description="False: the same version was stored already; nothing changed.")
    version: TariffVersionView


def _view(item: ListedVersion) -> TariffVersionView:
    v, t = item.stored, item.stored.tariff
    return TariffVersionView(id=v.id, category=str(t.category), version=t.version, effective_from=t.effective_from,
                             state=item.state, current=item.state is VersionState.CURRENT, tariff=t,
                             created_at=v.created_at, created_by=v.created_by, note=v.note)


@require(Resource.TARIFFS, Action.READ)
async def list_tariffs(request: web.Request) -> web.StreamResponse:
    ctx = request.app[API]
    now = ctx.clock()
    async with ctx.engine.connect() as conn:
        listed = await list_versions(conn, now=now)
    out = TariffList(today=company_today(now), items=[_view(item) for item in listed])
    return json_response(out.model_dump(mode="json"))


@require(Resource.TARIFFS, Action.WRITE)
async def add_tariff(request: web.Request) -> web.StreamResponse:
    """Add one version (module notes)."""
    body = await parse_body(request, NewTariffVersion)
    ctx = request.app[API]
    now = ctx.clock()
    t = body.tariff
    what = f"{t.version} ({t.category} from {t.effective_from.isoformat()})"
    try:
        async with ctx.engine.begin() as conn:
            done = await add_versions(conn, (t,), by=f"api:{principal_of(request).username}", now=now,
                                      note=body.note.strip())
            listed = await list_versions(conn, now=now)
    except VersionConflict as exc:
        request[AUDIT_DETAIL] = f"conflict: {what} stored with other content"[:AUDIT_LIMIT]
        raise ProblemError(409, "Conflict", f"{exc}.") from None
    except VersionRefused as exc:
        request[AUDIT_DETAIL] = f"refused: {what}"[:AUDIT_LIMIT]
        raise ProblemError(422, "Tariff refused", f"{exc}.") from None
    except IntegrityError:
        request[AUDIT_DETAIL] = f"conflict: {what} added by another request meanwhile"[:AUDIT_LIMIT]
        raise ProblemError(409, "Conflict", f"Another request stored a {t.category} version with this date or "
                                            "label meanwhile: GET /api/v1/tariffs and retry if still needed.") from None
    stored = (done.added or done.unchanged)[0]
    request[AUDIT_DETAIL] = f"{'added' if done.added else 'unchanged'}: {stored.name}"[:AUDIT_LIMIT]
    item = next(i for i in listed if i.stored.id == stored.id)
    return json_response(AddedTariff(created=bool(done.added), version=_view(item)).model_dump(mode="json"))


def tariff_endpoints() -> list[Endpoint]:
    """The tariff routes (relative to /api/v1)."""
    return [
        Endpoint("GET", "/tariffs", list_tariffs, "The tariff versions by category and date; the one in force today "
                 "is current", TariffList, Resource.TARIFFS, Action.READ, errors=(401, 403)),
        Endpoint("POST", "/tariffs", add_tariff, "Add a tariff version from a date still to come (idempotent; "
                 "versions are never edited)", AddedTariff, Resource.TARIFFS, Action.WRITE, body=NewTariffVersion,
                 errors=(400, 401, 403, 409, 422)),
    ]
