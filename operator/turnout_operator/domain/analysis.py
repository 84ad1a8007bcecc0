"""Analysis: what a measurement of the serving pods says, and what a run of them decides.

A `Measurement` is what the metrics adapter read from the pods' own Prometheus metrics over one
interval (counter differences between two scrapes, histograms merged across the pods of a
color). `evaluate_pre` and `evaluate_post` hold it against a gate's conditions: Failed when a
condition fails, Inconclusive when one cannot be judged (too few requests, a figure the pods do
not export), Successful when all hold; Error when the metrics could not be read at all. The
figures and the reasons go with the verdict, for the status and the Events.

`assess` turns a run's counts into its phase with Argo Rollouts' AnalysisRun rules
(`assessMetricStatus`): Failed once failed > failureLimit, Inconclusive once inconclusive >
inconclusiveLimit, Error after more than CONSECUTIVE_ERROR_LIMIT errors in a row, Successful once
`count` measurements were taken (errors do not count) or when the run is terminated still
Running; otherwise Running.

Pure: no clock (times come in), no I/O, no metrics client.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from turnout_operator.domain.actions import Gate
from turnout_operator.domain.spec import (
    SUCCESS_CONDITION,
    Color,
    PostPromotionAnalysis,
    PrePromotionAnalysis,
    PrometheusQuery,
)
from turnout_operator.domain.status import (
    AnalysisPhase,
    AnalysisRun,
    MeasurementRecord,
    MeasurementVerdict,
    parse_time,
    timestamp,
)

CONSECUTIVE_ERROR_LIMIT = 4  # Argo Rollouts' default consecutiveErrorLimit
MEASUREMENT_HISTORY = 10  # Argo Rollouts' DefaultMeasurementHistoryLimit


@dataclass(frozen=True)
class ColorFigures:
    """What the pods of one color served in a measurement's interval. Counts are differences
    between two scrapes; None: the pods do not export the figure, or nothing to compute it
    from (no request, no labelled row)."""

    requests: int = 0  # inference answers (invocations, v2 infer), every code
    errors: int = 0  # of which 5xx
    p99_seconds: float | None = None  # from the merged request-duration histograms
    prediction_drift: float | None = None  # prediction drift PSI against the training reference
    drift_rows: int = 0  # rows in the drift windows that PSI stands on
    quality_error: float | None = None  # live MAE, or 1 - live accuracy
    shadow_compared: int = 0  # mirrored requests compared with the active color's answer
    shadow_agreement: float | None = None  # share of those answered alike
    shadow_mean_abs_diff: float | None = None  # mean |preview - active| per row (regressors)


NO_FIGURES = ColorFigures()


@dataclass(frozen=True)
class Measurement:
    """What the adapter read for a `Measure` action."""

    gate: Gate
    version: str
    at: datetime
    colors: Mapping[Color, ColorFigures] = field(default_factory=dict)
    result: float | None = None  # the Prometheus query's value; None: no result
    error: str | None = None  # the metrics could not be read: why

    def color(self, color: Color) -> ColorFigures:
        return self.colors.get(color, NO_FIGURES)


@dataclass(frozen=True)
class Evaluation:
    verdict: MeasurementVerdict
    values: dict[str, float]
    message: str


class _Judge:
    """Collects each condition's outcome and the figures read, then gives the verdict."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.failed: list[str] = []
        self.unknown: list[str] = []
        self.held: list[str] = []

    def read(self, name: str, value: float | None) -> float | None:
        """Record a figure; a non-finite one counts as not read."""
        if value is None or not math.isfinite(value):
            return None
        self.values[name] = value
        return value

    def check(
        self, name: str, limit_name: str, limit: float | None, value: float | None,
        missing: str | None, at_least: bool = False,
    ) -> None:  # fmt: skip
        """`value` against `limit` (a maximum, or a minimum when `at_least`); `missing` says
        why it cannot be judged."""
        if limit is None:
            return
        if missing is not None or value is None:
            self.unknown.append(f"{name}: {missing or 'not exported'}")
            return
        holds = value >= limit if at_least else value <= limit
        sign = (">=" if holds else "<") if at_least else ("<=" if holds else ">")
        (self.held if holds else self.failed).append(
            f"{name} {_number(value)} {sign} {limit_name} {_number(limit)}"
        )

    def provider(self, query: PrometheusQuery | None, result: float | None) -> None:
        if query is None:
            return
        condition = query.success_condition.strip()
        value = self.read("result", result)
        if value is None:
            self.unknown.append("result: the Prometheus query returned no number")
        elif condition_holds(condition, value):
            self.held.append(f"result {_number(value)}: {condition}")
        else:
            self.failed.append(f"result {_number(value)}: not {condition}")

    def verdict(self) -> Evaluation:
        if self.failed:
            return Evaluation("Failed", self.values, "; ".join(self.failed))
        if self.unknown:
            return Evaluation("Inconclusive", self.values, "; ".join(self.unknown))
        return Evaluation("Successful", self.values, "; ".join(self.held))


