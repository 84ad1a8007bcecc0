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
CODES = ("200", "400", "401", "404", "408", "413", "415", "429", "500", "503", "504")
LIMITED_ENDPOINTS = ("invocations", "v2_infer")  # feedback and shadow copies are not limited
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
        limited = Counter(
            "turnout_rate_limited",
            "Inference requests refused (429) because their client spent its rate limit.",
            [*base, "endpoint"],
            registry=registry,
        )
        self.rate_limited = {
            e: limited.labels(**self.labels, endpoint=e) for e in LIMITED_ENDPOINTS
        }
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


# Differences between a preview's and the active's predictions, in the target's own units.
DIFF_BUCKETS = (
    1e-9, 1e-6, 1e-4, 1e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0,
    1e4,
)  # fmt: skip
# What became of a live answer offered for mirroring (the active), or of a copy (the preview).
SHADOW_RESULTS = (
    "mirrored", "dropped_queue_full", "dropped_rate", "dropped_stopped", "failed",  # active
    "compared", "error",  # preview
)  # fmt: skip
# Why the preview could not compare a copy: its own answer's status, or `incomparable`.
SHADOW_ERROR_REASONS = (*CODES, "incomparable")


class ShadowMetrics:
    """Shadow traffic's families: the active counts what became of its copies, the preview what
    it compared and how its predictions differ. Bound to the server's model, version, color."""

    def __init__(self, registry: CollectorRegistry, labels: dict[str, str]) -> None:
        base = list(BASE_LABELS)
        requests = Counter(
            "turnout_shadow_requests",
            "Shadow copies by result: mirrored, dropped_queue_full, dropped_rate, "
            "dropped_stopped, failed (the active); compared, error (the preview).",
            [*base, "result"],
            registry=registry,
        )
        self._results = {r: requests.labels(**labels, result=r) for r in SHADOW_RESULTS}
        errors = Counter(
            "turnout_shadow_errors",
            "Copies the preview could not compare, by its own answer's status or `incomparable`.",
            [*base, "reason"],
            registry=registry,
        )
        self._errors = {r: errors.labels(**labels, reason=r) for r in SHADOW_ERROR_REASONS}
        self._error_family = errors
        self._labels = labels
        self.agreement = Gauge(
            "turnout_shadow_agreement_ratio",
            "Share of the last compared rows on which the preview agrees with the active.",
            base,
            registry=registry,
        ).labels(**labels)
        self.agreement.set(float("nan"))  # no comparison yet: not 0, which would read as alarm
        self.window_rows = Gauge(
            "turnout_shadow_window_rows",
            "Compared rows the agreement ratio stands on.",
            base,
            registry=registry,
        ).labels(**labels)
        self.abs_diff = Histogram(
            "turnout_shadow_abs_diff",
            "Per compared row, |preview - active| (regressors; for probabilities the mean over "
            "the classes).",
            base,
            buckets=DIFF_BUCKETS,
            registry=registry,
        ).labels(**labels)
        latency = Histogram(
            "turnout_shadow_latency_seconds",
            "Scoring time of each compared copy: on the active (as it reported it) and here.",
            [*base, "side"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.latency = {side: latency.labels(**labels, side=side) for side in ("active", "preview")}
        self.counts = dict.fromkeys(SHADOW_RESULTS, 0)  # the same totals, for GET /admin/shadow

    def count(self, result: str, reason: str | None = None) -> None:
        self._results[result].inc()
        self.counts[result] += 1
        if reason is not None:
            child = self._errors.get(reason)
            if child is None:
                child = self._errors[reason] = self._error_family.labels(
                    **self._labels, reason=reason
                )
            child.inc()
