"""The analysis adapter: the serving pods' /metrics (as turnout-serve's own metric classes write
them) read into one color's figures per interval; Prometheus queries; mirroring asked of the
active pods; and a reconcile that measures and re-plans with what it read. Exact values."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tests.unit.test_reconcile import RecordingKube, model_deployment, reconciler
from turnout_operator.domain.actions import Measure, StartShadow, StopShadow
from turnout_operator.domain.analysis import ColorFigures, Measurement
from turnout_operator.domain.spec import PrometheusQuery
from turnout_operator.meter import Meter, Unreadable, query_prometheus
from turnout_operator.pod_metrics import Reading, Scrapes, figures, quantile, read, since
from turnout_serving.metrics import LATENCY_BUCKETS, ServingMetrics

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


class Pod:
    """One serving pod's metrics, written by turnout-serve's own classes."""

    def __init__(self, color: str = "green") -> None:
        self.registry = CollectorRegistry()
        self.serving = ServingMetrics(self.registry, model="bikes", version="4", color=color)

    def requests(self, endpoint: str, code: int, seconds: float, times: int = 1) -> Pod:
        for _ in range(times):
            self.serving.observe_request(endpoint, code, seconds)
        return self

    def text(self) -> str:
        return generate_latest(self.registry).decode()


def test_a_pods_requests_errors_and_latency_are_read_from_its_own_metrics() -> None:
    pod = Pod().requests("invocations", 200, 0.003, 3).requests("v2_infer", 500, 0.2)
    pod.requests("invocations", 400, 0.0001, 2).requests("feedback", 200, 0.001, 5)
    reading = read(pod.text())
    assert (reading.requests, reading.errors) == (6, 1)  # feedback is no inference
    assert reading.latency == {
        **{b: 2.0 for b in LATENCY_BUCKETS if b < 0.005}, 0.005: 5.0, 0.0075: 5.0, 0.01: 5.0,
        **{b: 5.0 for b in LATENCY_BUCKETS if 0.01 < b < 0.25},
        **{b: 6.0 for b in LATENCY_BUCKETS if b >= 0.25}, float("inf"): 6.0,
    }  # fmt: skip
    assert reading.prediction_drift is None and reading.quality_error is None


def shadow_and_drift(agreement: float, rows: float, diffs: list[float], drift: float,
                     mae: float | None, accuracy: float | None = None) -> str:  # fmt: skip
    """A preview's shadow, drift and quality families, under turnout-serve's names."""
    registry = CollectorRegistry()
    labels = {"model": "bikes", "version": "4", "color": "green"}
    requests = Counter("turnout_shadow_requests", "", [*labels, "result"], registry=registry)
    requests.labels(**labels, result="compared").inc(len(diffs))
    requests.labels(**labels, result="error").inc(2)
    requests.labels(**labels, result="mirrored").inc(99)  # the active's result: not counted
    errors = Counter("turnout_shadow_errors", "", [*labels, "reason"], registry=registry)
    errors.labels(**labels, reason="500").inc(1)
    errors.labels(**labels, reason="incomparable").inc(1)
    Gauge("turnout_shadow_agreement_ratio", "", list(labels), registry=registry).labels(
        **labels).set(agreement)  # fmt: skip
    Gauge("turnout_shadow_window_rows", "", list(labels), registry=registry).labels(
        **labels).set(rows)  # fmt: skip
    histogram = Histogram("turnout_shadow_abs_diff", "", list(labels), registry=registry)
    for diff in diffs:
        histogram.labels(**labels).observe(diff)
    latency = Histogram("turnout_shadow_latency_seconds", "", [*labels, "side"],
                        buckets=LATENCY_BUCKETS, registry=registry)  # fmt: skip
    for side, seconds in (("active", 5.0), ("preview", 0.004)):
        for _ in diffs:
            latency.labels(**labels, side=side).observe(seconds)
    Gauge("turnout_prediction_drift_psi", "", list(labels), registry=registry).labels(
        **labels).set(drift)  # fmt: skip
    Gauge("turnout_drift_window_rows", "", list(labels), registry=registry).labels(
        **labels).set(200)  # fmt: skip
    quality = Gauge("turnout_live_window_rows", "", list(labels), registry=registry)
    quality.labels(**labels).set(0 if mae is None and accuracy is None else 50)
    if mae is not None:
        Gauge("turnout_live_mae", "", list(labels), registry=registry).labels(**labels).set(mae)
    if accuracy is not None:
        Gauge("turnout_live_accuracy", "", list(labels), registry=registry).labels(
            **labels).set(accuracy)  # fmt: skip
    return generate_latest(registry).decode()


def test_a_previews_shadow_figures_count_as_its_traffic() -> None:
    reading = read(shadow_and_drift(0.9, 40, [0.5, 1.5, 4.0], 0.2, mae=3.0))
    assert reading == Reading(
        requests=5, errors=1, shadow_compared=3, abs_diff_sum=6.0, abs_diff_count=3,
        agreement=0.9, agreement_rows=40, prediction_drift=0.2, drift_rows=200, quality_error=3.0,
        quality_rows=50, latency=reading.latency,
    )  # fmt: skip
    # the preview's own scoring time of the copies, not the active's
    assert reading.latency[0.005] == 3.0 and reading.latency[2.5] == 3.0


def test_a_classifiers_quality_is_its_error_rate_and_nothing_without_labels() -> None:
    assert read(shadow_and_drift(1, 1, [], 0, mae=None, accuracy=0.92)).quality_error == (
        pytest.approx(0.08)
    )
    assert read(shadow_and_drift(1, 1, [], 0, mae=None)).quality_error is None


def test_an_interval_is_the_difference_from_the_pods_last_scrape() -> None:
    pod = Pod().requests("invocations", 200, 0.003, 10)
    scrapes = Scrapes()
    first = scrapes.interval("ml", "bikes-green-1", read(pod.text()))
    assert first.requests == 10  # no earlier scrape: everything since the pod started
    pod.requests("invocations", 503, 2.0, 2).requests("invocations", 200, 0.003, 3)
    second = scrapes.interval("ml", "bikes-green-1", read(pod.text()))
    assert (second.requests, second.errors) == (5, 2)
    assert second.latency[0.005] == 3.0 and second.latency[float("inf")] == 5.0
    restarted = Pod().requests("invocations", 200, 0.003, 4)  # counters reset
    third = scrapes.interval("ml", "bikes-green-1", read(restarted.text()))
    assert (third.requests, third.errors) == (4, 0)


def test_a_color_sums_its_pods_and_reads_p99_from_the_merged_buckets() -> None:
    fast = read(Pod().requests("invocations", 200, 0.003, 99).text())
    slow = read(Pod().requests("invocations", 200, 0.3, 1).requests("invocations", 500, 0.3).text())
    preview = read(shadow_and_drift(0.8, 100, [1.0, 3.0], 0.1, mae=2.0))
    other = read(shadow_and_drift(0.9, 300, [2.0, 6.0], 0.3, mae=4.0))
    color = figures([fast, slow, preview, other])
    assert color == ColorFigures(
        # 105 timed: 103 up to 5 ms (99 + the previews' 2 + 2 scoring times), 2 at 0.3 s
        requests=99 + 2 + 4 + 4, errors=1 + 1 + 1, p99_seconds=pytest.approx(0.36875),
        prediction_drift=0.3, drift_rows=400, quality_error=3.0, shadow_compared=4,
        shadow_agreement=pytest.approx(0.875), shadow_mean_abs_diff=3.0,
    )  # fmt: skip
    assert figures([]) == ColorFigures()


# Prometheus' histogram_quantile, case by case (promql/quantile.go: bucketQuantile).
QUANTILES = [
    ({}, 0.99, None),
    ({0.1: 0.0, float("inf"): 0.0}, 0.99, None),
    ({0.1: 10.0, 0.2: 10.0, float("inf"): 10.0}, 0.5, 0.05),  # from 0 up to the first bound
    ({0.1: 0.0, 0.2: 10.0, float("inf"): 10.0}, 0.5, 0.15),
    ({0.1: 5.0, 0.2: 5.0, float("inf"): 10.0}, 0.99, 0.2),  # in +Inf: the largest finite bound
    ({0.1: 4.0, 0.2: 8.0, 0.4: 10.0, float("inf"): 10.0}, 0.9, 0.3),
    ({0.1: 4.0, 0.2: 8.0, 0.4: 10.0, float("inf"): 10.0}, 0.4, 0.1),  # a bound exactly
]


@pytest.mark.parametrize(("buckets", "q", "expected"), QUANTILES)
def test_quantiles_follow_prometheus(
    buckets: dict[float, float], q: float, expected: float | None
) -> None:
    assert quantile(q, buckets) == (None if expected is None else pytest.approx(expected))


def test_a_reading_keeps_gauges_and_forgets_a_pod_read_long_ago() -> None:
    scrapes = Scrapes(limit=2)
    for pod in ("a", "b", "c"):
        scrapes.interval("ml", pod, Reading(requests=10))
    assert scrapes.interval("ml", "a", Reading(requests=12)).requests == 12  # forgotten
    assert scrapes.interval("ml", "c", Reading(requests=12)).requests == 2
    assert since(Reading(requests=1, agreement=0.5), Reading(requests=3, agreement=0.7)) == (
        Reading(requests=2, agreement=0.7)
    )


# --- the meter: pods and Prometheus ----------------------------------------------------------


class FakePods:
    """Ready pods answering with their own metrics text; records every request."""

    def __init__(self, pods: dict[str, dict[str, Pod | int]]) -> None:
        self.pods = pods  # color -> pod name -> its metrics, or the HTTP code it answers
        self.requests: list[tuple[str, str, str, bool, dict[str, str] | None, Any]] = []

    def ready_pods(self, namespace: str, name: str, color: str) -> list[tuple[str, str]]:
        return [(pod, f"10.0.0.{i}") for i, pod in enumerate(self.pods.get(color, {}))]

    def pod_request(
        self, namespace: str, pod: str, ip: str, method: str, path: str, direct: bool,
        timeout: float, headers: dict[str, str] | None = None, body: Any = None,
    ) -> tuple[int, str]:  # fmt: skip
        self.requests.append((method, pod, path, direct, headers, body))
        answer = next(p[pod] for p in self.pods.values() if pod in p)
        if isinstance(answer, int):
            return answer, "unavailable"
        return 200, answer.text()


def test_a_measurement_reads_every_ready_pod_of_each_color() -> None:
    pods = FakePods({
        "blue": {"bikes-blue-1": Pod("blue").requests("invocations", 200, 0.002, 50)},
        "green": {"bikes-green-1": Pod().requests("invocations", 200, 0.004, 20),
                  "bikes-green-2": Pod().requests("invocations", 500, 0.004, 1)},
    })  # fmt: skip
    meter = Meter(pods, timeout=5)
    measured = meter.measure("ml", "bikes", Measure("PrePromotion", "4", ("blue", "green")),
                             direct=True, now=NOW)  # fmt: skip
    assert measured == Measurement("PrePromotion", "4", NOW, {
        "blue": ColorFigures(requests=50, p99_seconds=pytest.approx(0.002485)),
        "green": ColorFigures(requests=21, errors=1, p99_seconds=pytest.approx(0.004975)),
    })  # fmt: skip
    assert [(m, p, path, d) for m, p, path, d, _, _ in pods.requests] == [
        ("GET", "bikes-blue-1", "/metrics", True), ("GET", "bikes-green-1", "/metrics", True),
        ("GET", "bikes-green-2", "/metrics", True),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("pods", "error"),
    [({"green": {}}, "no ready pod of green to read metrics from"),
     ({"green": {"bikes-green-1": 503}}, "green pod bikes-green-1: /metrics answered HTTP 503")],
)  # fmt: skip
def test_what_cannot_be_read_is_an_error_measurement_naming_the_pod(
    pods: dict[str, dict[str, Pod | int]], error: str
) -> None:
    measured = Meter(FakePods(pods), timeout=5).measure(
        "ml", "bikes", Measure("PostPromotion", "4", ("green",)), direct=False, now=NOW
    )
    assert measured == Measurement("PostPromotion", "4", NOW, error=error)


def test_mirroring_is_asked_of_every_active_pod_with_the_admin_token() -> None:
    pods = FakePods({"blue": {"bikes-blue-1": Pod("blue"), "bikes-blue-2": Pod("blue")}})
    meter = Meter(pods, timeout=5)
    meter.start_shadow("ml", "bikes", StartShadow("blue", "green", 10, 50, 120), False,
                       "admin-secret", "inference-token")  # fmt: skip
    meter.stop_shadow("ml", "bikes", StopShadow("blue"), False, "admin-secret")
    body = {"target": "http://bikes-preview.ml.svc", "percent": 10,
            "maxRequestsPerSecond": 50, "ttlSeconds": 120, "token": "inference-token"}  # fmt: skip
    header = {"X-Turnout-Admin-Token": "admin-secret"}
    assert pods.requests == [
        ("PUT", "bikes-blue-1", "/admin/shadow", False, header, body),
        ("PUT", "bikes-blue-2", "/admin/shadow", False, header, body),
        ("DELETE", "bikes-blue-1", "/admin/shadow", False, header, None),
        ("DELETE", "bikes-blue-2", "/admin/shadow", False, header, None),
    ]


@pytest.fixture
def prometheus_api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in for Prometheus' HTTP API on 127.0.0.1 answering /api/v1/query with the
    replies queued in the list it hands out (and recording the queries)."""
    replies: list[dict[str, Any]] = []
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            reply = replies.pop(0)
            payload = json.dumps(reply["body"]).encode()
            self.send_response(reply.get("code", 200))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", replies
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert all(path.startswith("/api/v1/query?query=") for path in seen)


def vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {}, "value": [1.7e9, v]} for v in values]
    return {"body": {"status": "success", "data": {"resultType": "vector", "result": result}}}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (vector("0.97", "0.5"), 0.97),
        ({"body": {"status": "success", "data": {"resultType": "scalar", "result": [1.7e9, "2"]}}}, 2.0),
        (vector(), None),
        (vector("NaN"), None),
    ],
)  # fmt: skip
def test_a_prometheus_query_gives_one_number(
    prometheus_api: tuple[str, list[dict[str, Any]]], reply: dict[str, Any], expected: float | None
) -> None:
    address, replies = prometheus_api
    replies.append(reply)
    assert query_prometheus(PrometheusQuery(address=address, query="up",
                                            success_condition="result > 0"), 5) == expected  # fmt: skip


def test_a_failing_prometheus_query_is_unreadable_with_its_error(
    prometheus_api: tuple[str, list[dict[str, Any]]],
) -> None:
    address, replies = prometheus_api
    replies.append({"code": 400, "body": {"status": "error", "errorType": "bad_data",
                                          "error": "parse error at char 3"}})  # fmt: skip
    query = PrometheusQuery(address=address, query="su(", success_condition="result > 0")
    with pytest.raises(Unreadable, match=r"answered HTTP 400: bad_data parse error at char 3$"):
        query_prometheus(query, 5)


