"""The account endpoints of /api/v1 (requirements U1, U2, A3, A5): open, transfer, close, household, look up,
overview.

Personal fields are masked for every caller. Roles that may read ``personal_data`` (admin, customer
service) get them in clear with ``?reveal=true`` on the reads; every reveal request — granted, denied
or failed — is written to the API audit log with ``detail="reveal"``. Write responses are always
masked (they are what the idempotency store keeps). Errors:

* 400 — a malformed body or query (pydantic), naming the parameter;
* 404 — no such account;
* 409 — the client request id was already used for different content (``Conflict``), or a ``settle``
  transfer while money is owed (``owed`` in the problem says how much);
* 422 — a well-formed request the domain refuses (``DomainRejected``: bad ID check digit, closed
  account, transfer before the current holder's period…);
* 503 — the API was built without the personal-data keys (``build_api(..., privacy=None)``), or, for
  close and transfer, when no tariff version is stored (the book in ``core_tariff_version``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.accounts import (
    ACCOUNT_READS,
    AccountView,
    ArrearsPolicy,
    Billing,
    Category,
    CustomerIn,
    HolderPeriod,
    PremisesIn,
    Privacy,
    StatusChange,
    Subcategory,
    account_view,
    find_by_id_number,
    find_by_phone,
    get_account,
    open_account,
    set_household,
)
from core.api.framework import (
    API,
    AUDIT_DETAIL,
    Endpoint,
    parse_body,
    parse_query,
    principal_of,
    require,
)
from core.api.models import Alarm, Reading, RevealQuery
from core.api.permissions import Action, Resource, Role, allowed
from core.api.problems import ProblemError, json_response
from core.api.reveal import read_revealable as _read
from core.api.workorders import order_settings
from core.billing import Household, TariffBook, UpliftApproval
from core.db.combined import Read, Reads, Rows
from core.db.tables import alarm, reading
from core.db.tables_accounts import account, premises
from core.db.tables_accounts import request as request_table
from core.db.tables_billing import bill, meter
from core.db.tables_payments import allocation, credit, invoice, payment
from core.errors import Conflict, DomainRejected
from core.lifecycle import AccountClosed, AccountTransferred, ArrearsOutstanding, close_account, transfer_account
from core.payments import PaymentSettings

PRIVACY: web.AppKey[Privacy | None] = web.AppKey("gashub_api_privacy")
"""The ``Privacy`` bundle (field cipher + blind index) the account routes need; ``None`` → 503."""
TariffSource = Callable[[AsyncConnection], Awaitable[TariffBook]]
"""Where close and transfer get the tariff book their bills are priced with, read on the request's
connection (by default the database's book, :class:`core.tariffs.TariffShelf`)."""
TARIFFS: web.AppKey[TariffSource] = web.AppKey("gashub_api_tariffs")
PAYMENT_SETTINGS: web.AppKey[PaymentSettings] = web.AppKey("gashub_api_payment_settings", PaymentSettings)
"""The invoice policy for the credit and settlement payments of close and transfer."""

NO_KEYS = (
    "personal-data keys are not configured: set GASHUB_CORE__KEYS__<id> to a base64 32-byte key "
    "(generate one with: python -c \"import secrets,base64;print(base64.b64encode(secrets.token_bytes(32))"
    ".decode())\"), name the current one, and restart"
)
NO_TARIFFS = (
    "no tariff version is stored, and closing or transferring an account bills the use up to then: add the "
    "tariffs (POST /api/v1/tariffs, or gashub tariffs import) and retry"
)
NO_METER = "no meter is installed for this account, so it has no readings or meter alarms"
RECENT = 13
"""Readings and bills the overview shows: a year of monthly ones and the one before."""


# --- request and response models ---------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenAccountBody(_Body):
    client_request_id: str = Field(min_length=1, max_length=64,
                                   description="Chosen by the client; a retry with the same id and content "
                                               "returns the first result.")
    customer: CustomerIn
    premises: PremisesIn
    category: Category
    subcategory: Subcategory | None = None
    billing: Billing


MeterReadings = dict[Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_-]+$")],
                     Annotated[Decimal, Field(ge=0)]]
_METER_READINGS = Field(default=None, min_length=1, max_length=50, description=(
    "For an account with several meters: each meter's register in m³, by meter id (every meter of the "
    "account, instead of the single reading); the bill is made on their sum."))


