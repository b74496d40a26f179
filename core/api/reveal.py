"""Reads that may reveal personal data: masked by default; ``?reveal=true`` only for roles with
``personal_data`` read, and every reveal request — granted, denied or failed — in the API audit log
(``resource=personal_data``, ``detail=reveal``), although reads are otherwise not audited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from core.api.framework import API, principal_of
from core.api.permissions import Action, Resource, allowed
from core.api.problems import ProblemError, json_response
from core.api.users import AuditEntry, record_audit


async def _audit_reveal(request: web.Request, status: int) -> None:
    ctx = request.app[API]
    p = principal_of(request)
    await record_audit(ctx.engine, AuditEntry(
        method=request.method, path=request.path, resource=Resource.PERSONAL_DATA.value,
        resource_id=request.match_info.get("id"), status=status, at=ctx.clock(), user_id=p.user_id,
        username=p.username, role=p.role.value, remote=request.remote, detail="reveal",
    ))


async def read_revealable(
    request: web.Request, reveal: bool, build: Callable[[], Awaitable[Any]]
) -> web.StreamResponse:
    """``build()`` as JSON; a reveal is checked against ``personal_data`` read and audited whatever happens."""
    if not reveal:
        return json_response(await build())
    status = 500
    try:
        p = principal_of(request)
        if not allowed(p.role, Resource.PERSONAL_DATA, Action.READ):
            raise ProblemError(403, "Forbidden",
                               f"Role '{p.role.value}' may not reveal personal data; leave out 'reveal' for the "
                               "masked view (see docs/permissions.md).")
        response = json_response(await build())
        status = response.status
        return response
    except ProblemError as exc:
        status = exc.status
        raise
    finally:
        await _audit_reveal(request, status)
