"""The normalised REST API at /api/v1: roles and permissions, token auth, write audit, OpenAPI."""

from __future__ import annotations

from core.api.app import PREFIX, build_api
from core.api.permissions import Action, Resource, Role
from core.api.users import AuthPolicy, create_user, revoke_user_tokens

__all__ = ["PREFIX", "Action", "AuthPolicy", "Resource", "Role", "build_api", "create_user", "revoke_user_tokens"]