class TransferBody(_Body):
    client_request_id: str = Field(min_length=1, max_length=64)
    new_customer: CustomerIn
    arrears_policy: ArrearsPolicy = Field(description="settle: the old holder pays what is owed first (refused "
                                                      "with 409 and the amount while anything is owed, unless "
                                                      "settlement_payment covers it); carry: the debt stays on "
                                                      "the account and the new holder's period records it.")
    effective: AwareDatetime
    transfer_reading_m3: Decimal | None = Field(default=None, ge=0, description="The meter register at the "
                                                "transfer: the old holder's use is billed up to it. Needed "
                                                "for settle on a postpaid account with a meter.")
    meter_readings: MeterReadings | None = _METER_READINGS
    settlement_payment: Decimal | None = Field(default=None, gt=0, max_digits=14, decimal_places=2,
                                               description="Yuan paid at the counter to settle (settle only): "
                                                           "exactly what is owed; recorded as a payment with "
                                                           "channel counter and transaction id "
                                                           "client_request_id.")


class CloseBody(_Body):
    client_request_id: str = Field(min_length=1, max_length=64)
    final_reading_m3: Decimal | None = Field(default=None, ge=0, description="The meter register at the close: "
                                             "needed for a postpaid account with a meter (the final bill is "
                                             "made from it), optional for a prepaid one.")
    meter_readings: MeterReadings | None = _METER_READINGS
    at: AwareDatetime


class HouseholdBody(_Body):
    """The account's household from ``effective_from`` on (rule 4: the large-household uplift)."""

    client_request_id: str = Field(min_length=1, max_length=64)
    residents: int = Field(ge=1, le=99, description="People living at the premises.")
    approval: UpliftApproval | None = Field(default=None, description="The approved uplift application "
                                            "(reference, valid_from, valid_until exclusive; null: none, "
                                            "which withdraws an earlier one from effective_from).")
    effective_from: date | None = Field(default=None, description="The first billing day this household "
                                        "counts for; default the approval's valid_from, else today.")


class AccountSearchQuery(RevealQuery):
    phone: str | None = Field(default=None, min_length=1, max_length=40)
    id_number: str | None = Field(default=None, min_length=1, max_length=40)


class AccountList(BaseModel):
    items: list[AccountView]
    count: int


class MeterLink(BaseModel):
    """The meters installed for the account (``core_meter.account_id``); ``linked`` is false, with the
    reason, when it has none."""

    linked: bool
    meters: list[str]
    reason: str | None


class BillSummary(BaseModel):
    """A bill's header: the lines are not part of the overview."""

    bill_id: str
    meter_id: str
    period_start: date
    period_end: date
    category: str
    volume_m3: Decimal
    total: Decimal
    paid: Decimal = Field(description="Allocated to this bill by payments (refunds taken back).")
    outstanding: Decimal
    status: str
    created_at: datetime


class PaymentSummary(BaseModel):
    """A payment's header (``GET /payments/{id}`` has where its money went)."""

    payment_id: str
    channel: str
    amount: Decimal
    paid_at: datetime
    status: str


class InvoiceSummary(BaseModel):
    """An invoice request and, once issued, its number; the user name always masked here."""

    invoice_id: str
    kind: str
    scope: str
    reference_id: str
    status: str
    user_name: str
    invoice_type: str | None
    invoice_number: str | None
    total: Decimal
    issued_at: datetime | None


class AccountOverview(BaseModel):
    """Everything about one account (U2: business progress, gas usage, bills, invoices): the account,
    its holder and status history, its meters with their latest readings (newest first) and open or
    acknowledged alarms, its latest bills (newest period first) with what is paid and outstanding,
    its unspent credit, latest payments and invoices. Longer histories are paged by ``GET /bills``,
    ``/payments`` and ``/invoices`` with ``account_id``."""

    account: AccountView
    holder_history: list[HolderPeriod]
    status_history: list[StatusChange]
    meter_link: MeterLink
    recent_readings: list[Reading]
    open_alarms: list[Alarm]
    recent_bills: list[BillSummary] | None = Field(description="Null for roles that may not read bills.")
    credit: Decimal | None = Field(description="Money paid in and not yet spent on bills (overpayments); null for "
                                               "roles that may not read payments.")
    recent_payments: list[PaymentSummary] | None = Field(description="Null for roles that may not read payments.")
    recent_invoices: list[InvoiceSummary] | None = Field(description="Null for roles that may not read invoices.")


