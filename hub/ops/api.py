"""The ops API: find messages, trace a flow, list and replay dead letters, watch routes.

Read-only except one write, the replay, which is audited with who asked and from where.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from core import outbox
from core.catalogue import Lane
from core.payments.invoices import waiting_requests
from core.reconciliation import queries as reconciliation
from hub.ops import queries
from hub.ops.replay import ReplayRefused, ReplayRequest, replay
from hub.store import deadletters
from hub.web import HUB, json_response, problem

STATIC = Path(__file__).parent / "static"


def _int(request: web.Request, name: str, default: int, lo: int = 1, hi: int = 1000) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise web.HTTPBadRequest(text=f"{name} must be between {lo} and {hi}")
    return value


def _time_us(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise web.HTTPBadRequest(
            text=f"{name} must be an ISO 8601 time with its offset, such as 2026-11-27T08:00:00+08:00; got {raw!r}")
    return int(moment.timestamp() * 1_000_000)


async def list_messages(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    limit = _int(request, "limit", 50)
    async with hub.db.read() as conn:
        rows = await queries.search_messages(
            conn, type_=request.query.get("type") or None, correlation_id=request.query.get("correlation_id") or None,
            since_us=_time_us(request, "since"), until_us=_time_us(request, "until"), limit=limit,
            before_id=request.query.get("before") or None)
    next_cursor = rows[-1]["id"] if len(rows) == limit else None
    return json_response({"items": rows, "next": next_cursor})


async def message_trace(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    async with hub.db.read() as conn:
        found = await queries.trace(conn, request.match_info["id"], hub.catalogue, hub.db.sealer)
    if found is None:
        return problem(404, "Unknown message", f"No message or hop has id {request.match_info['id']}.")
    return json_response(found)


async def list_dead_letters(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    limit = _int(request, "limit", 50)
    async with hub.db.read() as conn:
        rows = await deadletters.search(conn, route=request.query.get("route") or None,
                                        status=request.query.get("status") or None, limit=limit,
                                        before_id=request.query.get("before") or None)
    items = [
        {k: v for k, v in r.items() if k != "body"}
        | {"body": queries.masked_body(hub.db.sealer.readable("hub_dead_letter", r["id"], r["body"]),
                                       r["type"] or "", 1, hub.catalogue)}
        for r in rows
    ]
    return json_response({"items": items, "next": items[-1]["id"] if len(items) == limit else None})


async def replay_dead_letter(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    body: dict[str, Any] = {}
    if request.can_read_body:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return problem(400, "Bad request", 'The body must be JSON, e.g. {"mapping_version": 2, "dry_run": true}.')
        if not isinstance(body, dict):
            return problem(400, "Bad request", "The body must be a JSON object.")
    unknown = set(body) - {"mapping_version", "dry_run"}
    if unknown:
        return problem(400, "Bad request", f"Unknown fields {sorted(unknown)}; allowed: mapping_version, dry_run.")
    version = body.get("mapping_version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        return problem(400, "Bad request", "mapping_version must be a whole number.")
    dry_run = request.query.get("dry_run") in ("1", "true") or bool(body.get("dry_run", False))
    req = ReplayRequest(request.match_info["id"], version, dry_run, actor="ops-token", remote=request.remote or "")
    try:
        result = await replay(req, db=hub.db, routes={n: rt.route for n, rt in hub.runtimes.items()},
                              transport=hub.transports[Lane.NORMAL], mappings=hub.mappings,
                              exchange=hub.settings.exchange)
    except ReplayRefused as exc:
        return problem(exc.status, "Cannot replay", str(exc))
    return json_response(result, status=200 if dry_run else 202)


async def list_routes(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    async with hub.db.read() as conn:
        open_dead = await deadletters.count_open(conn)
        pending = await outbox.pending_count(conn)
        invoices_waiting, oldest_invoice = await waiting_requests(conn)
    out = []
    for name, rt in hub.runtimes.items():
        try:
            info = await rt.transport.queue_info(rt.route.queues.main)
            depth, consumers = info.messages, info.consumers
        except Exception:  # noqa: BLE001 - show the route even when the broker cannot answer
            depth, consumers = None, None
        delayed = await _delayed(rt)
        counts = {
            s.labels["outcome"]: s.value
            for metric in hub.metrics.messages.collect() for s in metric.samples
            if s.name.endswith("_total") and s.labels.get("route") == name
        }
        breaker = hub.breakers.get(rt.route.spec.target_name) if rt.route.core_handler is None else None
        out.append({
            "name": name, "from": rt.route.spec.from_, "to": rt.route.spec.to, "lane": str(rt.route.lane),
            "mapping": rt.route.mapping_label or None, "queue": rt.route.queues.main, "depth": depth,
            "consumers": consumers, "delayed": delayed, "in_hand": rt.pipeline.in_hand,
            "running_here": rt.running, "settled": counts,
            "rate_per_s": round(hub.metrics.rates.rate(name), 1), "dead_letters_open": open_dead.get(name, 0),
            "last_error": rt.pipeline.last_error,
            "breaker": None if breaker is None else {
                "state": str(breaker.state), "opened": breaker.opened_count,
                "retry_in_s": round(breaker.seconds_until_trial(), 1)},
            "retry": {"max_attempts": rt.route.spec.retry.max_attempts,
                      "backoff_ms": list(rt.route.spec.retry.backoff)},
        })
    invoices = {"waiting": invoices_waiting, "oldest_requested_at": _iso(oldest_invoice)}
    return json_response({"routes": out, "outbox_pending": pending, "invoice_requests": invoices,
                          "jobs": hub.scheduler.jobs()})


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


async def _delayed(rt: Any) -> int | None:
    """Messages waiting in the route's delay queues for their next attempt (a partner down: the
    backlog is here and in the consumers' hands, not in the main queue)."""
    total = 0
    try:
        for ms in rt.route.spec.retry.delays():
            total += (await rt.transport.queue_info(rt.route.queues.delay(ms))).messages
    except Exception:  # noqa: BLE001 - show the route even when the broker cannot answer
        return None
    return total


async def list_reconciliation(request: web.Request) -> web.Response:
    """Per payment channel, its latest statement run with the open discrepancies (``items`` of them)."""
    hub = request.app[HUB]
    items = _int(request, "items", 20, hi=200)
    async with hub.db.read() as conn:
        channels = await reconciliation.latest_per_channel(conn, items=items)
    return json_response({"channels": channels})


async def dashboard(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "dashboard.html")


def ops_routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/ops", dashboard),
        web.static("/ops/static", STATIC),
        web.get("/ops/messages", list_messages),
        web.get("/ops/messages/{id}/trace", message_trace),
        web.get("/ops/dead-letters", list_dead_letters),
        web.post("/ops/dead-letters/{id}/replay", replay_dead_letter),
        web.get("/ops/routes", list_routes),
        web.get("/ops/reconciliation", list_reconciliation),
    ]
