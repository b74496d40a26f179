"""API users, login with lockout, bearer tokens (stored hashed, expiring, revocable) and the audit log.

Level-2 protection: failed logins are counted (5 within 15 minutes lock the account for 15
minutes), tokens expire after ``token_ttl`` and after ``idle_timeout`` without use, and every write
and login attempt is recorded in ``core_api_audit``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.api.permissions import Role
from core.api.secrets import hash_password, hash_token, new_salt, new_token, password_matches
from core.db.combined import read_only
from core.db.tables_api import api_audit, api_token, api_user

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AuthPolicy:
    token_ttl: timedelta = timedelta(hours=8)
    idle_timeout: timedelta = timedelta(minutes=30)
    touch_every: timedelta = timedelta(minutes=1)
    """How stale a token's ``last_used_at`` may get before a request writes the new time: reads stay
    read-only, and the idle time-out is exact to this much."""
    max_failures: int = 5
    failure_window: timedelta = timedelta(minutes=15)
    lock_for: timedelta = timedelta(minutes=15)
    recheck_every: timedelta = timedelta(seconds=5)
    """How long a server process trusts a token it has just checked before it reads the token's row
    again (``PrincipalCache``): a burst of requests on one token costs one lookup, not one each. A
    revocation, a disabled user or a role change made through another process takes effect within this
    time; a revocation through this process at once. ``timedelta(0)`` checks every request."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    username: str
    role: Role
    token_hash: str
    expires_at: datetime


@dataclass(frozen=True)
class IssuedToken:
    token: str
    """The plaintext: give it to the user now; only its sha256 is stored."""
    expires_at: datetime
    user_id: str
    role: Role


class LoginFailed(Exception):
    """Wrong username or password (which of the two is not said)."""


class AccountLocked(Exception):
    def __init__(self, until: datetime) -> None:
        super().__init__(f"locked until {until.isoformat()}")
        self.until = until


_DUMMY_SALT = new_salt()


async def create_user(engine: AsyncEngine, username: str, password: str, role: Role, *, clock: Clock = utc_now) -> str:
    """Add an API user; returns its id. The password is kept only as a salted scrypt hash."""
    if len(password) < 12:
        raise ValueError("password too short: use at least 12 characters")
    salt = new_salt()
    digest = await asyncio.to_thread(hash_password, password, salt)
    user_id = uuid.uuid4().hex
    async with engine.begin() as conn:
        await conn.execute(insert(api_user).values(
            id=user_id, username=username, role=Role(role).value, password_salt=salt, password_hash=digest,
            disabled=False, failed_logins=0, created_at=clock(),
        ))
    return user_id


async def login(engine: AsyncEngine, username: str, password: str, policy: AuthPolicy, clock: Clock) -> IssuedToken:
    """Check the password and issue a token, or raise ``LoginFailed`` / ``AccountLocked``."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(api_user).where(api_user.c.username == username))).mappings().first()
    if row is None or row["disabled"]:
        await asyncio.to_thread(hash_password, password, _DUMMY_SALT)  # same cost: no user enumeration by timing
        raise LoginFailed
    now = clock()
    if row["locked_until"] is not None and row["locked_until"] > now:
        raise AccountLocked(row["locked_until"])
    if not await asyncio.to_thread(password_matches, password, row["password_salt"], row["password_hash"]):
        await _count_failure(engine, row["id"], row["failed_logins"], row["first_failed_at"], policy, now)
        raise LoginFailed
    token = new_token()
    expires_at = now + policy.token_ttl
    async with engine.begin() as conn:
        await conn.execute(update(api_user).where(api_user.c.id == row["id"]).values(
            failed_logins=0, first_failed_at=None, locked_until=None))
        await conn.execute(insert(api_token).values(
            token_hash=hash_token(token), user_id=row["id"], created_at=now, expires_at=expires_at, last_used_at=now))
    return IssuedToken(token=token, expires_at=expires_at, user_id=row["id"], role=Role(row["role"]))


async def _count_failure(engine: AsyncEngine, user_id: str, failures: int, first: datetime | None,
                         policy: AuthPolicy, now: datetime) -> None:
    if first is None or now - first > policy.failure_window:
        failures, first = 0, now
    failures += 1
    values: dict[str, object] = {"failed_logins": failures, "first_failed_at": first}
    if failures >= policy.max_failures:
        values = {"failed_logins": 0, "first_failed_at": None, "locked_until": now + policy.lock_for}
    async with engine.begin() as conn:
        await conn.execute(update(api_user).where(api_user.c.id == user_id).values(**values))


_TOKEN_LOOKUP = (
    select(api_token, api_user.c.username, api_user.c.role, api_user.c.disabled)
    .join(api_user, api_user.c.id == api_token.c.user_id)
    .where(api_token.c.token_hash == bindparam("digest"))
)


class PrincipalCache:
    """Tokens this process found valid in the last ``AuthPolicy.recheck_every``, by their hash.

    An entry is used only while it is younger than ``recheck_every`` and the token is neither expired nor
    idle; otherwise the token's row is read again (and its ``last_used_at`` written when due). It holds at
    most ``limit`` tokens (the oldest check is dropped first)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._entries: dict[str, tuple[Principal, datetime, datetime]] = {}

    def get(self, digest: str, now: datetime, policy: AuthPolicy) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        principal, checked_at, last_used_at = entry
        if (now - checked_at >= policy.recheck_every or now < checked_at or principal.expires_at <= now
                or now - last_used_at > policy.idle_timeout):
            del self._entries[digest]
            return None
        return principal

    def put(self, principal: Principal, checked_at: datetime, last_used_at: datetime) -> None:
        if len(self._entries) >= self._limit:
            del self._entries[next(iter(self._entries))]
        self._entries[principal.token_hash] = (principal, checked_at, last_used_at)

    def forget(self, digest: str) -> None:
        self._entries.pop(digest, None)


