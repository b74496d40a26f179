"""JSON and ``application/problem+json`` (RFC 9457) responses of the API."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

PROBLEM_TYPE = "application/problem+json"


def json_response(data: Any, status: int = 200) -> web.Response:
    """``data`` as JSON: a pydantic model serialised by pydantic itself (the same JSON as
    ``model_dump(mode="json")``, without building the dict first), anything else by orjson."""
    if isinstance(data, BaseModel):
        body = data.__pydantic_serializer__.to_json(data)
    else:
        body = orjson.dumps(data, default=str)
    return web.Response(body=body, status=status, content_type="application/json")


def problem(
    status: int, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    """A problem document; ``detail`` should say what the caller can do about it."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return web.Response(body=orjson.dumps(body, default=str), status=status, content_type=PROBLEM_TYPE,
                        headers=headers)


class ProblemError(Exception):
    """Raised by handlers; the API's error middleware turns it into a problem response."""

    def __init__(self, status: int, title: str, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.headers, self.extra = status, title, detail, headers, extra

    def response(self) -> web.Response:
        return problem(self.status, self.title, self.detail, headers=self.headers, **self.extra)