class AccountCount(BaseModel):
    district: str
    category: str
    status: str
    count: int


class AccountSummary(BaseModel):
    """Counts only: no account number, customer or address (safe for the government role)."""

    items: list[AccountCount]


# --- helpers -----------------------------------------------------------------------------------------


def require_privacy(request: web.Request) -> Privacy:
    privacy = request.app.get(PRIVACY)
    if privacy is None:
        raise ProblemError(503, "Personal-data keys missing", NO_KEYS)
    return privacy


async def require_tariffs(request: web.Request, conn: AsyncConnection) -> TariffBook:
    book = await request.app[TARIFFS](conn)
    if not book.versions:
        raise ProblemError(503, "Tariffs missing", NO_TARIFFS)
    return book


def _rejected(exc: DomainRejected) -> ProblemError:
    return ProblemError(422, "Rejected", f"The request is well-formed but was refused: {exc}.")


def _conflict(exc: Conflict) -> ProblemError:
    return ProblemError(409, "Conflict", f"{exc}.")


async def _require_account(conn: AsyncConnection, account_id: str) -> None:
    found = (await conn.execute(select(account.c.id).where(account.c.id == account_id))).first()
    if found is None:
        raise ProblemError(404, "Not found", f"There is no account '{account_id[:40]}'; "
                           "GET /api/v1/accounts?phone=… finds accounts by their holder.")


async def _account_view(conn: AsyncConnection, privacy: Privacy, account_id: str, reveal: bool) -> AccountView:
    """The account's view, or 404 (``get_account`` refuses only an unknown account)."""
    try:
        return await get_account(conn, privacy, account_id, reveal=reveal)
    except DomainRejected:
        raise ProblemError(404, "Not found", f"There is no account '{account_id[:40]}'; "
                           "GET /api/v1/accounts?phone=… finds accounts by their holder.") from None


def _out(view: AccountView) -> dict[str, Any]:
    return view.model_dump(mode="json")


# --- handlers ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _domain_errors(request: web.Request) -> Iterator[None]:
    """The domain's refusals as HTTP problems, noted on the request's audit row."""
    try:
        yield
    except ArrearsOutstanding as exc:
        request[AUDIT_DETAIL] = "arrears outstanding"
        raise ProblemError(409, "Arrears outstanding", f"{exc}.", owed=str(exc.owed)) from None
    except Conflict as exc:
        request[AUDIT_DETAIL] = "conflict"
        raise _conflict(exc) from None
    except DomainRejected as exc:
        request[AUDIT_DETAIL] = "rejected"
        raise _rejected(exc) from None


@require(Resource.ACCOUNTS, Action.WRITE)
async def open_account_route(request: web.Request) -> web.StreamResponse:
    """201 with the (masked) account; the same ``client_request_id`` and content again → 200, same body."""
    privacy = require_privacy(request)
    body = await parse_body(request, OpenAccountBody)
    async with request.app[API].engine.begin() as conn:
        seen = (await conn.execute(select(request_table.c.id).where(
            request_table.c.client_request_id == body.client_request_id.strip()))).first() is not None
        with _domain_errors(request):
            view = await open_account(conn, privacy, body.client_request_id, body.customer, body.premises,
                                      body.category, body.billing, subcategory=body.subcategory)
    request[AUDIT_DETAIL] = f"{'replayed' if seen else 'opened'} account {view.account_id}"
    return json_response(_out(view), status=200 if seen else 201)


@require(Resource.ACCOUNTS, Action.WRITE)
async def transfer_account_route(request: web.Request) -> web.StreamResponse:
    """Transfer of ownership (过户) with the old holder's arrears settled or carried; idempotent by
    ``client_request_id``. A settle transfer while money is owed is a 409 whose ``owed`` is the amount."""
    privacy = require_privacy(request)
    account_id = request.match_info["id"]
    body = await parse_body(request, TransferBody)
    async with request.app[API].engine.begin() as conn:
        await _require_account(conn, account_id)
        book = await require_tariffs(request, conn)
        with _domain_errors(request):
            moved = await transfer_account(conn, privacy, body.client_request_id, account_id, body.new_customer,
                                           body.arrears_policy, body.effective, book=book,
                                           transfer_reading_m3=body.transfer_reading_m3,
                                           settlement_payment=body.settlement_payment,
                                           meter_readings=body.meter_readings,
                                           payment_settings=request.app[PAYMENT_SETTINGS],
                                           work_orders=order_settings(request),
                                           by=principal_of(request).username)
    request[AUDIT_DETAIL] = f"transferred ({body.arrears_policy}: {moved.outcome})"
    return json_response(moved.model_dump(mode="json"))


