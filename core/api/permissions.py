"""Roles and the permission matrix (requirement A5), as data.

``MATRIX`` lists, per role, what it may do; anything not listed is denied. ``docs/permissions.md``
renders it (``render_markdown``) and a test keeps the two equal.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    CUSTOMER_SERVICE = "customer_service"
    DISPATCHER = "dispatcher"
    FIELD_ENGINEER = "field_engineer"
    AUDITOR = "auditor"
    GOVERNMENT = "government"


class Resource(StrEnum):
    READINGS = "readings"
    ALARMS = "alarms"
    SUMMARIES = "summaries"
    AUDIT = "audit"
    PROFILE = "profile"
    SESSION = "session"
    ACCOUNTS = "accounts"
    PERSONAL_DATA = "personal_data"
    """Reading personal fields in clear (``?reveal=true`` on the account and invoice reads); always audited."""
    BILLS = "bills"
    PAYMENTS = "payments"
    INVOICES = "invoices"
    METERS = "meters"
    """The meters as assets: model, account, install and replace-by dates, valve state, last reading."""
    VALVES = "valves"
    """A meter's valve: why it is closed (read); reopening it after an on-site check (write)."""
    TARIFFS = "tariffs"
    """The tariff book's versions (read); adding a version from a date still to come (write)."""
    READING_EXCEPTIONS = "reading_exceptions"
    """The readings exceptions list (read); resolving an exception: accepting, correcting or estimating
    a held reading (write)."""
    WORK_ORDERS = "work_orders"
    """Work orders with their SLA deadlines and history (read); moving one through the loop (write)."""
    RECONCILIATION = "reconciliation"
    """The payment channels' statement runs and their discrepancies (read); resolving a discrepancy with a
    note (write)."""
    MAP = "map"
    """Alarms and meters drawn as GeoJSON from the premises' coordinates, without personal data; roles that
    may not read meters get coarse points (about 1 km) without meter or alarm ids."""


class Action(StrEnum):
    READ = "read"
    WRITE = "write"


_R, _W = Action.READ, Action.WRITE
_OWN = {Resource.PROFILE: {_R}, Resource.SESSION: {_W}}  # every role: see itself, end its own session
_MONEY = {Resource.BILLS: {_R}, Resource.PAYMENTS: {_R}, Resource.INVOICES: {_R}}
"""Bills, payments and invoices are read by the roles that answer customers or check the books; they are
written only by the core's handlers (billing runs, payment and tax messages), never through the API."""

