"""AMQP topic-pattern matching (``*`` one word, ``#`` zero or more words)."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    for word in pattern.split("."):
        if word == "#":
            parts.append(r"(?:[^.]+(?:\.[^.]+)*)?")
        elif word == "*":
            parts.append(r"[^.]+")
        else:
            parts.append(re.escape(word))
    regex = r"\.".join(parts)
    # "#" may also swallow the dot next to it when it matches zero words.
    regex = regex.replace(r"\.(?:[^.]+(?:\.[^.]+)*)?", r"(?:\.[^.]+)*").replace(
        r"(?:[^.]+(?:\.[^.]+)*)?\.", r"(?:[^.]+\.)*"
    )
    return re.compile(f"^{regex}$")


def topic_matches(pattern: str, routing_key: str) -> bool:
    return _compile(pattern).match(routing_key) is not None
