"""``build_api``: the /api/v1 aiohttp sub-application. Independent of the hub: give it an engine."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import core.db.tables_api  # noqa: F401  (registers the API tables on the core metadata)
from core.accounts import Privacy
from core.api.accounts import PAYMENT_SETTINGS, PRIVACY, TARIFFS, TariffSource, account_endpoints
from core.api.framework import API, ApiContext, audit_middleware, errors_middleware
from core.api.handlers import endpoints
from core.api.openapi import build_openapi
from core.api.problems import json_response
from core.api.satisfaction import announcement_endpoints
from core.api.users import AuthPolicy, Clock, utc_now
from core.api.workorders import WORK_ORDERS
from core.billing import TariffBook
from core.payments import PaymentSettings
from core.tariffs import TariffShelf
from core.workorders import WorkOrderSettings

PREFIX = "/api/v1"


def build_api(engine: AsyncEngine | Callable[[], AsyncEngine], *, clock: Clock = utc_now,
              policy: AuthPolicy | None = None, client_max_size: int = 64 * 1024,
              privacy: Privacy | None = None,
              tariffs: TariffBook | TariffSource | None = None,
              payments: PaymentSettings | None = None,
              work_orders: WorkOrderSettings | None = None,
              reads_engine: AsyncEngine | Callable[[], AsyncEngine] | None = None) -> web.Application:
    """The API application, to mount with ``parent.add_subapp("/api/v1", build_api(engine))``.

    ``engine`` may be a callable returning the engine, for hosts that create it at start-up.
    Every endpoint but login and the OpenAPI document needs a bearer token whose role the
    permission matrix allows; a route without a permission is refused at build time.

    ``privacy`` (field cipher + blind index, ``core.accounts.Privacy``) serves the /accounts routes.
    Without it those routes still exist but answer 503 (after authorisation), and the OpenAPI document
    leaves them out, since this instance cannot serve them.

    ``tariffs`` (a fixed tariff book, or an async callable giving the book on a connection) prices the
    final bills of close and transfer; by default the book stored in the database (``core.tariffs``,
    reloaded only when a version was added). With no version stored those two answer 503. ``payments``
    is the invoice policy for the credit and payments they settle with (default ``PaymentSettings()``).

    ``work_orders`` (categories and calendar) sets the deadline of an order reopened through the API;
    the defaults when ``None``.

    ``reads_engine`` (or a callable giving it) serves the one-statement page reads such as the account
    overview (``Database.reads_engine``: connections that keep generic plans); ``engine`` by default.
    """
    app = web.Application(middlewares=[errors_middleware, audit_middleware], client_max_size=client_max_size)
    app[API] = ApiContext(engine_source=engine, clock=clock, policy=policy or AuthPolicy(), reads_source=reads_engine)
    app[PRIVACY] = privacy
    app[TARIFFS] = _tariff_source(tariffs)
    app[PAYMENT_SETTINGS] = payments or PaymentSettings()
    if work_orders is not None:
        app[WORK_ORDERS] = work_orders
    eps = endpoints()
    accounts = account_endpoints() + announcement_endpoints()
    for ep in eps + accounts:
        permission = getattr(ep.handler, "__api_permission__", None)
        if ep.public != (permission is None) or (permission and permission != (ep.resource, ep.action)):
            raise RuntimeError(f"{ep.method} {ep.path}: the handler's require() does not match the route table")
        app.router.add_route(ep.method, ep.path, ep.handler)
    document = build_openapi(eps + accounts if privacy is not None else eps, prefix=PREFIX)

    async def openapi(request: web.Request) -> web.StreamResponse:
        return json_response(document)

    app.router.add_get("/openapi.json", openapi)
    return app


def _tariff_source(tariffs: TariffBook | TariffSource | None) -> TariffSource:
    if tariffs is None:
        return TariffShelf().book
    if isinstance(tariffs, TariffBook):
        book = tariffs

        async def fixed(conn: AsyncConnection) -> TariffBook:
            return book

        return fixed
    return tariffs
