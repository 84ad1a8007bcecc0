"""The serving pods' own metrics, read for analysis: one `ColorFigures` per color and interval.

Each pod's `/metrics` (Prometheus text, parsed with prometheus_client's parser) gives cumulative
counters and histograms; a measurement is the difference from that pod's previous scrape by this
operator (`since`), or everything since the pod started when there was none (a new pod, an
operator restart). A counter that went down means the server restarted: its new value is the
difference, as Prometheus' `rate` reads a reset. The pods of a color are then summed, their
histogram buckets merged, and the p99 read from the merged buckets as `histogram_quantile` does.

What counts, per pod (turnout-serve's families, serving/turnout_serving/metrics.py):
- requests: answers of the inference endpoints (`invocations`, `v2_infer`) plus the mirrored
  copies a preview scored (`turnout_shadow_requests_total{result="compared"|"error"}`);
  errors: the 5xx among them;
- latency: the inference endpoints' request durations, and a preview's scoring time of copies
  (`turnout_shadow_latency_seconds{side="preview"}`);
- shadow: copies compared, the agreement gauge (weighted by its window's rows across pods), the
  mean of `turnout_shadow_abs_diff` over the interval;
- prediction drift: the largest `turnout_prediction_drift_psi` of the color's pods whose drift
  window holds rows (`turnout_drift_window_rows`; an empty window reads PSI 0, which says
  nothing); quality: live MAE, or 1 - live accuracy, weighted by each pod's labelled rows.

`live_reading` / `live_quality` read the same pods for the MLflow record of a version's live
quality (live_quality.py): its MAE, RMSE or accuracy as they stand, over all its pods; `watched`
reads from them what the retraining triggers look at (domain/retraining.py).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from prometheus_client.parser import text_string_to_metric_families

from turnout_operator.domain.analysis import ColorFigures

INFERENCE_ENDPOINTS = frozenset({"invocations", "v2_infer"})
SHADOW_SCORED = frozenset({"compared", "error"})  # what a preview did with a copy
CACHED_PODS = 4096


@dataclass(frozen=True)
class Reading:
    """One pod's figures: cumulative (counters, histogram buckets) or gauges, as scraped; after
    `since`, the counters and buckets of one interval."""

    requests: float = 0.0
    errors: float = 0.0
    latency: Mapping[float, float] = field(default_factory=dict)  # le -> cumulative count
    shadow_compared: float = 0.0
    abs_diff_sum: float = 0.0
    abs_diff_count: float = 0.0
    agreement: float | None = None
    agreement_rows: float = 0.0
    prediction_drift: float | None = None
    drift_rows: float = 0.0
    quality_error: float | None = None
    quality_rows: float = 0.0


def read(text: str) -> Reading:
    """A pod's /metrics text as a Reading (families the pod does not export read as none)."""
    requests = errors = compared = abs_sum = abs_count = agreement_rows = quality_rows = 0.0
    drift_rows = 0.0
    latency: dict[float, float] = {}
    agreement = drift = mae = accuracy = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "turnout_inference_requests_total":
                if labels.get("endpoint") in INFERENCE_ENDPOINTS:
                    requests += value
                    errors += value if labels.get("code", "").startswith("5") else 0.0
            elif name == "turnout_shadow_requests_total" and labels.get("result") in SHADOW_SCORED:
                requests += value
                compared += value if labels["result"] == "compared" else 0.0
            elif name == "turnout_shadow_errors_total" and labels.get("reason", "").startswith("5"):
                errors += value
            elif name in ("turnout_inference_request_duration_seconds_bucket",
                          "turnout_shadow_latency_seconds_bucket") and _timed(labels):  # fmt: skip
                bound = float(labels["le"])
                latency[bound] = latency.get(bound, 0.0) + value
            elif name == "turnout_shadow_abs_diff_sum":
                abs_sum += value
            elif name == "turnout_shadow_abs_diff_count":
                abs_count += value
            elif name == "turnout_shadow_agreement_ratio":
                agreement = _finite(value)
            elif name == "turnout_shadow_window_rows":
                agreement_rows = value
            elif name == "turnout_prediction_drift_psi":
                drift = _finite(value)
            elif name == "turnout_drift_window_rows":
                drift_rows = value
            elif name == "turnout_live_mae":
                mae = _finite(value)
            elif name == "turnout_live_accuracy":
                accuracy = _finite(value)
            elif name == "turnout_live_window_rows":
                quality_rows = value
    quality = mae if mae is not None else (1.0 - accuracy if accuracy is not None else None)
    return Reading(
        requests=requests, errors=errors, latency=latency, shadow_compared=compared,
        abs_diff_sum=abs_sum, abs_diff_count=abs_count, agreement=agreement,
        agreement_rows=agreement_rows, prediction_drift=drift if drift_rows > 0 else None,
        drift_rows=drift_rows,
        quality_error=quality if quality_rows > 0 else None, quality_rows=quality_rows,
    )  # fmt: skip


def _timed(labels: Mapping[str, str]) -> bool:
    return labels.get("endpoint") in INFERENCE_ENDPOINTS or labels.get("side") == "preview"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def since(previous: Reading | None, now: Reading) -> Reading:
    """The interval from `previous` to `now` of one pod: counters and buckets differenced (a
    decrease is a restart: the new value is the interval), gauges as read now."""
    if previous is None:
        return now
    counters = ("requests", "errors", "shadow_compared", "abs_diff_sum", "abs_diff_count")
    if any(getattr(now, name) < getattr(previous, name) for name in counters) or any(
        count < previous.latency.get(bound, 0.0) for bound, count in now.latency.items()
    ):
        return now  # the server restarted between the scrapes
    return replace(
        now,
        **{name: getattr(now, name) - getattr(previous, name) for name in counters},
        latency={b: c - previous.latency.get(b, 0.0) for b, c in now.latency.items()},
    )


