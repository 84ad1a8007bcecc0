"""The server's Prometheus metrics, on a registry handed in (never the global one).

Every series carries `model`, `version` and `color`, so a blue-green pair can be compared on one
graph. The label sets a dashboard divides by are created up front, so they read 0 rather than
being absent before the first request.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Inference takes from ~100 µs (one row, fast path) to seconds (big batches on slow models).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
)  # fmt: skip
ENDPOINTS = ("invocations", "v2_infer", "feedback")
CODES = ("200", "400", "401", "404", "408", "413", "415", "500", "503", "504")
BASE_LABELS = ("model", "version", "color")  # on every series, drift's too


class ServingMetrics:
    """Families of one server process, bound to its model, version and color."""

    def __init__(
        self, registry: CollectorRegistry, *, model: str, version: str, color: str
    ) -> None:
        self.registry = registry
        self.labels = {"model": model, "version": version, "color": color}
        self._request_children: dict[tuple[str, int], Any] = {}
        self._duration_children: dict[str, Any] = {}
        base = list(BASE_LABELS)
        self._requests = Counter(
            "turnout_inference_requests",
            "Requests answered, by endpoint and HTTP status code.",
            [*base, "endpoint", "code"],
            registry=registry,
        )
        self._duration = Histogram(
            "turnout_inference_request_duration_seconds",
            "Time from request received to response ready.",
            [*base, "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rows = Counter(
            "turnout_inference_rows", "Rows predicted.", base, registry=registry
        ).labels(**self.labels)
        self.in_flight = Gauge(
            "turnout_inference_in_flight",
            "Requests being processed now.",
            base,
            registry=registry,
        ).labels(**self.labels)
        self._info = Gauge(
            "turnout_model_info",
            "The served model (always 1).",
            [*base, "run_id", "flavor", "uri"],
            registry=registry,
        )
        self.load_seconds = Gauge(
            "turnout_model_load_seconds", "Time to load the model.", base, registry=registry
        ).labels(**self.labels)
        self.download_seconds = Gauge(
            "turnout_artifact_download_seconds",
            "Time to download the model's artifacts (0 when served from the cache).",
            base,
            registry=registry,
        ).labels(**self.labels)
        self.ready = Gauge(
            "turnout_model_ready",
            "1 once the model is loaded and warmed up.",
            base,
            registry=registry,
        ).labels(**self.labels)
        for endpoint in ENDPOINTS:
            self._duration.labels(**self.labels, endpoint=endpoint)
            for code in CODES:
                self._requests.labels(**self.labels, endpoint=endpoint, code=code)

    def model_info(self, *, run_id: str, flavor: str, uri: str) -> None:
        self._info.labels(**self.labels, run_id=run_id, flavor=flavor, uri=uri).set(1)

    def observe_request(self, endpoint: str, code: int, seconds: float) -> None:
        # Bound children are cached: `labels(...)` costs more than the increment itself.
        counter = self._request_children.get((endpoint, code))
        if counter is None:
            counter = self._requests.labels(**self.labels, endpoint=endpoint, code=str(code))
            self._request_children[(endpoint, code)] = counter
        counter.inc()
        histogram = self._duration_children.get(endpoint)
        if histogram is None:
            histogram = self._duration.labels(**self.labels, endpoint=endpoint)
            self._duration_children[endpoint] = histogram
        histogram.observe(seconds)
