"""Prometheus metrics for every route and connector, on a registry owned by the hub instance."""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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
