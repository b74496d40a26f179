"""Prometheus metrics for every route and connector, on a registry owned by the hub instance; and the
request metrics of an API process (``gashub api``), aggregated over the group in multiprocess mode."""

from __future__ import annotations

import math
import os
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Set by ``gashub api --processes N`` (N > 1) for its children; prometheus_client reads it when it is
first imported, so it must be in the environment before the process starts."""

API_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5,
                       1.0, 2.5)
"""Fine around the API's target (p99 < 50 ms), coarse above it."""
API_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
"""The route label of a request no route matched (404, 405): never the path itself."""
_API_PREFIX = "gashub_api_"


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for every value (a labelled child), with one increment per bucket
    instead of one per value: a route observes the latency of every message of a batch.

    Reads the child's buckets the way ``Histogram.observe`` does (prometheus_client's ``_upper_bounds``,
    ``_buckets`` and ``_sum``); if a later version has none of them, it observes value by value."""
    child: Any = histogram
    bounds, buckets, total = (getattr(child, name, None) for name in ("_upper_bounds", "_buckets", "_sum"))
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets) or any(
            math.isnan(v) for v in values):  # a NaN falls in no bucket of observe(): leave it to observe()
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1  # the first bound >= value, as observe() picks
    total.inc(math.fsum(values))
    for i, count in enumerate(counts):
        if count:
            buckets[i].inc(count)


class RateMeter:
    """Messages per second over the last ``window_s`` seconds, per key."""

    def __init__(self, window_s: int = 10) -> None:
        self.window_s = window_s
        self._buckets: dict[str, deque[list[int]]] = {}

    def mark(self, key: str, n: int) -> None:
        second = int(time.monotonic())
        buckets = self._buckets.setdefault(key, deque())
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += n
        else:
            buckets.append([second, n])
        while buckets and buckets[0][0] <= second - self.window_s:
            buckets.popleft()

    def rate(self, key: str) -> float:
        now = int(time.monotonic())
        buckets = self._buckets.get(key, ())
        return sum(n for s, n in buckets if s > now - self.window_s) / self.window_s


class HubMetrics:
    def __init__(self) -> None:
        self.rates = RateMeter()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            "gashub_route_messages", "Messages settled by a route, by outcome", ["route", "outcome"], registry=r
        )
        self.batch_seconds = Histogram(
            "gashub_route_batch_seconds", "Time to settle one batch", ["route"], registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.message_latency = Histogram(
            "gashub_route_latency_seconds", "Message time to settled, end to end", ["route"], registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.connector_calls = Counter(
            "gashub_connector_calls", "Partner calls by outcome", ["connector", "outcome"], registry=r
        )
        self.connector_seconds = Histogram(
            "gashub_connector_call_seconds", "Partner call duration", ["connector"], registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.breaker_open = Gauge(
            "gashub_connector_breaker_open", "1 while the connector's circuit breaker is open", ["connector"],
            registry=r,
        )
        self.published = Counter("gashub_published", "Messages published with confirm", ["source"], registry=r)
        self.inbound = Counter(
            "gashub_inbound", "Partner messages received, by outcome", ["source", "outcome"], registry=r
        )
        self.outbox_pending = Gauge("gashub_outbox_pending", "Core outbox rows not yet published", registry=r)
        self.queue_depth = Gauge("gashub_queue_depth", "Messages in a route's queue", ["queue"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def multiprocess_dir() -> str | None:
    """The directory this process shares its metrics through, if prometheus_client is in multiprocess mode."""
    return os.environ.get(MULTIPROC_DIR_ENV) or None


class _ApiMetricsOnly(Collector):
    """A ``MultiProcessCollector`` limited to the API's metrics: the hub's own metrics, created in every
    process but unused by an API process, stay out of its scrape."""

    def __init__(self, path: str) -> None:
        self._files = MultiProcessCollector(None, path)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        return [m for m in self._files.collect() if m.name.startswith(_API_PREFIX)]  # type: ignore[no-untyped-call]


class ApiMetrics:
    """Requests served by an API process, by method, route template and status.

    The route label is the template (``/api/v1/accounts/{id}/overview``) or ``unmatched``, the method one
    of ``API_METHODS`` or ``other``: no path, id or personal data reaches a label, and the label sets stay
    bounded. Each label combination's children are looked up once and kept (``labels()`` costs more than
    the increment). With ``multiprocess_dir`` (``gashub api --processes N``) every process writes its values
    to files there and ``render`` sums the files of the whole group, so any process answers for all."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("gashub_api_requests", "API requests served, by method, route template and status",
                                ["method", "route", "status"], registry=r)
        self.seconds = Histogram("gashub_api_request_duration_seconds",
                                 "API request time in the process, handler and middlewares, in seconds",
                                 ["method", "route", "status"], registry=r, buckets=API_LATENCY_BUCKETS)
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.multiprocess_dir = multiprocess_dir
        self._exposed = r
        if multiprocess_dir is not None:
            self._exposed = CollectorRegistry(auto_describe=False)
            self._exposed.register(_ApiMetricsOnly(multiprocess_dir))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in API_METHODS:
            method = "other"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            labels = (method, route, str(status))
            children = self._children[key] = (self.requests.labels(*labels), self.seconds.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self._exposed)