@require(Resource.ACCOUNTS, Action.WRITE)
async def close_account_route(request: web.Request) -> web.StreamResponse:
    """Close (销户) with the final reading, final bill and settlement; idempotent by ``client_request_id``."""
    privacy = require_privacy(request)
    account_id = request.match_info["id"]
    body = await parse_body(request, CloseBody)
    async with request.app[API].engine.begin() as conn:
        await _require_account(conn, account_id)
        book = await require_tariffs(request, conn)
        with _domain_errors(request):
            closed = await close_account(conn, privacy, body.client_request_id, account_id, body.final_reading_m3,
                                         body.at, book=book, payment_settings=request.app[PAYMENT_SETTINGS],
                                         work_orders=order_settings(request),
                                         by=principal_of(request).username, meter_readings=body.meter_readings)
    request[AUDIT_DETAIL] = "closed"
    return json_response(closed.model_dump(mode="json"))


@require(Resource.ACCOUNTS, Action.WRITE)
async def set_household_route(request: web.Request) -> web.StreamResponse:
    """Record the household and its uplift approval; the (masked) account with it. Idempotent by
    ``client_request_id``: the same id and content again answers the same and records nothing."""
    privacy = require_privacy(request)
    account_id = request.match_info["id"]
    body = await parse_body(request, HouseholdBody)
    async with request.app[API].engine.begin() as conn:
        await _require_account(conn, account_id)
        seen = (await conn.execute(select(request_table.c.id).where(
            request_table.c.client_request_id == body.client_request_id.strip()))).first() is not None
        with _domain_errors(request):
            view = await set_household(conn, privacy, body.client_request_id, account_id,
                                       Household(residents=body.residents, approval=body.approval),
                                       recorded_by=principal_of(request).username,
                                       effective_from=body.effective_from, now=request.app[API].clock())
    approval = "no approval" if body.approval is None else f"approval {body.approval.reference}"
    request[AUDIT_DETAIL] = f"{'replayed' if seen else 'set'} household: {body.residents} residents, {approval}"
    return json_response(_out(view))


@require(Resource.ACCOUNTS, Action.READ)
async def get_account_route(request: web.Request) -> web.StreamResponse:
    privacy = require_privacy(request)
    q = parse_query(request, RevealQuery)
    account_id = request.match_info["id"]

    async def build() -> dict[str, Any]:
        async with request.app[API].engine.connect() as conn:
            return _out(await _account_view(conn, privacy, account_id, q.reveal))

    return await _read(request, q.reveal, build)


@require(Resource.ACCOUNTS, Action.READ)
async def search_accounts(request: web.Request) -> web.StreamResponse:
    """Accounts whose current holder has this phone (any written form) or ID number, via the blind index."""
    privacy = require_privacy(request)
    q = parse_query(request, AccountSearchQuery)
    if (q.phone is None) == (q.id_number is None):
        raise ProblemError(400, "Bad parameter", "Give exactly one of 'phone' or 'id_number'.",
                           parameter="phone" if q.phone is None else "id_number")

    async def build() -> dict[str, Any]:
        async with request.app[API].engine.connect() as conn:
            try:
                if q.phone is not None:
                    views = await find_by_phone(conn, privacy, q.phone, reveal=q.reveal)
                else:
                    views = await find_by_id_number(conn, privacy, q.id_number or "", reveal=q.reveal)
            except DomainRejected as exc:
                name = "phone" if q.phone is not None else "id_number"
                raise ProblemError(400, "Bad parameter", f"The query parameter '{name}' is invalid: {exc}.",
                                   parameter=name) from None
        return AccountList(items=views, count=len(views)).model_dump(mode="json")

    return await _read(request, q.reveal, build)


