"""What the core API's tests share: every role's user logged in through ``POST /api/v1/auth/token``."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from core.api import Role


async def role_headers(client: TestClient, password: str) -> dict[Role, dict[str, str]]:
    """The ``Authorization`` header of each role's user (one user a role, named after it, with ``password``)."""
    auth = {}
    for role in Role:
        resp = await client.post("/api/v1/auth/token", json={"username": role.value, "password": password})
        auth[role] = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
    return auth
