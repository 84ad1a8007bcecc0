"""Live-quality gauges fed by `POST /feedback`.

Regression models export `turnout_live_mae` and `turnout_live_rmse`, classifiers
`turnout_live_accuracy`; a gauge reads NaN until its first label so a dashboard shows a gap, not a
misleading zero. `turnout_feedback_total{result}` counts every label by what became of it.

Beside them, `turnout_training_metric{metric}` holds what the version's training run logged
(`mae`, `rmse`, `r2`, `accuracy`, ...: whatever it logged, read once at start-up), so a dashboard
or an alert compares live quality with the run's own figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from turnout_serving.domain.feedback import FeedbackResult, LiveQuality


class QualityGauges:
    def __init__(self, registry: CollectorRegistry, labels: dict[str, str], task: str) -> None:
        names = list(labels)
        self.task = task
        self._gauges: dict[str, Gauge] = {}
        wanted = ("mae", "rmse") if task == "regression" else ("accuracy",)
        for measure in wanted:
            gauge = Gauge(
                f"turnout_live_{measure}",
                f"Live {measure.upper() if measure != 'accuracy' else measure} over the last "
                "labelled predictions (feedback window).",
                names,
                registry=registry,
            ).labels(**labels)
            gauge.set(math.nan)
            self._gauges[measure] = gauge
        self._rows = Gauge(
            "turnout_live_window_rows",
            "Labelled predictions in the live-quality window.",
            names,
            registry=registry,
        ).labels(**labels)
        results = Counter(
            "turnout_feedback",
            "Labels received, by what became of them.",
            [*names, "result"],
            registry=registry,
        )
        self._results = {r: results.labels(**labels, result=r.value) for r in FeedbackResult}

    def update(self, quality: LiveQuality) -> None:
        self._rows.set(quality.rows)
        for measure, gauge in self._gauges.items():
            value = getattr(quality, measure)
            gauge.set(math.nan if value is None else value)

    def count(self, result: FeedbackResult) -> None:
        self._results[result].inc()


class TrainingGauges:
    """`turnout_training_metric{metric}`: one series per metric of the training run, none
    before they are read (or when the run logged none)."""

    def __init__(self, registry: CollectorRegistry, labels: dict[str, str]) -> None:
        self._labels = labels
        self._family = Gauge(
            "turnout_training_metric",
            "Latest value of each metric the version's training run logged in MLflow.",
            [*labels, "metric"],
            registry=registry,
        )

    def set(self, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            self._family.labels(**self._labels, metric=name).set(value)