_METERS = select(meter.c.id).where(meter.c.account_id == bindparam("account_id")).order_by(meter.c.id)
_METERS_OF_ACCOUNT = select(meter.c.id).where(meter.c.account_id == bindparam("account_id")).scalar_subquery()
_READINGS = (
    select(reading.c.id, reading.c.meter_id, reading.c.read_at, reading.c.volume_m3, reading.c.source,
           reading.c.quality)
    .where(reading.c.meter_id.in_(_METERS_OF_ACCOUNT))
    .order_by(reading.c.read_at.desc(), reading.c.id.desc())
    .limit(RECENT)
)
_OPEN_ALARMS = (
    select(alarm)
    .where(alarm.c.meter_id.in_(_METERS_OF_ACCOUNT), alarm.c.status.in_(("open", "acknowledged")))
    .order_by(alarm.c.detected_at.desc(), alarm.c.id)
)
_PAID_ON_BILL = (
    select(func.sum(allocation.c.amount)).where(allocation.c.bill_id == bill.c.id).scalar_subquery()
)
_BILLS = (
    select(bill.c.id.label("bill_id"), bill.c.meter_id, bill.c.period_start, bill.c.period_end, bill.c.category,
           bill.c.volume_m3, bill.c.total, bill.c.status, bill.c.created_at,
           func.coalesce(_PAID_ON_BILL, 0).label("paid"))
    .where(bill.c.account_id == bindparam("account_id"))
    .order_by(bill.c.period_start.desc(), bill.c.period_end.desc())
    .limit(RECENT)
)
_CREDIT = select(func.coalesce(func.sum(credit.c.amount), 0).label("credit")).where(
    credit.c.account_id == bindparam("account_id"))
_PAYMENTS = (
    select(payment.c.id.label("payment_id"), payment.c.channel, payment.c.amount, payment.c.paid_at, payment.c.status)
    .where(payment.c.account_id == bindparam("account_id"))
    .order_by(payment.c.paid_at.desc(), payment.c.id.desc())
    .limit(RECENT)
)
_INVOICES = (
    select(invoice.c.id.label("invoice_id"), invoice.c.kind, invoice.c.scope, invoice.c.reference_id,
           invoice.c.status, invoice.c.user_name_masked.label("user_name"), invoice.c.invoice_type,
           invoice.c.invoice_number, invoice.c.total, invoice.c.issued_at)
    .where(invoice.c.account_id == bindparam("account_id"))
    .order_by(invoice.c.id.desc())
    .limit(RECENT)
)
OVERVIEW_READS = Reads(
    *ACCOUNT_READS,
    Read("meters", _METERS),
    Read("readings", _READINGS),
    Read("alarms", _OPEN_ALARMS),
    Read("bills", _BILLS),
    Read("credit", _CREDIT),
    Read("payments", _PAYMENTS),
    Read("invoices", _INVOICES),
)
"""The overview's reads, each by ``:account_id`` and on an index (meters by account, readings by meter
and time, alarms by meter, bills, payments, credit and invoices by account, allocations by bill): on
PostgreSQL one statement, one round trip (``core.db.combined``), so that the server's cost per overview
is one query and the decryption, not a dozen round trips."""
_MONEY_READS = {"bills": Resource.BILLS, "credit": Resource.PAYMENTS, "payments": Resource.PAYMENTS,
                "invoices": Resource.INVOICES}
CENT = Decimal("0.01")


def _overview(privacy: Privacy, rows: dict[str, Rows], role: Role, reveal: bool) -> AccountOverview:
    """The overview built from ``OVERVIEW_READS``' rows; parts the role may not read are null."""
    view = account_view(privacy, rows, reveal=reveal)
    meters = [m["id"] for m in rows["meters"]]
    link = (MeterLink(linked=True, meters=meters, reason=None) if meters
            else MeterLink(linked=False, meters=[], reason=NO_METER))
    bills = None
    if "bills" in rows:
        bills = [BillSummary.model_validate(b | {"paid": (paid := Decimal(b["paid"]).quantize(CENT)),
                                                 "outstanding": b["total"] - paid})
                 for b in rows["bills"]]
    return AccountOverview(
        account=view, holder_history=list(view.holders), status_history=list(view.status_history),
        meter_link=link,
        recent_readings=[Reading.model_validate(r) for r in rows["readings"]],
        open_alarms=[Alarm.model_validate(a) for a in rows["alarms"]],
        recent_bills=bills,
        credit=Decimal(rows["credit"][0]["credit"]).quantize(CENT) if "credit" in rows else None,
        recent_payments=[PaymentSummary.model_validate(p) for p in rows["payments"]] if "payments" in rows else None,
        recent_invoices=[InvoiceSummary.model_validate(i) for i in rows["invoices"]] if "invoices" in rows else None,
    )