def _number(value: float) -> str:
    return f"{value:.4g}"


def _too_few(name: str, count: float, floor: int) -> str | None:
    """Why a measurement says nothing: `count` (summed from counters, so a float) below the
    floor, written as the whole number it is."""
    shown = f"{count:.0f}" if float(count).is_integer() else _number(count)
    return f"{name} {shown} < minRequests {floor}" if count < floor else None


def _no_drift(by: str = "") -> str:
    return f"prediction drift not exported{by} (a reference profile with predictions is needed)"


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def evaluate_pre(
    conditions: PrePromotionAnalysis, m: Measurement, active: Color, preview: Color
) -> Evaluation:
    """The preview (`preview`) measured against the active color, before the switch."""
    if m.error is not None:
        return Evaluation("Error", {}, m.error)
    new, old, floor = m.color(preview), m.color(active), conditions.min_requests
    j = _Judge()
    j.read("previewRequests", new.requests)
    j.read("activeRequests", old.requests)
    j.read("shadowCompared", new.shadow_compared)
    few_preview = _too_few("previewRequests", new.requests, floor)
    few_both = few_preview or _too_few("activeRequests", old.requests, floor)
    few_shadow = _too_few("shadowCompared", new.shadow_compared, floor)
    preview_p99 = j.read("p99LatencySeconds", new.p99_seconds)
    active_p99 = j.read("activeP99LatencySeconds", old.p99_seconds)
    drift = None
    if new.prediction_drift is not None and old.prediction_drift is not None:
        drift = new.prediction_drift - old.prediction_drift
    # Mirrored copies feed no drift window: the preview's needs traffic of its own.
    few_drift = _too_few("previewDriftRows", new.drift_rows, floor) or _too_few(
        "activeDriftRows", old.drift_rows, floor
    )
    c = conditions
    j.check(
        "shadowAgreement",
        "shadowAgreementMin",
        c.shadow_agreement_min,
        j.read("shadowAgreement", new.shadow_agreement),
        few_shadow,
        at_least=True,
    )
    j.check(
        "shadowMeanAbsDiff",
        "shadowMeanAbsDiffMax",
        c.shadow_mean_abs_diff_max,
        j.read("shadowMeanAbsDiff", new.shadow_mean_abs_diff),
        few_shadow,
    )
    j.check(
        "errorRatio",
        "errorRatioMax",
        c.error_ratio_max,
        j.read("errorRatio", _ratio(new.errors, new.requests)),
        few_preview,
    )
    j.check(
        "p99LatencySeconds",
        "p99LatencySecondsMax",
        c.p99_latency_seconds_max,
        preview_p99,
        few_preview,
    )
    ratio = _ratio(preview_p99, active_p99) if preview_p99 is not None and active_p99 else None
    j.check(
        "p99LatencyRatio",
        "p99LatencyRatioMax",
        c.p99_latency_ratio_max,
        j.read("p99LatencyRatio", ratio),
        few_both,
    )
    j.check(
        "predictionDrift",
        "predictionDriftMax",
        c.prediction_drift_max,
        j.read("predictionDrift", drift),
        (_no_drift(" by both colors") if drift is None else None) or few_drift,
    )
    j.provider(c.provider.prometheus if c.provider else None, m.result)  # fmt: skip
    return j.verdict()


