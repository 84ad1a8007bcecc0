"""The analysis reads p99 latency from merged histogram buckets and promises to read it as
Prometheus' `histogram_quantile` does (turnout_operator/pod_metrics.py): the same buckets go to a
real Prometheus, as a query of constant series (`label_replace(vector(N), "le", ...)`, no
scraping), and both answers must agree, over generated histograms on turnout-serve's own
latency buckets. A provider's PromQL query is read from the same real Prometheus."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Process, start_prometheus
from turnout_operator.domain.spec import PrometheusQuery
from turnout_operator.meter import Unreadable, query_prometheus
from turnout_operator.pod_metrics import quantile
from turnout_serving.metrics import LATENCY_BUCKETS

BOUNDS = (*LATENCY_BUCKETS, math.inf)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    home: Path = tmp_path_factory.mktemp("prometheus")
    proc = start_prometheus(home, "global:\n  evaluation_interval: 1m\n")
    try:
        yield proc
    finally:
        proc.stop()


def prometheus_quantile(proc: Process, q: float, buckets: dict[float, float]) -> float | None:
    series = " or ".join(
        f'label_replace(vector({count}), "le", "{"+Inf" if math.isinf(bound) else repr(bound)}", '
        '"", "")'
        for bound, count in buckets.items()
    )
    answer = httpx.get(f"{proc.url}/api/v1/query",
                       params={"query": f"histogram_quantile({q}, {series})"}, timeout=10)  # fmt: skip
    answer.raise_for_status()
    [sample] = answer.json()["data"]["result"]
    value = float(sample["value"][1])
    return None if math.isnan(value) else value


histograms = st.lists(
    st.integers(0, 40) | st.just(0), min_size=len(BOUNDS), max_size=len(BOUNDS)
).map(
    lambda counts: dict(
        zip(BOUNDS, [sum(counts[: i + 1]) for i in range(len(counts))], strict=True)
    )
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(buckets=histograms, q=st.sampled_from([0.5, 0.9, 0.99, 0.999]))
def test_p99_is_read_from_buckets_as_prometheus_reads_it(
    prometheus: Process, buckets: dict[float, float], q: float
) -> None:
    expected = prometheus_quantile(prometheus, q, buckets)
    ours = quantile(q, buckets)
    if expected is None:
        assert ours is None
    else:
        assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12)


# --- the provider's query, against the same real Prometheus --------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("scalar(vector(1.5))", 1.5),  # a scalar
        ('label_replace(vector(2), "job", "x", "", "")', 2.0),  # a vector: its first sample
        ("vector(0) > 1", None),  # an empty vector: no sample
        ("scalar(vector(1)) / 0", None),  # +Inf: not a number the condition can compare
    ],
)
def test_a_provider_query_reads_the_number_prometheus_answers(
    prometheus: Process, query: str, expected: float | None
) -> None:
    provider = PrometheusQuery(address=prometheus.url, query=query, success_condition="result > 0")
    assert query_prometheus(provider, 10) == expected


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("su(", r"answered HTTP 400: bad_data .*parse error"),
        ("vector(1)[5m:1m]", r"a matrix result, not a number$"),
        ('"a string"', r"a string result, not a number$"),
    ],
)
def test_a_provider_query_prometheus_refuses_or_cannot_compare_is_unreadable(
    prometheus: Process, query: str, error: str
) -> None:
    provider = PrometheusQuery(address=prometheus.url, query=query, success_condition="result > 0")
    with pytest.raises(Unreadable, match=error):
        query_prometheus(provider, 10)
