"""OpenAPI 3.1 document generated from the route table and the pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from core.api.framework import Endpoint
from core.api.models import Problem
from core.api.permissions import Role, roles_for

REF = "#/components/schemas/{model}"
_REASONS = {400: "Bad request (a parameter is named)", 401: "No, bad, expired or revoked token",
            403: "The role may not do this", 404: "Not found", 423: "Account locked"}


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF)
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


def build_openapi(endpoints: list[Endpoint], *, prefix: str = "/api/v1", version: str = "1") -> dict[str, Any]:
    components: dict[str, Any] = {}
    problem_ref = _schema(Problem, components)
    paths: dict[str, Any] = {}
    for ep in endpoints:
        op: dict[str, Any] = {
            "operationId": ep.handler.__name__,
            "summary": ep.summary,
            "responses": {
                "201" if ep.method == "POST" and ep.public else "200": {
                    "description": "OK", "content": {ep.content_type: {"schema": _schema(ep.response, components)}}},
                **{str(code): {"description": _REASONS.get(code, "Error"),
                               "content": {"application/problem+json": {"schema": problem_ref}}}
                   for code in ep.errors},
            },
        }
        if ep.public:
            op["security"] = []
            op["x-roles"] = [r.value for r in Role]
        else:
            assert ep.resource
            assert ep.action
            op["security"] = [{"bearer": []}]
            op["x-roles"] = [r.value for r in roles_for(ep.resource, ep.action)]
            op["x-permission"] = {"resource": ep.resource.value, "action": ep.action.value}
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in ep.path_params]
        if ep.query is not None:
            qs = ep.query.model_json_schema(ref_template=REF)
            components.update(qs.pop("$defs", {}))
            required = set(qs.get("required", []))
            for name, prop in qs.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
        if params:
            op["parameters"] = params
        if ep.body is not None:
            op["requestBody"] = {"required": ep.body_required,
                                 "content": {"application/json": {"schema": _schema(ep.body, components)}}}
        paths.setdefault(prefix + ep.path, {})[ep.method.lower()] = op
    paths[prefix + "/openapi.json"] = {"get": {
        "operationId": "openapi", "summary": "This document", "security": [],
        "x-roles": [r.value for r in Role],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}},
    }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "gashub API", "version": version},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Token from POST /api/v1/auth/token"}},
        },
        "security": [{"bearer": []}],
    }