def quantile(q: float, latency: Mapping[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative buckets (le -> count): linear inside the
    bucket holding the rank; in the +Inf bucket, the largest finite bound. None: no count."""
    bounds = sorted(latency)
    if not bounds or latency[bounds[-1]] <= 0:
        return None
    rank = q * latency[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = latency[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def figures(readings: Sequence[Reading]) -> ColorFigures:
    """One color's figures from its pods' intervals."""
    latency: dict[float, float] = {}
    for reading in readings:
        for bound, count in reading.latency.items():
            latency[bound] = latency.get(bound, 0.0) + count
    abs_count = sum(r.abs_diff_count for r in readings)
    drifts = [r.prediction_drift for r in readings if r.prediction_drift is not None]
    return ColorFigures(
        requests=round(sum(r.requests for r in readings)),
        errors=round(sum(r.errors for r in readings)),
        p99_seconds=quantile(0.99, latency),
        prediction_drift=max(drifts) if drifts else None,
        drift_rows=round(sum(r.drift_rows for r in readings)),
        quality_error=_weighted((r.quality_error, r.quality_rows) for r in readings),
        shadow_compared=round(sum(r.shadow_compared for r in readings)),
        shadow_agreement=_weighted((r.agreement, r.agreement_rows) for r in readings),
        shadow_mean_abs_diff=sum(r.abs_diff_sum for r in readings) / abs_count
        if abs_count > 0
        else None,
    )


def _weighted(pairs: Iterable[tuple[float | None, float]]) -> float | None:
    known = [(value, weight) for value, weight in pairs if value is not None and weight > 0]
    total = sum(weight for _, weight in known)
    return sum(value * weight for value, weight in known) / total if total > 0 else None


LIVE_GAUGES = {"turnout_live_mae": "mae", "turnout_live_rmse": "rmse",
               "turnout_live_accuracy": "accuracy"}  # fmt: skip


@dataclass(frozen=True)
class LiveQuality:
    """A version's live quality over its pods' feedback windows: MAE, RMSE (regressors) or
    accuracy (classifiers), and the labelled predictions they stand on."""

    rows: int = 0
    mae: float | None = None
    rmse: float | None = None
    accuracy: float | None = None


def live_reading(text: str, version: str) -> LiveQuality:
    """One pod's live-quality gauges for `version` (a pod serving another reads as none)."""
    found: dict[str, float] = {}
    rows = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("version") != version:
                continue
            if sample.name in LIVE_GAUGES and math.isfinite(sample.value):
                found[LIVE_GAUGES[sample.name]] = sample.value
            elif sample.name == "turnout_live_window_rows":
                rows = sample.value
    return LiveQuality(rows=round(rows), **found) if rows > 0 else LiveQuality()


def live_quality(readings: Sequence[LiveQuality]) -> LiveQuality:
    """The pods' figures as one window: each pod weighted by its labelled rows (RMSE through
    the mean of squares)."""
    rows = sum(r.rows for r in readings)
    mae = _weighted((r.mae, r.rows) for r in readings)
    squares = _weighted((None if r.rmse is None else r.rmse**2, r.rows) for r in readings)
    accuracy = _weighted((r.accuracy, r.rows) for r in readings)
    return LiveQuality(rows, mae, None if squares is None else math.sqrt(squares), accuracy)


class Scrapes:
    """Each pod's last reading, so the next measurement is the interval since (bounded: the
    least recently read pods are forgotten first). Shared by the reconcile threads."""

    def __init__(self, limit: int = CACHED_PODS) -> None:
        self._last: OrderedDict[tuple[str, str], Reading] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def interval(self, namespace: str, pod: str, now: Reading) -> Reading:
        key = (namespace, pod)
        with self._lock:
            previous = self._last.pop(key, None)
            self._last[key] = now
            while len(self._last) > self._limit:
                self._last.popitem(last=False)
        return since(previous, now)


@dataclass(frozen=True)
class Watched:
    """What the retraining triggers see of a version's pods: its prediction drift (the largest
    PSI of a pod whose window holds rows) and the rows behind it, its live error (MAE, or
    1 - accuracy) and labelled rows, and its training run's own error (`mae`, or
    1 - `accuracy`, from `turnout_training_metric`)."""

    version: str
    drift_psi: float | None = None
    drift_rows: int = 0
    quality_error: float | None = None
    quality_rows: int = 0
    training_error: float | None = None


def watched(texts: Sequence[str], version: str) -> Watched:
    readings = [read(text) for text in texts]
    color = figures(readings)
    trained = [training_metrics(text) for text in texts]
    errors = [_error(metrics) for metrics in trained if _error(metrics) is not None]
    return Watched(
        version, color.prediction_drift, color.drift_rows, color.quality_error,
        round(sum(r.quality_rows for r in readings)), errors[0] if errors else None,
    )  # fmt: skip


def training_metrics(text: str) -> dict[str, float]:
    """`turnout_training_metric{metric}` of one pod: what its version's run logged."""
    return {
        sample.labels["metric"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "turnout_training_metric" and "metric" in sample.labels
        and math.isfinite(sample.value)
    }  # fmt: skip


def _error(metrics: Mapping[str, float]) -> float | None:
    if "mae" in metrics:
        return metrics["mae"]
    return 1.0 - metrics["accuracy"] if "accuracy" in metrics else None
