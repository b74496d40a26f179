"""``observe_many``: a batch of observations counted as ``Histogram.observe`` counts them one by one."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from hub.metrics import LATENCY_BUCKETS, observe_many


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("le", "")): s.value for metric in registry.collect() for s in metric.samples
            if not s.name.endswith("_created")}


def _pair() -> tuple[CollectorRegistry, Histogram, CollectorRegistry, Histogram]:
    one, many = CollectorRegistry(), CollectorRegistry()
    return (one, Histogram("lat", "latency", ["route"], buckets=LATENCY_BUCKETS, registry=one),
            many, Histogram("lat", "latency", ["route"], buckets=LATENCY_BUCKETS, registry=many))


_values = st.lists(st.floats(min_value=0, max_value=100, allow_nan=False)
                   | st.sampled_from([*LATENCY_BUCKETS, 0.0, math.inf]), max_size=60)


@settings(max_examples=200)
@given(batches=st.lists(_values, max_size=4))
def test_batches_count_as_one_observation_at_a_time(batches: list[list[float]]) -> None:
    one_reg, one, many_reg, many = _pair()
    one.labels("r"), many.labels("r")  # the child exists in both, also when no batch has a value
    for batch in batches:
        for value in batch:
            one.labels("r").observe(value)
        observe_many(many.labels("r"), batch)
    expected, got = _samples(one_reg), _samples(many_reg)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        if key[0] == "lat_sum":
            assert got[key] == value or math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-9)
        else:
            assert got[key] == value, key  # every bucket, its bound included, and the count


def test_a_nan_is_left_to_observe() -> None:
    one_reg, one, many_reg, many = _pair()
    for value in (0.2, math.nan, 3.0):
        one.labels("r").observe(value)
    observe_many(many.labels("r"), [0.2, math.nan, 3.0])
    expected, got = _samples(one_reg), _samples(many_reg)
    sums = ("lat_sum", "")
    assert {k: v for k, v in expected.items() if k != sums} == {k: v for k, v in got.items() if k != sums}
    assert math.isnan(expected[sums])
    assert math.isnan(got[sums])