async def authenticate(engine: AsyncEngine, token: str, policy: AuthPolicy, clock: Clock,
                       cache: PrincipalCache | None = None) -> Principal | None:
    """The principal a bearer token stands for, or ``None`` (unknown, expired, idle, revoked, disabled).

    The token's ``last_used_at`` is written only when it is older than ``policy.touch_every``, so
    that a burst of requests on one token costs one write, not one each; with a ``cache``, a token
    checked less than ``policy.recheck_every`` ago is not read again.
    """
    digest = hash_token(token)
    now = clock()
    if cache is not None and (known := cache.get(digest, now, policy)) is not None:
        return known
    async with engine.connect() as conn:
        # One statement: no transaction needed (read_only saves PostgreSQL's BEGIN and ROLLBACK round trips).
        row = (await (await read_only(conn)).execute(_TOKEN_LOOKUP, {"digest": digest})).mappings().first()
    if (row is None or row["revoked_at"] is not None or row["disabled"] or row["expires_at"] <= now
            or now - row["last_used_at"] > policy.idle_timeout):
        return None
    last_used_at = row["last_used_at"]
    if now - last_used_at >= policy.touch_every:
        async with engine.begin() as conn:
            await conn.execute(update(api_token).where(api_token.c.token_hash == digest).values(last_used_at=now))
        last_used_at = now
    principal = Principal(user_id=row["user_id"], username=row["username"], role=Role(row["role"]),
                          token_hash=digest, expires_at=row["expires_at"])
    if cache is not None and policy.recheck_every > timedelta(0):
        cache.put(principal, now, last_used_at)
    return principal


async def revoke_token(conn: AsyncConnection, token_hash: str, now: datetime) -> None:
    await conn.execute(update(api_token).where(api_token.c.token_hash == token_hash,
                                               api_token.c.revoked_at.is_(None)).values(revoked_at=now))


async def revoke_user_tokens(engine: AsyncEngine, user_id: str, *, clock: Clock = utc_now) -> None:
    """End every session of a user (e.g. when the user leaves or the role changes)."""
    async with engine.begin() as conn:
        await conn.execute(update(api_token).where(api_token.c.user_id == user_id,
                                                   api_token.c.revoked_at.is_(None)).values(revoked_at=clock()))


@dataclass(frozen=True)
class AuditEntry:
    method: str
    path: str
    resource: str
    status: int
    at: datetime
    user_id: str | None = None
    username: str | None = None
    role: str | None = None
    resource_id: str | None = None
    remote: str | None = None
    detail: str = ""


async def record_audit(engine: AsyncEngine, entry: AuditEntry) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(api_audit).values(
            at=entry.at, user_id=entry.user_id, username=entry.username, role=entry.role, method=entry.method[:8],
            path=entry.path[:500], resource=entry.resource[:32], resource_id=(entry.resource_id or None),
            remote=(entry.remote or "")[:64] or None, status=entry.status, detail=entry.detail[:200],
        ))
