"""Idempotent writes by client request id (table ``core_request``).

A write first *claims* its request id with ``INSERT … ON CONFLICT DO NOTHING``. When the id is new the
write goes ahead and ``finish`` stores its (masked) result in the same transaction. When the id is
already there — a retry, or a concurrent twin that PostgreSQL made wait on the unique index until it
committed — the stored result is returned instead, provided the request is the same: same operation
and same content, compared through a keyed fingerprint (an HMAC, so personal data never lies in the
table in a guessable form). Different content under a used id is a ``Conflict``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from core.accounts.models import AccountView, Privacy
from core.db.tables_accounts import request
from core.errors import Conflict, DomainRejected

V = TypeVar("V", bound=AccountView)

_FINGERPRINT_LABEL = b"gashub/request-fingerprint/v1"
MAX_REQUEST_ID = 64


def fingerprint(privacy: Privacy, operation: str, payload: dict[str, Any], key_id: str | None = None) -> str:
    """``<key_id>:<hex>``: HMAC-SHA256 of the operation and its canonical JSON payload."""
    ring = privacy.index.ring
    kid = ring.current if key_id is None else key_id
    key = ring.subkey(kid, _FINGERPRINT_LABEL)
    body = json.dumps({"op": operation, "payload": payload}, sort_keys=True, default=str, ensure_ascii=False)
    return f"{kid}:{hmac.new(key, body.encode('utf-8'), hashlib.sha256).hexdigest()[:64]}"


def check_request_id(request_id: str) -> str:
    rid = request_id.strip() if isinstance(request_id, str) else ""
    if not rid or len(rid) > MAX_REQUEST_ID:
        raise DomainRejected(f"the client request id must be 1-{MAX_REQUEST_ID} characters")
    return rid


async def claim(
    conn: AsyncConnection, privacy: Privacy, request_id: str, operation: str, payload: dict[str, Any],
    result: type[V],
) -> V | None:
    """``None`` when ``request_id`` is new (now claimed); the stored result (a ``result``) when it is a
    repeat."""
    values = {
        "id": str(ULID()),
        "client_request_id": request_id,
        "operation": operation,
        "fingerprint": fingerprint(privacy, operation, payload),
        "created_at": datetime.now(UTC),
    }
    dialect = conn.dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(request).values(values).on_conflict_do_nothing(index_elements=["client_request_id"])
        inserted = (await conn.execute(pg.returning(request.c.id))).first()
    elif dialect == "sqlite":
        lite = sqlite.insert(request).values(values).on_conflict_do_nothing(index_elements=["client_request_id"])
        inserted = (await conn.execute(lite.returning(request.c.id))).first()
    else:  # pragma: no cover - only the two supported databases
        raise NotImplementedError(f"idempotent requests are not implemented for {dialect}")
    if inserted is not None:
        return None
    row = (
        await conn.execute(
            select(request.c.operation, request.c.fingerprint, request.c.result).where(
                request.c.client_request_id == request_id
            )
        )
    ).one()
    kid = row.fingerprint.partition(":")[0]
    same = (
        row.operation == operation
        and kid in privacy.index.ring
        and hmac.compare_digest(row.fingerprint, fingerprint(privacy, operation, payload, key_id=kid))
    )
    if not same:
        raise Conflict(
            f"client request id {request_id!r} was already used for a different {row.operation} request; "
            "use a new request id for a new request"
        )
    if row.result is None:
        raise Conflict(f"client request id {request_id!r} belongs to a request that did not complete")
    return result.model_validate_json(row.result)


async def finish(conn: AsyncConnection, request_id: str, view: AccountView) -> None:
    """Store the result of a claimed request (masked: no personal data in clear); ``view`` may be an
    ``AccountView`` or a model extending it (a close's or a transfer's answer)."""
    await conn.execute(
        update(request)
        .where(request.c.client_request_id == request_id)
        .values(account_id=view.account_id, result=view.model_dump_json())
    )
