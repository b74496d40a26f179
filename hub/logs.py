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

# Whole tokens only: digits inside ULIDs, decimals or longer numbers are left alone.
_PHONE = re.compile(r"(?<![0-9A-Za-z])(?<![0-9]\.)(1[3-9][0-9])[0-9]{4}([0-9]{4})(?![0-9A-Za-z])(?!\.[0-9])", re.ASCII)
# A resident ID: region (6), birth date 19xx/20xx MM DD (8), sequence (3), check digit.
_ID_NUMBER = re.compile(
    r"(?<![0-9A-Za-z])([0-9]{6})(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
    r"([0-9]{3}[0-9Xx])(?![0-9A-Za-z])",
    re.ASCII,
)


def mask_personal(text: str) -> str:
    """``13812345678`` → ``138****5678``; an 18-character ID keeps its first 6 and last 4."""
    text = _ID_NUMBER.sub(lambda m: f"{m.group(1)}{'*' * 8}{m.group(2)}", text)
    return _PHONE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


def _masked(value: Any) -> Any:
    """``mask_personal`` through strings, dicts, lists and tuples of a log record's extras."""
    if isinstance(value, str):
        return mask_personal(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
        masked = mask_personal(text)
        return value if masked == text else masked  # a phone number given as a number
    return value


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
        out.update({k: _masked(v) for k, v in (_CONTEXT.get() or {}).items()})
        for key, value in record.__dict__.items():
            if key not in self._SKIP and not key.startswith("_"):
                out[key] = _masked(value)
        if record.exc_info:
            out["exception"] = mask_personal(self.formatException(record.exc_info))
        return orjson.dumps(out, default=lambda o: mask_personal(str(o))).decode()


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
