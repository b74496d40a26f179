"""For tests that run ``gashub`` as a process: the repository's root and an environment without the
developer's ``GASHUB_*`` settings (a test names every setting its process gets)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without any GASHUB_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GASHUB_")}
    env.update(extra)
    return env