MATRIX: dict[Role, dict[Resource, frozenset[Action]]] = {
    role: {res: frozenset(acts) for res, acts in grants.items()}
    for role, grants in {
        Role.ADMIN: {
            Resource.READINGS: {_R}, Resource.ALARMS: {_R, _W}, Resource.SUMMARIES: {_R},
            Resource.AUDIT: {_R}, Resource.ACCOUNTS: {_R, _W}, Resource.PERSONAL_DATA: {_R}, **_MONEY,
            Resource.VALVES: {_R, _W}, Resource.METERS: {_R}, Resource.TARIFFS: {_R, _W},
            Resource.READING_EXCEPTIONS: {_R, _W}, Resource.WORK_ORDERS: {_R, _W}, Resource.MAP: {_R},
            Resource.RECONCILIATION: {_R, _W}, **_OWN,
        },
        Role.CUSTOMER_SERVICE: {
            Resource.READINGS: {_R}, Resource.ALARMS: {_R}, Resource.SUMMARIES: {_R},
            Resource.ACCOUNTS: {_R, _W}, Resource.PERSONAL_DATA: {_R}, **_MONEY, Resource.VALVES: {_R},
            Resource.METERS: {_R}, Resource.TARIFFS: {_R}, Resource.READING_EXCEPTIONS: {_R},
            Resource.WORK_ORDERS: {_R}, Resource.MAP: {_R}, Resource.RECONCILIATION: {_R}, **_OWN,
        },
        Role.DISPATCHER: {
            Resource.READINGS: {_R}, Resource.ALARMS: {_R, _W}, Resource.SUMMARIES: {_R}, Resource.ACCOUNTS: {_R},
            Resource.VALVES: {_R}, Resource.METERS: {_R}, Resource.READING_EXCEPTIONS: {_R, _W},
            Resource.WORK_ORDERS: {_R, _W}, Resource.MAP: {_R}, **_OWN,
        },
        Role.FIELD_ENGINEER: {
            Resource.READINGS: {_R}, Resource.ALARMS: {_R, _W}, Resource.VALVES: {_R, _W}, Resource.METERS: {_R},
            Resource.READING_EXCEPTIONS: {_R, _W}, Resource.WORK_ORDERS: {_R, _W}, Resource.MAP: {_R}, **_OWN,
        },
        Role.AUDITOR: {
            Resource.READINGS: {_R}, Resource.ALARMS: {_R}, Resource.SUMMARIES: {_R}, Resource.AUDIT: {_R},
            Resource.ACCOUNTS: {_R}, **_MONEY, Resource.VALVES: {_R}, Resource.METERS: {_R}, Resource.TARIFFS: {_R},
            Resource.READING_EXCEPTIONS: {_R}, Resource.WORK_ORDERS: {_R}, Resource.MAP: {_R},
            Resource.RECONCILIATION: {_R}, **_OWN,
        },
        Role.GOVERNMENT: {Resource.SUMMARIES: {_R}, Resource.MAP: {_R}, **_OWN},
    }.items()
}
"""Role → resource → allowed actions. The auditor is read-only (audit included); the government
role sees summaries and the map only, which carry no personal data (its map points are coarse and carry no
meter or alarm ids). Accounts are read masked by every role that
may read them; only ``personal_data`` read (admin, customer service) may ask for ``?reveal=true``.
Bills, payments and invoices: admin, customer service and the auditor read them; invoice user names
are masked like account holders'. Valves: the roles that deal with meters read why one is closed; only
the field engineer (after an on-site check) and the administrator reopen one. Tariffs: the roles that
answer customers or check the books read the versions; only the administrator adds one. Reading exceptions:
every role that reads readings reads the list (customer service, to explain an estimated or held
bill); the dispatcher, who works the operations queue as with alarms, and the field engineer, whose
on-site read or inspection settles a doubtful reading, resolve them (with the administrator). Work orders:
the dispatcher and the field engineer (and the administrator) move them through the loop; customer
service and the auditor read them. Reconciliation: the roles that read payments read the statement runs and
their discrepancies (customer service, to answer "I paid but …"); only the administrator resolves one."""


def allowed(role: Role, resource: Resource, action: Action) -> bool:
    return action in MATRIX.get(role, {}).get(resource, frozenset())


def roles_for(resource: Resource, action: Action) -> list[Role]:
    return [role for role in Role if allowed(role, resource, action)]


def render_markdown() -> str:
    """The matrix as a Markdown table: one row per (resource, action), one column per role."""
    lines = [
        "| resource | action | " + " | ".join(r.value for r in Role) + " |",
        "|---|---|" + "---|" * len(Role),
    ]
    for resource in Resource:
        for action in Action:
            cells = ["yes" if allowed(role, resource, action) else "no" for role in Role]
            lines.append(f"| {resource.value} | {action.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_markdown(text: str) -> dict[tuple[Role, Resource, Action], bool]:
    """The first permission table found in ``text``, read back into (role, resource, action) → allowed."""
    rows = [line.strip() for line in text.splitlines() if line.strip().startswith("| ")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    roles = [Role(c) for c in header[2:]]
    result: dict[tuple[Role, Resource, Action], bool] = {}
    for line in rows[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if set(cells[0]) <= {"-"}:
            continue
        resource, action = Resource(cells[0]), Action(cells[1])
        for role, cell in zip(roles, cells[2:], strict=True):
            result[(role, resource, action)] = cell == "yes"
    return result