# --- a reconcile measures and plans again with what it read --------------------------------------


class MeasuringKube(RecordingKube):
    """A ModelDeployment whose version 4 (green) waits for its second pre-promotion
    measurement, with both colors' pods ready."""

    def selectors(self, namespace: str, name: str) -> tuple[Any, Any]:
        return "blue", "green"

    def auth_token(self, namespace: str, name: str) -> str:
        return {"bikes-turnout-admin": "admin-secret"}[name]


def test_a_reconcile_measures_and_counts_the_measurement_at_once() -> None:
    from turnout_operator.domain.observed import ColorState

    spec = {"model": {"name": "bikes", "version": "4"}, "replicas": 2, "strategy": {
        "blueGreen": {"shadow": {"percent": 10}, "analysis": {"prePromotion": {
            "count": 2, "intervalSeconds": 60, "errorRatioMax": 0.01}}}}}  # fmt: skip
    status = {
        "phase": "Progressing", "activeVersion": "3", "activeColor": "blue",
        "desiredVersion": "4", "modelUri": "models:/bikes/3",
        "history": [{"version": "3", "color": "blue", "promotedAt": "2026-11-23T11:00:00Z",
                     "outcome": "Promoted"}],
        "conditions": [{"type": "ModelResolved", "status": "True", "reason": "Resolved",
                        "lastTransitionTime": "2026-11-23T11:00:00Z", "observedGeneration": 1}],
        "resolvedAt": "2026-11-23T11:59:59Z",
        "rollout": {"version": "4", "color": "green", "modelUri": "models:/bikes/4",
                    "startedAt": "2026-11-23T11:57:00Z", "readyAt": "2026-11-23T11:58:00Z",
                    "smoke": "Passed", "mirroring": True, "prePromotionAnalysis": {
                        "startedAt": "2026-11-23T11:58:00Z", "successful": 1, "measurements": [
                            {"at": "2026-11-23T11:59:00Z", "verdict": "Successful"}]}},
    }  # fmt: skip
    kube = MeasuringKube({**model_deployment(spec), "status": status})
    kube.colors_ = {"blue": ColorState("3", 2, True, 2), "green": ColorState("4", 1, True, 1)}
    pods = FakePods({
        "blue": {"bikes-blue-1": Pod("blue").requests("invocations", 200, 0.002, 300)},
        "green": {"bikes-green-1": Pod().requests("invocations", 200, 0.003, 30)},
    })  # fmt: skip
    r = reconciler(kube)
    r.meter = Meter(pods, timeout=5)
    r.reconcile("ml", "bikes")
    run = kube.body["status"]["rollout"]["prePromotionAnalysis"]
    assert (run["phase"], run["successful"], run["message"]) == (
        "Successful",
        2,
        "2 measurements taken, 2 successful",
    )
    assert run["measurements"][-1]["values"]["previewRequests"] == 30
    assert kube.body["status"]["conditions"][1]["reason"] == "ScalingUp"
    assert ("deployment", "bikes-green") in kube.writes  # scaled up in the same reconcile
    assert [(m, p, path) for m, p, path, *_ in pods.requests] == [
        ("GET", "bikes-blue-1", "/metrics"), ("GET", "bikes-green-1", "/metrics"),
        ("PUT", "bikes-blue-1", "/admin/shadow"),
    ]  # fmt: skip
    assert (
        r.metrics.registry.get_sample_value(
            "turnout_operator_analysis_runs_total",
            {"phase": "pre_promotion", "result": "successful"},
        )
        == 1.0
    )
