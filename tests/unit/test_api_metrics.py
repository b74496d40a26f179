"""``GET /metrics`` of an API process (``gashub api``): requests by method, route template and status,
never a concrete path. The group of processes (``--processes N``) is tested in test_cli.py."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from hub.app import Hub
from hub.metrics import API_LATENCY_BUCKETS, MULTIPROC_DIR_ENV
from hub.settings import load_settings
from hub.web import build_api_web_app

OVERVIEW = "/api/v1/accounts/{id}/overview"
ACCOUNT_IDS = ("AC-330602-000917", "AC-330602-004242", "13812345678")


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[TestClient[web.Request,
                                                                                                web.Application]]:
    for key in list(os.environ):
        if key.startswith("GASHUB_"):
            monkeypatch.delenv(key)
    monkeypatch.delenv(MULTIPROC_DIR_ENV, raising=False)  # one process: its own numbers
    monkeypatch.setenv("GASHUB_CORE__KEYS__CHECK", base64.b64encode(secrets.token_bytes(32)).decode())
    monkeypatch.setenv("GASHUB_CONNECTORS__VENDOR__TOKEN", "t")
    hub = Hub.build(load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/api.db"))
    try:
        async with TestClient(TestServer(build_api_web_app(hub))) as client:
            yield client
    finally:
        await hub.db.aclose()


def samples(text: str, name: str) -> dict[tuple[str, str, str], float]:
    """``name``'s samples by (method, route, status)."""
    return {(s.labels["method"], s.labels["route"], s.labels["status"]): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if s.name == name}


async def test_metrics_count_and_time_requests_by_route_template_and_status(
        client: TestClient[web.Request, web.Application]) -> None:
    for account in ACCOUNT_IDS:  # no token: refused, but counted under the template
        assert (await client.get(f"/api/v1/accounts/{account}/overview")).status == 401
    for _ in range(2):
        assert (await client.get("/api/v1/openapi.json")).status == 200
    assert (await client.get("/health")).status == 200
    assert (await client.get(f"/api/v1/no-such-thing/{ACCOUNT_IDS[0]}")).status == 404
    assert (await client.post("/health")).status == 405
    assert (await client.request("PROPFIND", "/health")).status == 405

    resp = await client.get("/metrics")  # open, like /health
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await resp.text()
    assert samples(text, "gashub_api_requests_total") == {
        ("GET", OVERVIEW, "401"): 3,
        ("GET", "/api/v1/openapi.json", "200"): 2,
        ("GET", "/health", "200"): 1,
        ("GET", "unmatched", "404"): 1,
        ("POST", "unmatched", "405"): 1,
        ("other", "unmatched", "405"): 1,
    }
    counts = samples(text, "gashub_api_request_duration_seconds_count")
    assert counts[("GET", OVERVIEW, "401")] == 3
    assert counts[("GET", "/api/v1/openapi.json", "200")] == 2
    bounds = {s.labels["le"] for family in text_string_to_metric_families(text) for s in family.samples
              if s.name == "gashub_api_request_duration_seconds_bucket"}
    assert {float(b) for b in bounds - {"+Inf"}} == set(API_LATENCY_BUCKETS)
    assert 0.05 in API_LATENCY_BUCKETS  # the API's p99 target is a bucket edge
    for account in ACCOUNT_IDS:  # no id, phone or concrete path in any label
        assert account not in text
    assert "no-such-thing" not in text
    assert "gashub_route_" not in text  # the API's metrics only, not the hub's (unused here)


async def test_metrics_scrapes_are_counted_and_accumulate(client: TestClient[web.Request, web.Application]) -> None:
    await client.get("/metrics")
    await client.get("/health")
    text = await (await client.get("/metrics")).text()
    assert samples(text, "gashub_api_requests_total") == {("GET", "/metrics", "200"): 1, ("GET", "/health", "200"): 1}
