"""The meter benchmarks run end to end at a tiny size on RabbitMQ + PostgreSQL, and print figures that
parse: ``bench/meter_push.py`` stores every pushed reading and prints ``ratio push/raw``;
``bench/alarm_latency.py`` closes every leaking meter's valve and prints its percentiles and the
background rate. Timings are printed by the benchmarks, never asserted here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.broker, pytest.mark.postgres]


def run(script: str, *args: str, amqp_url: str, postgres_url: str) -> str:
    out = subprocess.run([sys.executable, str(REPO / "bench" / script), *args, "--amqp", amqp_url,
                          "--pg", postgres_url], cwd=REPO, capture_output=True, text=True, timeout=280, check=False)
    assert out.returncode == 0, f"{script} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_meter_push_stores_every_pushed_reading_and_prints_its_ratio(amqp_url: str, postgres_url: str) -> None:
    out = run("meter_push.py", "-n", "60", "--raw-n", "500", "--concurrency", "8",
              amqp_url=amqp_url, postgres_url=postgres_url)
    stored = re.search(r"readings stored by the core: ([\d,]+) of ([\d,]+) \(", out)
    assert stored is not None, out
    assert stored.group(1) == stored.group(2) == "60"
    assert re.search(r"pushes answered: HTTP 200: 60\n", out), out
    raw = re.search(r"raw floor \(best of 2\): ([\d,]+) msg/s", out)
    rate = re.search(r"push → validated reading stored: ([\d,]+) readings/s", out)
    ratio = re.search(r"^ratio push/raw: (\d+\.\d\d)$", out, re.MULTILINE)
    assert raw is not None, out
    assert rate is not None, out
    assert ratio is not None, out
    assert number(raw.group(1)) > 0
    assert number(rate.group(1)) > 0
    assert float(ratio.group(1)) == pytest.approx(number(rate.group(1)) / number(raw.group(1)), abs=0.006)


def test_alarm_latency_closes_every_leaking_valve_and_prints_percentiles(amqp_url: str, postgres_url: str) -> None:
    out = run("alarm_latency.py", "--meters", "80", "--rate", "10", "--duration", "6", "--leaks", "4", "--dtus", "2",
              "--warmup", "1", "--leak-every", "0.5", "--concurrency", "8",
              amqp_url=amqp_url, postgres_url=postgres_url)
    assert "valve closed at the meter's wire: 4 of 4\n" in out, out
    assert re.search(r"alarms recorded 4, valve commands delivered 4, SMS at the gateway 4;", out), out
    latency = re.search(r"alarm → valve-close latency ms: p50 (\d+), p95 (\d+), p99 (\d+), max (\d+)", out)
    assert latency is not None, out
    p50, p95, p99, top = (int(v) for v in latency.groups())
    assert 0 < p50 <= p95 <= p99 <= top
    background = re.search(r"background: ([\d,]+) pushes sent in [\d.]+ s, ([\d,]+) answered 200 \(([\d,]+)/s; "
                           r"asked 10/s\)", out)
    assert background is not None, out
    assert number(background.group(1)) == 60
    assert number(background.group(2)) == 60
    assert re.search(r"target p99 < 1000 ms: (met|NOT met)", out), out
