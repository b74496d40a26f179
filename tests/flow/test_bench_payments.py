"""``bench/payments.py`` at a small N on the real RabbitMQ and PostgreSQL: it runs end to end, checks
that every notification was credited and invoiced once, and prints its ratio. No timing is asserted."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.flow.conftest import REPO


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "bench" / "payments.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)


def test_help_says_what_is_measured() -> None:
    result = _bench("--help")
    assert result.returncode == 0, result.stderr
    assert "ratio payments/raw" in result.stdout
    assert "--concurrency" in result.stdout


def test_a_small_run_credits_and_invoices_every_notification_once(amqp_url: str, postgres_url: str) -> None:
    result = _bench("-n", "40", "--concurrency", "4", "--accounts", "3", "--amqp", amqp_url, "--pg", postgres_url)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "answers: {204: 40}; checks: 40 payments credited, 40 payment.received stored, " \
           "40 invoice requests written, amounts match" in out
    assert "notifications answered" in out  # progress while it runs
    assert re.search(r"^ratio payments/raw: \d+\.\d\d$", out, re.MULTILINE), out
