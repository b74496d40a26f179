"""The API's plumbing: settings key, ``require`` (authorisation on every endpoint), query parsing,
cursors, the error and write-audit middlewares, and the route table the OpenAPI document reads."""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.api.permissions import Action, Resource, allowed
from core.api.problems import ProblemError, problem
from core.api.users import AuditEntry, AuthPolicy, Clock, Principal, PrincipalCache, authenticate, record_audit

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Q = TypeVar("Q", bound=BaseModel)


@dataclass(frozen=True)
class ApiContext:
    engine_source: AsyncEngine | Callable[[], AsyncEngine]
    clock: Clock
    policy: AuthPolicy
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    reads_source: AsyncEngine | Callable[[], AsyncEngine] | None = None
    """For one-statement page reads (``core.db.combined``); the engine when not given."""

    @property
    def engine(self) -> AsyncEngine:
        src = self.engine_source
        return src if isinstance(src, AsyncEngine) else src()

    @property
    def reads_engine(self) -> AsyncEngine:
        src = self.reads_source
        if src is None:
            return self.engine
        return src if isinstance(src, AsyncEngine) else src()


API: web.AppKey[ApiContext] = web.AppKey("gashub_api", ApiContext)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("api_principal", Principal)
AUDIT_RESOURCE: web.RequestKey[str] = web.RequestKey("api_audit_resource", str)
AUDIT_USERNAME: web.RequestKey[str] = web.RequestKey("api_audit_username", str)
AUDIT_DETAIL: web.RequestKey[str] = web.RequestKey("api_audit_detail", str)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    response: type[BaseModel]
    resource: Resource | None = None
    action: Action | None = None
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    path_params: tuple[str, ...] = ()
    errors: tuple[int, ...] = field(default=(400, 401, 403))
    body_required: bool = True
    """``False``: the body may be left out (its model's defaults apply)."""
    content_type: str = "application/json"

    @property
    def public(self) -> bool:
        return self.resource is None


def require(resource: Resource, action: Action) -> Callable[[Handler], Handler]:
    """Authenticate the bearer token and allow the call only if the role may ``action`` ``resource``."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            request[AUDIT_RESOURCE] = resource.value
            ctx = request.app[API]
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ProblemError(401, "Unauthorized",
                                   "Send 'Authorization: Bearer <token>'; get a token from POST /api/v1/auth/token.",
                                   headers={"WWW-Authenticate": 'Bearer realm="gashub"'})
            principal = await authenticate(ctx.engine, token.strip(), ctx.policy, ctx.clock, ctx.principals)
            if principal is None:
                raise ProblemError(401, "Unauthorized",
                                   "The token is unknown, expired, idle too long or revoked: "
                                   "get a new one from POST /api/v1/auth/token.",
                                   headers={"WWW-Authenticate": 'Bearer realm="gashub", error="invalid_token"'})
            request[PRINCIPAL] = principal
            if not allowed(principal.role, resource, action):
                raise ProblemError(403, "Forbidden",
                                   f"Role '{principal.role.value}' may not {action.value} {resource.value}; "
                                   "ask an administrator for a role that may (see docs/permissions.md).")
            return await handler(request)

        guarded.__api_permission__ = (resource, action)  # type: ignore[attr-defined]
        return guarded

    return wrap


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def parse_query(request: web.Request, model: type[Q]) -> Q:
    """The query string as ``model``; any bad or unknown parameter is a 400 naming it."""
    raw: dict[str, str] = {}
    for key in request.query:
        values = request.query.getall(key)
        if len(values) > 1:
            raise ProblemError(400, "Bad parameter", f"Give '{key}' once.", parameter=key)
        raw[key] = values[0]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _bad(exc, "query parameter") from None


async def parse_body(request: web.Request, model: type[Q]) -> Q:
    try:
        data = await request.json(loads=orjson.loads)
    except ValueError:
        raise ProblemError(400, "Bad body", "Send a JSON object (Content-Type: application/json).") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _bad(exc, "field") from None


async def parse_optional_body(request: web.Request, model: type[Q]) -> Q:
    """The body as ``model``, or ``model()`` when the request has none."""
    if not request.body_exists or not (await request.read()).strip():
        return model()
    return await parse_body(request, model)


def _bad(exc: ValidationError, what: str) -> ProblemError:
    err = exc.errors()[0]
    name = ".".join(str(p) for p in err["loc"]) or "(body)"
    reason = "is not allowed" if err["type"] == "extra_forbidden" else f"is invalid: {err['msg']}"
    return ProblemError(400, "Bad parameter", f"The {what} '{name}' {reason}; fix it and retry.", parameter=name)


def encode_cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key), default=str)).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        key = None
    if not isinstance(key, list) or len(key) != size:
        raise ProblemError(400, "Bad parameter", "The query parameter 'cursor' is not one this API gave out; "
                           "use the next_cursor of the previous page, or leave it out.", parameter="cursor")
    return key


def cursor_time(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise ProblemError(400, "Bad parameter", "The query parameter 'cursor' is damaged; start again without it.",
                           parameter="cursor") from None


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProblemError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem(exc.status, exc.reason, _http_detail(exc.status))
    except Exception:
        log.exception("api.unhandled_error")
        return problem(500, "Internal error", "The error was logged and the request had no effect; retry later.")


def _http_detail(status: int) -> str:
    if status == 404:
        return "No such resource; GET /api/v1/openapi.json lists the endpoints."
    if status == 405:
        return "This method is not allowed here; GET /api/v1/openapi.json lists the methods."
    return "The request was refused."


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record every write (anything but GET/HEAD/OPTIONS): who, what, when, from where, outcome."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return await handler(request)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except ProblemError as exc:
        status = exc.status
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        await _audit(request, status)


async def _audit(request: web.Request, status: int) -> None:
    ctx = request.app[API]
    principal = request.get(PRINCIPAL)
    entry = AuditEntry(
        method=request.method,
        path=request.path,
        resource=request.get(AUDIT_RESOURCE, "unknown"),
        resource_id=request.match_info.get("id"),
        status=status,
        at=ctx.clock(),
        user_id=principal.user_id if isinstance(principal, Principal) else None,
        username=principal.username if isinstance(principal, Principal) else request.get(AUDIT_USERNAME),
        role=principal.role.value if isinstance(principal, Principal) else None,
        remote=request.remote,
        detail=request.get(AUDIT_DETAIL, ""),
    )
    try:
        await record_audit(ctx.engine, entry)
    except Exception:
        log.exception("api.audit_failed", extra={"path": request.path, "status": status})