def evaluate_post(
    conditions: PostPromotionAnalysis, m: Measurement, color: Color, baseline_p99: float | None
) -> Evaluation:
    """The new active color after the switch; its p99 against the old color's `baseline_p99`
    measured just before."""
    if m.error is not None:
        return Evaluation("Error", {}, m.error)
    now, floor, c = m.color(color), conditions.min_requests, conditions
    j = _Judge()
    j.read("requests", now.requests)
    few = _too_few("requests", now.requests, floor)
    p99 = j.read("p99LatencySeconds", now.p99_seconds)
    j.read("baselineP99LatencySeconds", baseline_p99)
    ratio = _ratio(p99, baseline_p99) if p99 is not None and baseline_p99 else None
    j.check(
        "errorRatio",
        "errorRatioMax",
        c.error_ratio_max,
        j.read("errorRatio", _ratio(now.errors, now.requests)),
        few,
    )
    j.check(
        "p99LatencyRatio",
        "p99LatencyRatioMax",
        c.p99_latency_ratio_max,
        j.read("p99LatencyRatio", ratio),
        few or (None if baseline_p99 else "no latency of the old color before the switch"),
    )
    j.check(
        "drift",
        "driftMax",
        c.drift_max,
        j.read("drift", now.prediction_drift),
        (_no_drift() if now.prediction_drift is None else None)
        or _too_few("driftRows", now.drift_rows, floor),
    )
    j.check(
        "quality",
        "qualityMax",
        c.quality_max,
        j.read("quality", now.quality_error),
        None if now.quality_error is not None else "no labelled feedback in the window",
    )
    j.provider(c.provider.prometheus if c.provider else None, m.result)  # fmt: skip
    return j.verdict()


_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt,
}  # fmt: skip
_CONDITION = re.compile(SUCCESS_CONDITION)


def condition_holds(condition: str, result: float) -> bool:
    """`result OP NUMBER` (the spec's successCondition, already checked) for this result."""
    match = _CONDITION.match(condition)
    if match is None:
        raise ValueError(f"not a success condition: {condition!r}")
    compare = _OPERATORS[match.group(2)]
    return compare(result, float(condition[match.end(2) :].strip()))


def record(run: AnalysisRun, evaluation: Evaluation, at: datetime) -> MeasurementRecord:
    """Count one measurement in `run` and keep it among the last MEASUREMENT_HISTORY."""
    entry = MeasurementRecord(
        at=timestamp(at),
        verdict=evaluation.verdict,
        values=evaluation.values,
        message=evaluation.message,
    )
    if evaluation.verdict == "Successful":
        run.successful += 1
    elif evaluation.verdict == "Failed":
        run.failed += 1
    elif evaluation.verdict == "Inconclusive":
        run.inconclusive += 1
    if evaluation.verdict == "Error":
        run.errors += 1
    else:
        run.errors = 0
    run.measurements = [*run.measurements, entry][-MEASUREMENT_HISTORY:]
    return entry


def assess(
    run: AnalysisRun, failure_limit: int, inconclusive_limit: int, count: int | None,
    terminating: bool,
) -> tuple[AnalysisPhase, str]:  # fmt: skip
    """The run's phase from its counts, and why (Argo Rollouts' assessMetricStatus order)."""
    if run.failed > failure_limit:
        return "Failed", f"{run.failed} failed measurements > failureLimit {failure_limit}"
    if run.inconclusive > inconclusive_limit:
        return "Inconclusive", (
            f"{run.inconclusive} inconclusive measurements > inconclusiveLimit {inconclusive_limit}"
        )
    if run.errors > CONSECUTIVE_ERROR_LIMIT:
        return "Error", f"the metrics could not be read {run.errors} times in a row"
    if count is not None and run.taken >= count:
        return "Successful", f"{run.taken} measurements taken, {run.successful} successful"
    if terminating:
        return "Successful", f"window ended: {run.taken} measurements, {run.successful} successful"
    return "Running", ""


def next_measurement_at(run: AnalysisRun, interval_seconds: int) -> datetime:
    """One interval after the last measurement, or after the start for the first."""
    last = run.measurements[-1].at if run.measurements else run.started_at
    return parse_time(last) + timedelta(seconds=interval_seconds)
