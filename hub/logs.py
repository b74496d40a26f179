"""Structured JSON logs with the flow's identifiers bound at the entry points.

``bind(correlation_id=…, message_id=…, route=…)`` sets context for everything logged in the current
task; the formatter adds it to each record. Personal data never reaches a log: the formatter masks
mobile numbers and resident ID numbers wherever they appear, as a last line of defence behind
masking at the source.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("gashub_log_context", default=None)
BOUND_KEYS = ("correlation_id", "message_id", "route", "connector", "attempt")

_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[0-9Xx])(?![0-9A-Za-z])")


def mask_personal(text: str) -> str:
    """``13812345678`` → ``138****5678``; an 18-character ID keeps its first 6 and last 4."""
    text = _ID_NUMBER.sub(lambda m: f"{m.group(1)}{'*' * 8}{m.group(2)}", text)
    return _PHONE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


@contextlib.contextmanager
def bind(**values: Any) -> Iterator[None]:
    current = _CONTEXT.get() or {}
    token = _CONTEXT.set({**current, **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, event (the message), logger, bound context, extras."""

    _SKIP = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": mask_personal(record.getMessage()),
            "logger": record.name,
        }
        out.update(_CONTEXT.get() or {})
        for key, value in record.__dict__.items():
            if key not in self._SKIP and not key.startswith("_"):
                out[key] = mask_personal(value) if isinstance(value, str) else value
        if record.exc_info:
            out["exception"] = mask_personal(self.formatException(record.exc_info))
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ctx = _CONTEXT.get() or {}
        bound = " ".join(f"{k}={ctx[k]}" for k in BOUND_KEYS if k in ctx)
        line = f"{datetime.now().strftime('%H:%M:%S')} {record.levelname:<7} {record.getMessage()}"
        extra = {k: v for k, v in record.__dict__.items() if k not in JsonFormatter._SKIP and not k.startswith("_")}
        if extra:
            line += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        if bound:
            line += f" [{bound}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return mask_personal(line)


def configure(level: str = "INFO", *, json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("pika", "aiohttp.access", "sqlalchemy.engine", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
