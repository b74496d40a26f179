"""The hub's HTTP server: health and readiness, Prometheus metrics, the ops API and dashboard, and
the partner endpoints that connectors mount.

``/health`` (alive), ``/ready`` (database, broker and consumers) and ``/metrics`` are open, as probes
and scrapers expect; they carry no personal data. Everything under ``/ops`` needs
``Authorization: Bearer <GASHUB_OPS__TOKEN>``. Errors are ``application/problem+json``.

An API process (``gashub api``) serves its own ``/metrics``: its requests by method, route template and
status (``hub.metrics.ApiMetrics``), for the whole group of processes when there are several.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware
from sqlalchemy import text

from hub import __version__
from hub.logs import bind
from hub.metrics import UNMATCHED, ApiMetrics, multiprocess_dir
from hub.roles import Role

if TYPE_CHECKING:
    from hub.app import Hub

log = logging.getLogger(__name__)

HUB: web.AppKey[Hub] = web.AppKey("hub")
MAX_BODY: web.AppKey[int] = web.AppKey("max_body", int)
API_METRICS: web.AppKey[ApiMetrics] = web.AppKey("api_metrics", ApiMetrics)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, default=str), status=status, content_type="application/json")


def problem(status: int, title: str, detail: str = "", **extra: Any) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return web.Response(body=orjson.dumps(body, default=str), status=status,
                        content_type="application/problem+json")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    with bind(http_path=request.path, http_method=request.method):
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return problem(413, "Body too large", f"The body is over the limit of {request.app[MAX_BODY]:,} bytes.")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return problem(exc.status, exc.reason, exc.text or "")
        except Exception:
            log.exception("http.unhandled_error")
            return problem(500, "Internal error", "The error was logged; the request had no effect.")


def request_metrics_middleware(metrics: ApiMetrics) -> Middleware:
    """Counts and times every request, outermost, so that it sees the status the client gets (after
    ``errors_middleware`` has turned exceptions into problem responses). Labels: the matched route's
    template, never the path; ``unmatched`` when no route matched."""
    clock = time.perf_counter
    observe = metrics.observe

    @web.middleware
    async def request_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = clock()
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # redirects and anything an inner middleware lets through
            resource = request.match_info.route.resource
            observe(request.method, UNMATCHED if resource is None else resource.canonical, exc.status,
                    clock() - start)
            raise
        resource = request.match_info.route.resource
        observe(request.method, UNMATCHED if resource is None else resource.canonical, response.status,
                clock() - start)
        return response

    return request_metrics


@web.middleware
async def ops_auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # The dashboard page itself (/ops, /ops/static/…) holds no data; everything else under /ops does.
    if not request.path.startswith("/ops/") or request.path.startswith("/ops/static/"):
        return await handler(request)
    token = request.app[HUB].settings.ops.token
    if token is None:
        return problem(503, "Ops API disabled", "Set GASHUB_OPS__TOKEN to a long random string and restart.")
    given = request.headers.get("Authorization", "")
    expected = f"Bearer {token.get_secret_value()}"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        response = problem(401, "Unauthorized", "Send 'Authorization: Bearer <ops token>' (GASHUB_OPS__TOKEN).")
        response.headers["WWW-Authenticate"] = 'Bearer realm="gashub ops"'
        return response
    return await handler(request)


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "version": __version__})


async def ready(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    problems = []
    try:
        async with hub.db.read() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        problems.append(f"database: {type(exc).__name__}")
    for lane, transport in hub.transports.items() if hub.role is not Role.API else ():
        if not transport.healthy():
            problems.append(f"broker ({lane} lane): not connected")
    if hub.role is Role.API:  # an API process has no broker connection and no consumers
        return _readiness(problems, {"status": "ready", "role": "api"})
    stopped = [name for name, rt in hub.runtimes.items() if not rt.running and hub.consumes_here(rt)]
    if stopped:
        problems.append(f"routes without a consumer: {', '.join(stopped)}")
    return _readiness(problems, {"status": "ready", "routes": len(hub.runtimes)})


def _readiness(problems: list[str], ok: dict[str, Any]) -> web.Response:
    if problems:
        return json_response({"status": "not ready", "problems": problems}, status=503)
    return json_response(ok)


async def metrics(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    for rt in hub.runtimes.values():
        try:
            info = await rt.transport.queue_info(rt.route.queues.main)
            hub.metrics.queue_depth.labels(rt.route.queues.main).set(info.messages)
        except Exception:  # noqa: BLE001, S112 - a scrape must not fail for one queue
            continue
    return web.Response(body=hub.metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})


def api_metrics_handler(metrics: ApiMetrics) -> Handler:
    """``GET /metrics`` of an API process: the API's request metrics (of every process of the group)."""

    async def api_metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    return api_metrics


def _core_api(hub: Hub) -> web.Application:
    """The core's REST API on the hub's database (created at start-up, hence the callables)."""
    from core.api import build_api

    return build_api(lambda: hub.db.engine, privacy=hub.privacy, payments=hub.settings.core.payments,
                     work_orders=hub.settings.core.work_orders, reads_engine=lambda: hub.db.reads_engine)


def build_api_web_app(hub: Hub) -> web.Application:
    """The application of an API process (``gashub api``): ``/health``, ``/ready``, ``/metrics`` and
    ``/api/v1`` only; the ops API, the dashboard and the partner endpoints stay with ``gashub run``.

    ``/metrics`` holds the API's request metrics; in a group of processes (``PROMETHEUS_MULTIPROC_DIR``
    set by ``gashub api --processes N``) those of the whole group."""
    metrics = ApiMetrics(multiprocess_dir())
    app = web.Application(client_max_size=hub.settings.http.max_body_bytes,
                          middlewares=[request_metrics_middleware(metrics), errors_middleware])
    app[HUB] = hub
    app[MAX_BODY] = hub.settings.http.max_body_bytes
    app[API_METRICS] = metrics
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", api_metrics_handler(metrics))
    app.add_subapp("/api/v1", _core_api(hub))
    return app


def build_web_app(hub: Hub) -> web.Application:
    from hub.ops.api import ops_routes

    max_body = hub.settings.http.max_body_bytes
    app = web.Application(client_max_size=max_body, middlewares=[errors_middleware, ops_auth_middleware])
    app[HUB] = hub
    app[MAX_BODY] = max_body
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_routes(ops_routes())
    app.router.add_routes(hub.context.http_routes)
    app.add_subapp("/api/v1", _core_api(hub))
    return app
