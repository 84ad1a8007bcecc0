"""Drift as Prometheus metrics: a custom collector over one live window and its reference profile.

A collector rather than Gauges set from the request path: the drift statistics are computed from
the window when Prometheus scrapes, not on every request, and at most once per ``min_interval``
seconds however many scrapers there are (the report is cached). Requests only queue their rows
(``observe``); the queue is binned in one vectorised pass per column when it holds
``flush_rows`` rows or before a report, so a one-row request costs an append, not ten
`searchsorted` calls. Binning a queue gives exactly the counts of binning each batch in turn.
Queue, window and report share one lock, since scrapes and requests come from different threads.

Every series exists from the first scrape: before any traffic the p-values read 1, the
statistics, PSI and counters 0 (see ``drift_stats`` on the empty window). The prediction series
exist only when the profile has predictions. Every family carries the model, version and color
labels given by the caller, who registers the collector in an explicit ``CollectorRegistry``.

Drift is an observer of the serving path and must never take it down: a failure while binning or
computing turns drift off (logged once, reported through ``on_failure``, the drift series
withdrawn), and the request or scrape that met it goes on as if drift were off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from turnout_serving.domain.drift_profile import ReferenceProfile
from turnout_serving.domain.drift_stats import DriftReport, compute
from turnout_serving.domain.drift_window import DriftWindow
from turnout_serving.metrics import BASE_LABELS

log = logging.getLogger("turnout_serving.drift")


class DriftCollector(Collector):
    def __init__(
        self,
        window: DriftWindow,
        profile: ReferenceProfile,
        labels: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = 1.0,
        alpha: float = 0.05,
        flush_rows: int = 256,
        on_failure: Callable[[str], None] = lambda reason: None,
    ) -> None:
        missing = set(BASE_LABELS) - set(labels)
        if missing:
            raise ValueError(f"drift metrics need the labels {sorted(missing)}")
        self._window = window
        self._profile = profile
        self._label_values = [str(labels[name]) for name in BASE_LABELS]
        self._clock = clock
        self._min_interval = min_interval
        self._alpha = alpha
        self._lock = threading.Lock()
        self._report: DriftReport | None = None
        self._computed_at = 0.0
        self._flush_rows = flush_rows
        self._queue: list[tuple[Mapping[str, np.ndarray], np.ndarray | None]] = []
        self._queued_rows = 0
        self._on_failure = on_failure
        self.failure: str | None = None

    def observe(
        self, columns: Mapping[str, np.ndarray], predictions: np.ndarray | None = None
    ) -> None:
        """Queue one batch of traffic for the window (thread-safe)."""
        with self._lock:
            if self.failure is not None:
                return
            try:
                self._queue.append((columns, predictions))
                self._queued_rows += len(next(iter(columns.values()))) if columns else 0
                if self._queued_rows >= self._flush_rows:
                    self._flush()
            except Exception as exc:
                self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        """Turn drift off for good: the window may hold half a batch, so no report is trusted."""
        self.failure = f"{type(exc).__name__}: {exc}"[:300]
        self._queue, self._queued_rows, self._report = [], 0, None
        log.error("drift is off from now on: binning or computing failed", exc_info=exc)
        self._on_failure(self.failure)

    def _flush(self) -> None:
        """Bin the queue: consecutive batches with the same columns go in as one batch."""
        queue, self._queue, self._queued_rows = self._queue, [], 0
        start = 0
        while start < len(queue):
            names, has_predictions = queue[start][0].keys(), queue[start][1] is not None
            stop = start + 1
            while (
                stop < len(queue)
                and queue[stop][0].keys() == names
                and (queue[stop][1] is not None) == has_predictions
            ):
                stop += 1
            group = queue[start:stop]
            columns = {name: np.concatenate([c[name] for c, _ in group]) for name in names}
            predictions = (
                np.concatenate([p for _, p in group if p is not None]) if has_predictions else None
            )
            self._window.observe(columns, predictions)
            start = stop

    def report(self) -> DriftReport:
        """The drift report, recomputed only if the cached one is ``min_interval`` old."""
        with self._lock:
            return self._fresh_report()

    def describe(self) -> Iterator[Metric]:
        """The families without samples, so registering checks names without computing."""
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self.failure is not None:
                return
            try:
                report = self._fresh_report()
            except Exception as exc:
                self._fail(exc)
                return
            missing = dict(self._window.missing_total)
            unseen = dict(self._window.unseen_total)
        families = self._families()
        base = self._label_values
        for result in report.features:
            families["p_value"].add_metric([*base, result.name, result.test], result.p_value)
            families["statistic"].add_metric([*base, result.name, result.test], result.statistic)
            families["psi"].add_metric([*base, result.name], result.psi)
            families["missing"].add_metric([*base, result.name], missing[result.name])
            families["unseen"].add_metric([*base, result.name], unseen[result.name])
        if report.prediction is not None:
            families["prediction_p_value"].add_metric(base, report.prediction.p_value)
            families["prediction_psi"].add_metric(base, report.prediction.psi)
        families["detected"].add_metric(base, 1.0 if report.detected else 0.0)
        families["window_rows"].add_metric(base, report.window_rows)
        families["reference"].add_metric(
            [*base, self._profile.digest, str(self._profile.rows)], 1.0
        )
        yield from families.values()

    def _fresh_report(self) -> DriftReport:
        if self._queue:
            self._flush()
        now = self._clock()
        if self._report is None or now - self._computed_at >= self._min_interval:
            self._report = compute(self._window, self._profile, alpha=self._alpha)
            self._computed_at = now
        return self._report

    def _families(self) -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
        base = list(BASE_LABELS)
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "p_value": GaugeMetricFamily(
                "turnout_feature_drift_p_value",
                "p-value of the feature's two-sample drift test, window vs reference",
                labels=[*base, "feature", "test"],
            ),
            "statistic": GaugeMetricFamily(
                "turnout_feature_drift_statistic",
                "Statistic of the drift test: KS distance D, or Pearson chi-squared",
                labels=[*base, "feature", "test"],
            ),
            "psi": GaugeMetricFamily(
                "turnout_feature_drift_psi",
                "Population stability index (effect size; not used for the alert)",
                labels=[*base, "feature"],
            ),
            "missing": CounterMetricFamily(
                "turnout_feature_missing_values",
                "Missing values seen in the feature since start",
                labels=[*base, "feature"],
            ),
            "unseen": CounterMetricFamily(
                "turnout_feature_unseen_category",
                "Values outside the reference vocabulary (categorical) or not numbers (numeric)",
                labels=[*base, "feature"],
            ),
            "detected": GaugeMetricFamily(
                "turnout_drift_detected",
                "1 if any drift p-value is below alpha / number of tests (Bonferroni)",
                labels=base,
            ),
            "window_rows": GaugeMetricFamily(
                "turnout_drift_window_rows", "Rows in the live drift window", labels=base
            ),
            "reference": GaugeMetricFamily(
                "turnout_drift_reference_info",
                "The reference profile drift is measured against",
                labels=[*base, "reference_digest", "reference_rows"],
            ),
        }
        if self._profile.prediction is not None:
            families["prediction_p_value"] = GaugeMetricFamily(
                "turnout_prediction_drift_p_value",
                "p-value of the prediction drift test, window vs reference",
                labels=base,
            )
            families["prediction_psi"] = GaugeMetricFamily(
                "turnout_prediction_drift_psi", "PSI of the predictions", labels=base
            )
        return families


def wire_drift(
    enabled: bool,
    reference: dict[str, Any] | None,
    run_id: str,
    window_rows: int,
    labels: Mapping[str, str],
    on_failure: Callable[[str], None],
) -> tuple[DriftCollector | None, str]:
    """The collector for a model's reference profile, and the drift status `/version` shows.

    Never raises: a profile that cannot be read leaves the model served without drift, and says
    why in the status."""
    if not enabled:
        return None, "off: disabled by settings"
    if reference is None:
        return None, (
            f"off: no reference profile logged for run {run_id or '(none)'}; "
            "call turnout_serving.reference.log_reference(X_train) when training"
        )
    try:
        profile = ReferenceProfile.from_dict(reference)
        window = DriftWindow(profile, window_rows=window_rows)
        collector = DriftCollector(window, profile, labels=labels, on_failure=on_failure)
    except Exception as exc:
        log.exception("the reference profile of run %s cannot be used", run_id)
        return None, f"off: the reference profile cannot be used: {type(exc).__name__}: {exc}"
    return collector, f"on: reference {profile.digest}"