@require(Resource.ACCOUNTS, Action.READ)
async def account_overview(request: web.Request) -> web.StreamResponse:
    """Everything about one account (U2), in one read (one round trip on PostgreSQL)."""
    privacy = require_privacy(request)
    q = parse_query(request, RevealQuery)
    account_id = request.match_info["id"]
    role = principal_of(request).role
    names = [n for n in OVERVIEW_READS.names
             if n not in _MONEY_READS or allowed(role, _MONEY_READS[n], Action.READ)]

    async def build() -> AccountOverview:
        async with request.app[API].reads_engine.connect() as conn:
            rows = await OVERVIEW_READS.fetch(conn, {"account_id": account_id}, only=names)
        if not rows["account"]:
            raise ProblemError(404, "Not found", f"There is no account '{account_id[:40]}'; "
                               "GET /api/v1/accounts?phone=… finds accounts by their holder.")
        return _overview(privacy, rows, role, q.reveal)

    return await _read(request, q.reveal, build)


@require(Resource.SUMMARIES, Action.READ)
async def account_summary(request: web.Request) -> web.StreamResponse:
    """Account counts by district, category and status: no personal data, needs no keys."""
    stmt = (select(premises.c.district, account.c.category, account.c.status, func.count().label("count"))
            .join(premises, premises.c.id == account.c.premises_id)
            .group_by(premises.c.district, account.c.category, account.c.status)
            .order_by(premises.c.district, account.c.category, account.c.status))
    async with request.app[API].engine.connect() as conn:
        rows = [dict(r) for r in (await conn.execute(stmt)).mappings()]
    return json_response(AccountSummary.model_validate({"items": rows}).model_dump(mode="json"))


def account_endpoints() -> list[Endpoint]:
    """The routes that need the personal-data keys (relative to /api/v1)."""
    rd, wr = Action.READ, Action.WRITE
    acc = Resource.ACCOUNTS
    write_errors = (400, 401, 403, 404, 409, 422, 503)
    from core.api.assets import customer_endpoints

    return [*customer_endpoints(),
        Endpoint("POST", "/accounts", open_account_route,
                 "Open an account (开户); 201, or 200 when the client_request_id is replayed", AccountView, acc, wr,
                 body=OpenAccountBody, errors=(400, 401, 403, 409, 422, 503)),
        Endpoint("GET", "/accounts", search_accounts,
                 "Find accounts by the current holder's phone or ID number (masked unless reveal)", AccountList,
                 acc, rd, query=AccountSearchQuery, errors=(400, 401, 403, 503)),
        Endpoint("GET", "/accounts/{id}", get_account_route, "One account (masked unless reveal)", AccountView,
                 acc, rd, query=RevealQuery, path_params=("id",), errors=(400, 401, 403, 404, 503)),
        Endpoint("GET", "/accounts/{id}/overview", account_overview,
                 "Everything about one account: holders, statuses, meters, recent readings, open alarms, recent "
                 "bills with what is paid, credit, recent payments and invoices", AccountOverview,
                 acc, rd, query=RevealQuery, path_params=("id",), errors=(400, 401, 403, 404, 503)),
        Endpoint("PUT", "/accounts/{id}/household", set_household_route,
                 "Record the household (residents) and its large-household uplift approval from effective_from: "
                 "the monthly run, off-cycle bills and prepaid charging raise the tier thresholds on the days "
                 "the approval covers; idempotent by client_request_id", AccountView, acc, wr,
                 body=HouseholdBody, path_params=("id",), errors=(400, 401, 403, 404, 409, 422, 503)),
        Endpoint("POST", "/accounts/{id}/transfer", transfer_account_route,
                 "Transfer ownership (过户): bill the old holder up to the transfer reading, then settle the arrears "
                 "(409 with the amount while owed, unless a settlement payment covers it) or carry them; "
                 "idempotent by client_request_id", AccountTransferred, acc, wr,
                 body=TransferBody, path_params=("id",), errors=write_errors),
        Endpoint("POST", "/accounts/{id}/close", close_account_route,
                 "Close an account (销户): final reading, final bill, credit applied; says what is still owed or "
                 "due back; idempotent by client_request_id", AccountClosed,
                 acc, wr, body=CloseBody, path_params=("id",), errors=write_errors),
    ]


__all__ = [
    "PRIVACY",
    "AccountList",
    "AccountOverview",
    "AccountSummary",
    "BillSummary",
    "HouseholdBody",
    "account_endpoints",
    "account_summary",
]
