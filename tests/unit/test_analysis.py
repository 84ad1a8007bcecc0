"""Analysis gates: the spec (and its CRD rules), the evaluation of one measurement, the verdict
of a run over Argo Rollouts' interval/count/failureLimit/inconclusiveLimit, and the planner's
pre- and post-promotion steps, case by case with exact values. The invariants over random
histories are in test_planner_properties.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.unit.test_crd import SPEC, STATUS, cel, defaulted, errors, parsed_strictly, pruned
from tests.unit.test_planner import (
    NOW,
    T0,
    condition,
    emitted,
    in_preview,
    observe,
    serving,
    up,
    uri,
    without_events,
)
from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import (
    AnalysisFinished,
    DeployColor,
    Emit,
    Measure,
    PointService,
    RolloutFinished,
    ScaleColor,
    StartShadow,
    StopShadow,
    TagVersion,
)
from turnout_operator.domain.analysis import (
    ColorFigures,
    Evaluation,
    Measurement,
    assess,
    condition_holds,
    evaluate_post,
    evaluate_pre,
    record,
)
from turnout_operator.domain.manifests import Defaults
from turnout_operator.domain.observed import PROMOTE, ROLLBACK, ColorState, Resolved
from turnout_operator.domain.planner import plan
from turnout_operator.domain.spec import (
    BlueGreen,
    ModelDeploymentSpec,
    PostPromotionAnalysis,
    PrePromotionAnalysis,
)
from turnout_operator.domain.status import (
    AnalysisRun,
    HistoryEntry,
    MeasurementRecord,
    ModelDeploymentStatus,
    PostPromotionRun,
    PrePromotionRecord,
    Rollout,
    ScaleDown,
    timestamp,
)
from turnout_operator.domain.validation import Problem, check

MODEL = {"name": "m", "alias": "a"}
BLUE_GREEN = SPEC["properties"]["strategy"]["properties"]["blueGreen"]


def with_blue_green(blue_green: dict[str, Any]) -> dict[str, Any]:
    return {"model": MODEL, "strategy": {"blueGreen": blue_green}}


# --- the spec ---------------------------------------------------------------------------------

GOOD = [
    {"shadow": {}},
    {"shadow": {"percent": 0.5, "maxRequestsPerSecond": 200}},
    {"analysis": {}},
    {"analysis": {"prePromotion": {"errorRatioMax": 0.01}}},
    {
        "shadow": {"percent": 25},
        "scaleDownDelaySeconds": 600,
        "analysis": {
            "prePromotion": {
                "intervalSeconds": 30, "count": 5, "failureLimit": 1, "inconclusiveLimit": 2,
                "minRequests": 50, "shadowAgreementMin": 0.98, "shadowMeanAbsDiffMax": 0.5,
                "errorRatioMax": 0.01, "p99LatencySecondsMax": 0.25, "p99LatencyRatioMax": 1.5,
                "predictionDriftMax": 0.1,
                "provider": {"prometheus": {
                    "address": "http://prometheus.monitoring.svc:9090",
                    "query": "sum(rate(x[5m]))", "successCondition": "result[0] >= 0.95",
                }},
            },
            "postPromotion": {
                "intervalSeconds": 60, "count": 10, "windowSeconds": 600, "errorRatioMax": 0.02,
                "p99LatencyRatioMax": 1.2, "driftMax": 0.2, "qualityMax": 12.5,
                "provider": {"prometheus": {
                    "address": "https://p", "query": "q", "successCondition": "result<1e-3",
                }},
            },
        },
    },
]  # fmt: skip

PRE = ("strategy", "blueGreen", "analysis", "prePromotion")
BAD = [
    ({"shadow": {"percent": 101}}, [("$.strategy.blueGreen.shadow.percent", "maximum")]),
    ({"shadow": {"maxRequestsPerSecond": 0}}, [("$.strategy.blueGreen.shadow.maxRequestsPerSecond", "exclusiveMinimum")]),
    ({"analysis": {"prePromotion": {"errorRatioMax": 1.5}}}, [("$.strategy.blueGreen.analysis.prePromotion.errorRatioMax", "maximum")]),
    ({"analysis": {"prePromotion": {"errorRatioMax": 0, "intervalSeconds": 1}}}, [("$.strategy.blueGreen.analysis.prePromotion.intervalSeconds", "minimum")]),
    ({"analysis": {"prePromotion": {"errorRatioMax": 0, "count": 0}}}, [("$.strategy.blueGreen.analysis.prePromotion.count", "minimum")]),
    ({"analysis": {"postPromotion": {"driftMax": 0, "failureLimit": -1}}}, [("$.strategy.blueGreen.analysis.postPromotion.failureLimit", "minimum")]),
    ({"analysis": {"prePromotion": {"driftMax": 0.1}}}, [("$.strategy.blueGreen.analysis.prePromotion", "additionalProperties")]),
    ({"analysis": {"prePromotion": {"provider": {"prometheus": {"address": "http://p", "query": "q", "successCondition": "result > 0 || true"}}}}}, [("$.strategy.blueGreen.analysis.prePromotion.provider.prometheus.successCondition", "pattern")]),
    ({"analysis": {"prePromotion": {"provider": {"prometheus": {"address": "p:9090", "query": "q", "successCondition": "result > 0"}}}}}, [("$.strategy.blueGreen.analysis.prePromotion.provider.prometheus.address", "pattern")]),
]  # fmt: skip


@pytest.mark.parametrize("blue_green", GOOD)
def test_good_analysis_specs_are_accepted_and_kept_whole(blue_green: dict[str, Any]) -> None:
    spec = with_blue_green(blue_green)
    assert errors(SPEC, spec) == []
    assert pruned(spec, SPEC) == spec
    assert cel_problems(BLUE_GREEN, defaulted(blue_green, BLUE_GREEN)) == []
    parsed_strictly(spec)


@pytest.mark.parametrize(("blue_green", "expected"), BAD)
def test_bad_analysis_specs_are_rejected_by_both(
    blue_green: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    spec = with_blue_green(blue_green)
    assert errors(SPEC, spec) == expected
    with pytest.raises(ValidationError):
        parsed_strictly(spec)


DEFAULTS = Defaults("turnout-serve:1", "http://mlflow:5000")


@pytest.mark.parametrize(
    ("blue_green", "problem"),
    [
        (
            {"analysis": {"prePromotion": {"shadowAgreementMin": 0.9}}},
            Problem("spec.strategy.blueGreen", "Value error, analysis.prePromotion."
                    "shadowAgreementMin compares mirrored requests: it needs shadow (e.g. "
                    "shadow: {percent: 10})"),
        ),
        (
            {"analysis": {"prePromotion": {"errorRatioMax": 0.1, "shadowMeanAbsDiffMax": 2}}},
            Problem("spec.strategy.blueGreen", "Value error, analysis.prePromotion."
                    "shadowMeanAbsDiffMax compares mirrored requests: it needs shadow (e.g. "
                    "shadow: {percent: 10})"),
        ),
        (
            {"analysis": {"postPromotion": {"driftMax": 0.2, "windowSeconds": 31}}},
            Problem("spec.strategy.blueGreen", "Value error, analysis.postPromotion."
                    "windowSeconds (31) may be at most scaleDownDelaySeconds (30): a failing "
                    "analysis rolls back to the old color, which is warm only that long"),
        ),
        (
            {"analysis": {"prePromotion": {"count": 3}}},
            Problem("spec.strategy.blueGreen.analysis.prePromotion", "Value error, an analysis "
                    "needs at least one condition: shadowAgreementMin, shadowMeanAbsDiffMax, "
                    "errorRatioMax, p99LatencySecondsMax, p99LatencyRatioMax, "
                    "predictionDriftMax, provider"),
        ),
        (
            {"analysis": {"postPromotion": {"windowSeconds": 10}}},
            Problem("spec.strategy.blueGreen.analysis.postPromotion", "Value error, an analysis "
                    "needs at least one condition: errorRatioMax, p99LatencyRatioMax, driftMax, "
                    "qualityMax, provider"),
        ),
    ],
)  # fmt: skip
def test_an_analysis_that_cannot_work_is_an_invalid_spec_naming_the_field(
    blue_green: dict[str, Any], problem: Problem
) -> None:
    checked = check("bikes", "ml", with_blue_green(blue_green), DEFAULTS)
    assert checked.problems == (problem,)
    # The CRD's CEL rules refuse the same spec, with the same reason.
    assert len(cel_problems(BLUE_GREEN, defaulted(blue_green, BLUE_GREEN))) == 1


def cel_problems(node: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """The messages of the CEL rules the API server evaluates on `value` (already defaulted):
    every rule of every object present, as x-kubernetes-validations work."""
    found = [
        f"{path}: {rule['message']}"
        for rule in node.get("x-kubernetes-validations", ())
        if not cel(rule, value)
    ]
    if isinstance(value, dict):
        for name, sub in node.get("properties", {}).items():
            if name in value:
                found += cel_problems(sub, value[name], f"{path}.{name}")
    return found


PRE_FIELDS = {
    "shadowAgreementMin": st.floats(0, 1), "shadowMeanAbsDiffMax": st.floats(0, 10),
    "errorRatioMax": st.floats(0, 1), "p99LatencySecondsMax": st.floats(0.001, 10),
    "p99LatencyRatioMax": st.floats(0.1, 10), "predictionDriftMax": st.floats(0, 1),
    "count": st.integers(1, 10),
}  # fmt: skip
POST_FIELDS = {
    "errorRatioMax": st.floats(0, 1), "p99LatencyRatioMax": st.floats(0.1, 10),
    "driftMax": st.floats(0, 1), "qualityMax": st.floats(0, 100),
    "windowSeconds": st.integers(1, 120), "count": st.integers(1, 10),
}  # fmt: skip


def some_of(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


blue_greens = st.fixed_dictionaries(
    {},
    optional={
        "shadow": st.fixed_dictionaries({}, optional={"percent": st.floats(0, 100)}),
        "scaleDownDelaySeconds": st.integers(0, 120),
        "analysis": st.fixed_dictionaries(
            {},
            optional={"prePromotion": some_of(PRE_FIELDS), "postPromotion": some_of(POST_FIELDS)},
        ),
    },
)


@settings(max_examples=400, deadline=None)
@given(blue_greens)
def test_the_crd_rules_refuse_exactly_the_analyses_the_typed_spec_refuses(
    blue_green: dict[str, Any],
) -> None:
    """Over generated blue-green settings: the API server (schema defaults, then CEL) and the
    operator agree on every one; an operator meeting a spec the API server let through (an
    older CRD) would only ever say InvalidSpec."""
    try:
        BlueGreen.model_validate(blue_green)
        valid = True
    except ValidationError:
        valid = False
    assert (cel_problems(BLUE_GREEN, defaulted(blue_green, BLUE_GREEN)) == []) == valid


# --- one measurement against the conditions ---------------------------------------------------

A_TIME = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def pre(**conditions: Any) -> PrePromotionAnalysis:
    return PrePromotionAnalysis.model_validate(conditions)


def post(**conditions: Any) -> PostPromotionAnalysis:
    return PostPromotionAnalysis.model_validate(conditions)


def measured(blue: ColorFigures, green: ColorFigures, **extra: Any) -> Measurement:
    return Measurement("PrePromotion", "4", A_TIME, {"blue": blue, "green": green}, **extra)


ACTIVE = ColorFigures(requests=1000, errors=1, p99_seconds=0.020, prediction_drift=0.05,
                      drift_rows=1000)  # fmt: skip
PREVIEW = ColorFigures(
    requests=100, errors=0, p99_seconds=0.025, prediction_drift=0.08, drift_rows=100,
    shadow_compared=90, shadow_agreement=0.99, shadow_mean_abs_diff=0.4,
)  # fmt: skip
PROMETHEUS = {"prometheus": {"address": "http://p", "query": "q", "successCondition": "result >= 0.95"}}  # fmt: skip
ALL_PRE = dict(
    shadowAgreementMin=0.98, shadowMeanAbsDiffMax=0.5, errorRatioMax=0.01,
    p99LatencySecondsMax=0.05, p99LatencyRatioMax=1.5, predictionDriftMax=0.05,
    provider=PROMETHEUS,
)  # fmt: skip
PRE_VALUES = {
    "previewRequests": 100, "activeRequests": 1000, "shadowCompared": 90,
    "p99LatencySeconds": 0.025, "activeP99LatencySeconds": 0.020, "shadowAgreement": 0.99,
    "shadowMeanAbsDiff": 0.4, "errorRatio": 0.0, "p99LatencyRatio": 1.25,
    "predictionDrift": pytest.approx(0.03),
}  # fmt: skip

PRE_CASES = [
    (
        ALL_PRE, measured(ACTIVE, PREVIEW, result=0.97),
        Evaluation("Successful", {**PRE_VALUES, "result": 0.97},
                   "shadowAgreement 0.99 >= shadowAgreementMin 0.98; shadowMeanAbsDiff 0.4 <= "
                   "shadowMeanAbsDiffMax 0.5; errorRatio 0 <= errorRatioMax 0.01; "
                   "p99LatencySeconds 0.025 <= p99LatencySecondsMax 0.05; p99LatencyRatio 1.25 "
                   "<= p99LatencyRatioMax 1.5; predictionDrift 0.03 <= predictionDriftMax 0.05; "
                   "result 0.97: result >= 0.95"),
    ),
    (
        {"errorRatioMax": 0.01, "p99LatencyRatioMax": 1.1},
        measured(ACTIVE, replace(PREVIEW, errors=3)),
        Evaluation("Failed", {**PRE_VALUES, "errorRatio": 0.03},
                   "errorRatio 0.03 > errorRatioMax 0.01; p99LatencyRatio 1.25 > "
                   "p99LatencyRatioMax 1.1"),
    ),
    (
        {"shadowAgreementMin": 0.995, "errorRatioMax": 0.01},
        measured(ACTIVE, replace(PREVIEW, requests=4)),
        Evaluation("Failed", {**PRE_VALUES, "previewRequests": 4},
                   "shadowAgreement 0.99 < shadowAgreementMin 0.995"),
    ),
    (
        {"shadowAgreementMin": 0.9, "errorRatioMax": 0.01, "minRequests": 100},
        measured(ACTIVE, replace(PREVIEW, shadow_compared=99)),
        Evaluation("Inconclusive", {**PRE_VALUES, "shadowCompared": 99},
                   "shadowAgreement: shadowCompared 99 < minRequests 100"),
    ),
    (
        {"p99LatencyRatioMax": 2, "predictionDriftMax": 0.1},
        measured(replace(ACTIVE, requests=5, prediction_drift=None), PREVIEW),
        Evaluation("Inconclusive",
                   {k: v for k, v in PRE_VALUES.items() if k != "predictionDrift"}
                   | {"activeRequests": 5},
                   "p99LatencyRatio: activeRequests 5 < minRequests 10; predictionDrift: "
                   "prediction drift not exported by both colors (a reference profile with "
                   "predictions is needed)"),
    ),
    (
        # Mirrored copies feed no drift window: a preview drift of an empty window says nothing.
        {"predictionDriftMax": 0.1},
        measured(ACTIVE, replace(PREVIEW, drift_rows=0)),
        Evaluation("Inconclusive", PRE_VALUES,
                   "predictionDrift: previewDriftRows 0 < minRequests 10"),
    ),
    (
        {"provider": PROMETHEUS}, measured(ACTIVE, PREVIEW, result=float("nan")),
        Evaluation("Inconclusive", PRE_VALUES,
                   "result: the Prometheus query returned no number"),
    ),
    (
        {"provider": PROMETHEUS}, measured(ACTIVE, PREVIEW, result=0.9),
        Evaluation("Failed", {**PRE_VALUES, "result": 0.9}, "result 0.9: not result >= 0.95"),
    ),
    (
        {"errorRatioMax": 0.01},
        measured(ACTIVE, PREVIEW, error="green pod model-green-1: connection refused"),
        Evaluation("Error", {}, "green pod model-green-1: connection refused"),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("conditions", "measurement", "expected"), PRE_CASES)
def test_a_pre_promotion_measurement_is_judged_with_its_figures_and_reasons(
    conditions: dict[str, Any], measurement: Measurement, expected: Evaluation
) -> None:
    assert evaluate_pre(pre(**conditions), measurement, "blue", "green") == expected


NEW_ACTIVE = ColorFigures(requests=400, errors=2, p99_seconds=0.030, prediction_drift=0.12,
                          drift_rows=400, quality_error=3.5)  # fmt: skip
POST_VALUES = {"requests": 400, "p99LatencySeconds": 0.030, "baselineP99LatencySeconds": 0.020,
               "errorRatio": 0.005, "p99LatencyRatio": pytest.approx(1.5), "drift": 0.12,
               "quality": 3.5}  # fmt: skip
POST_CASES = [
    (
        {"errorRatioMax": 0.01, "p99LatencyRatioMax": 2, "driftMax": 0.2, "qualityMax": 4},
        NEW_ACTIVE, 0.020,
        Evaluation("Successful", POST_VALUES,
                   "errorRatio 0.005 <= errorRatioMax 0.01; p99LatencyRatio 1.5 <= "
                   "p99LatencyRatioMax 2; drift 0.12 <= driftMax 0.2; quality 3.5 <= qualityMax 4"),
    ),
    (
        {"qualityMax": 3, "driftMax": 0.1}, NEW_ACTIVE, 0.020,
        Evaluation("Failed", POST_VALUES,
                   "drift 0.12 > driftMax 0.1; quality 3.5 > qualityMax 3"),
    ),
    (
        {"driftMax": 0.5}, replace(NEW_ACTIVE, drift_rows=5), 0.020,
        Evaluation("Inconclusive", POST_VALUES, "drift: driftRows 5 < minRequests 10"),
    ),
    (
        {"qualityMax": 3, "p99LatencyRatioMax": 2},
        replace(NEW_ACTIVE, quality_error=None), None,
        Evaluation("Inconclusive",
                   {k: v for k, v in POST_VALUES.items()
                    if k not in ("quality", "baselineP99LatencySeconds", "p99LatencyRatio")},
                   "p99LatencyRatio: no latency of the old color before the switch; quality: "
                   "no labelled feedback in the window"),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("conditions", "figures", "baseline", "expected"), POST_CASES)
def test_a_post_promotion_measurement_is_judged_against_the_old_colors_latency(
    conditions: dict[str, Any], figures: ColorFigures, baseline: float | None,
    expected: Evaluation,
) -> None:  # fmt: skip
    m = Measurement("PostPromotion", "4", A_TIME, {"green": figures})
    assert evaluate_post(post(**conditions), m, "green", baseline) == expected


@pytest.mark.parametrize(
    ("condition", "result", "holds"),
    [("result >= 0.95", 0.95, True), ("result >= 0.95", 0.9499, False),
     ("result[0] < 1e-3", 0.001, False), ("result[0] < 1e-3", 0.0009, True),
     (" result==2 ", 2.0, True), ("result != 2", 2.0, False), ("result > -1.5", -1.0, True),
     ("result <= .5", 0.5, True)],
)  # fmt: skip
def test_success_conditions_compare_the_result_as_argo_writes_them(
    condition: str, result: float, holds: bool
) -> None:
    assert condition_holds(condition, result) is holds


# --- a run's verdict: Argo Rollouts' rules ----------------------------------------------------


def counted(successful: int = 0, failed: int = 0, inconclusive: int = 0, errors: int = 0
            ) -> AnalysisRun:  # fmt: skip
    return AnalysisRun(started_at=timestamp(A_TIME), successful=successful, failed=failed,
                       inconclusive=inconclusive, errors=errors)  # fmt: skip


ASSESS = [
    # counts, (failureLimit, inconclusiveLimit, count), terminating -> phase, why
    (counted(failed=1), (0, 0, 3), False, ("Failed", "1 failed measurements > failureLimit 0")),
    (counted(1, failed=1), (1, 0, 3), False, ("Running", "")),
    (counted(2, failed=1), (1, 0, 3), False, ("Successful", "3 measurements taken, 2 successful")),
    (counted(failed=2, inconclusive=2), (1, 1, 5), False, ("Failed", "2 failed measurements > failureLimit 1")),
    (counted(inconclusive=1), (0, 0, 3), False, ("Inconclusive", "1 inconclusive measurements > inconclusiveLimit 0")),
    (counted(1, inconclusive=1), (0, 1, 2), False, ("Successful", "2 measurements taken, 1 successful")),
    (counted(errors=4), (0, 0, 3), False, ("Running", "")),
    (counted(errors=5), (0, 0, 3), False, ("Error", "the metrics could not be read 5 times in a row")),
    (counted(2, errors=3), (0, 0, 3), False, ("Running", "")),
    (counted(7), (0, 0, None), False, ("Running", "")),
    (counted(7), (0, 0, None), True, ("Successful", "window ended: 7 measurements, 7 successful")),
    (counted(), (0, 0, None), True, ("Successful", "window ended: 0 measurements, 0 successful")),
    (counted(failed=1), (0, 0, None), True, ("Failed", "1 failed measurements > failureLimit 0")),
]  # fmt: skip


@pytest.mark.parametrize(("run", "limits", "terminating", "expected"), ASSESS)
def test_a_runs_phase_follows_argo_rollouts(
    run: AnalysisRun, limits: tuple[int, int, int | None], terminating: bool,
    expected: tuple[str, str],
) -> None:  # fmt: skip
    assert assess(run, *limits, terminating=terminating) == expected


def test_a_run_counts_every_verdict_and_keeps_the_last_ten_measurements() -> None:
    run = counted()
    verdicts = ["Error", "Error", "Successful", *["Inconclusive"] * 3, *["Failed"] * 6]
    for i, verdict in enumerate(verdicts):
        record(run, Evaluation(verdict, {"errorRatio": i / 100}, f"m{i}"),  # type: ignore[arg-type]
               A_TIME + timedelta(seconds=i))  # fmt: skip
    assert (run.successful, run.failed, run.inconclusive, run.errors, run.taken) == (1, 6, 3, 0, 10)
    assert [m.message for m in run.measurements] == [f"m{i}" for i in range(2, 12)]
    assert run.measurements[-1] == MeasurementRecord(
        at="2026-11-23T12:00:11Z", verdict="Failed", values={"errorRatio": 0.11}, message="m11"
    )
    record(run, Evaluation("Error", {}, "down"), A_TIME)
    record(run, Evaluation("Error", {}, "down"), A_TIME)
    assert run.errors == 2


# --- the planner: before the switch -----------------------------------------------------------

STARTED = NOW - timedelta(seconds=60)


def gated(pre_promotion: dict[str, Any] | None = None, shadow: bool = True,
          **blue_green: Any) -> ModelDeploymentSpec:  # fmt: skip
    analysis = {"prePromotion": pre_promotion} if pre_promotion else {}
    return ModelDeploymentSpec.model_validate({
        "model": {"name": "bikes", "alias": "champion"}, "replicas": 2,
        "strategy": {"blueGreen": {**({"shadow": {}} if shadow else {}),
                                   "analysis": analysis, **blue_green}},
    })  # fmt: skip


PRE_GATE = {"count": 2, "intervalSeconds": 60, "errorRatioMax": 0.01}
BOTH_UP = {"blue": up("3"), "green": up("4", 1)}


def smoke_tested(**rollout: Any) -> ModelDeploymentStatus:
    return in_preview(smoke="Passed", ready_at=timestamp(STARTED), **rollout)


def pre_measured(preview: ColorFigures, at: datetime = NOW) -> Measurement:
    return Measurement("PrePromotion", "4", at, {"blue": ACTIVE, "green": preview})


def test_after_the_smoke_test_mirroring_and_the_pre_promotion_analysis_start() -> None:
    result = plan(gated(PRE_GATE), observe(smoke_tested(), colors=BOTH_UP), STARTED)
    assert without_events(result) == [
        StartShadow("blue", "green", 10, 50, 120),
        DeployColor("blue", "3", uri("3"), 2),
    ]
    assert emitted(result) == [("Normal", R.ANALYSIS_STARTED)]
    rollout = result.status.rollout
    assert rollout is not None and rollout.mirroring
    assert rollout.pre_promotion_analysis == AnalysisRun(started_at=timestamp(STARTED))
    assert result.status.phase == "Progressing"
    assert result.status.message == (
        "pre-promotion analysis of version 4: 0/2 measurements (0 successful); next at "
        "2026-11-23T12:00:00Z"
    )
    assert condition(result, R.PROGRESSING) == ("True", R.PRE_PROMOTION_ANALYSIS)
    assert result.requeue_after == 40.0  # the mirroring lease is renewed before the measurement


def analysing(**run: Any) -> ModelDeploymentStatus:
    return smoke_tested(
        mirroring=True,
        pre_promotion_analysis=AnalysisRun(started_at=timestamp(STARTED), **run),
    )


def test_a_due_measurement_is_asked_for_then_counted_in_the_same_reconcile() -> None:
    asked = plan(gated(PRE_GATE), observe(analysing(), colors=BOTH_UP), NOW)
    assert Measure("PrePromotion", "4", ("blue", "green")) in asked.actions
    assert asked.status.rollout.pre_promotion_analysis == AnalysisRun(started_at=timestamp(STARTED))  # type: ignore[union-attr]
    taken = plan(gated(PRE_GATE), observe(asked.status, colors=BOTH_UP,
                                          measurement=pre_measured(PREVIEW)), NOW)  # fmt: skip
    assert not any(isinstance(a, Measure) for a in taken.actions)
    run = taken.status.rollout.pre_promotion_analysis  # type: ignore[union-attr]
    assert (run.phase, run.successful, len(run.measurements)) == ("Running", 1, 1)
    assert run.measurements[0].message == "errorRatio 0 <= errorRatioMax 0.01"
    assert [(a.type, a.reason, a.message) for a in taken.actions if isinstance(a, Emit)] == [
        ("Normal", R.MEASUREMENT_SUCCESSFUL, "pre-promotion measurement of version 4: "
         "Successful: errorRatio 0 <= errorRatioMax 0.01"),
    ]  # fmt: skip
    assert taken.requeue_after == 40.0  # lease renewal (next measurement in 60 s)
    assert taken.status.message.endswith(
        "1/2 measurements (1 successful); next at 2026-11-23T12:01:00Z"
    )


def test_a_successful_analysis_goes_on_to_the_promotion_gate() -> None:
    status = analysing(successful=1, measurements=[
        MeasurementRecord(at=timestamp(STARTED), verdict="Successful")])  # fmt: skip
    result = plan(gated(PRE_GATE), observe(status, colors=BOTH_UP,
                                           measurement=pre_measured(PREVIEW)), NOW)  # fmt: skip
    run = result.status.rollout.pre_promotion_analysis  # type: ignore[union-attr]
    assert (run.phase, run.message) == ("Successful", "2 measurements taken, 2 successful")
    assert AnalysisFinished("PrePromotion", "Successful") in result.actions
    assert DeployColor("green", "4", uri("4"), 2) in result.actions  # scaled up
    assert condition(result, R.PROGRESSING) == ("True", R.SCALING_UP)
    assert ("Normal", R.ANALYSIS_SUCCESSFUL) in emitted(result)


def test_a_failed_measurement_aborts_with_the_figures_and_stops_mirroring() -> None:
    result = plan(gated(PRE_GATE), observe(analysing(), colors=BOTH_UP,
                                           measurement=pre_measured(replace(PREVIEW, errors=7))),
                  NOW)  # fmt: skip
    message = (
        "pre-promotion analysis of version 4 (green) failed: 1 failed measurements > "
        "failureLimit 0; last: errorRatio 0.07 > errorRatioMax 0.01"
    )
    assert result.status.rollout is None
    assert result.status.rejected_versions == ["4"]
    assert result.status.conditions[3].message == message
    assert condition(result, R.DEGRADED) == ("True", R.ANALYSIS_FAILED)
    assert StopShadow("blue") in result.actions
    assert PointService("preview", "blue") in result.actions
    assert TagVersion("4", "rejected") in result.actions
    assert AnalysisFinished("PrePromotion", "Failed") in result.actions
    assert RolloutFinished("aborted", 60.0) in result.actions
    assert not any(isinstance(a, StartShadow) for a in result.actions)
    assert ("Warning", R.ANALYSIS_FAILED, message) in [
        (a.type, a.reason, a.message) for a in result.actions if isinstance(a, Emit)
    ]
    assert result.status.history[0].outcome == "Aborted"
    assert result.status.history[0].reason == message
    kept = result.status.last_pre_promotion_analysis  # the figures outlive the rollout
    assert kept is not None and (kept.version, kept.color, kept.phase) == ("4", "green", "Failed")
    assert kept.measurements[-1].message == "errorRatio 0.07 > errorRatioMax 0.01"
    assert not any(isinstance(a, PointService) and a.role == "active" for a in result.actions)


def test_an_inconclusive_analysis_pauses_until_promote_given_after_it() -> None:
    thin = pre_measured(replace(PREVIEW, requests=3))
    # A promote annotation given while the analysis runs does not accept what comes next.
    paused = plan(gated(PRE_GATE), observe(analysing(), colors=BOTH_UP, measurement=thin,
                                           annotations={PROMOTE: "now"}), NOW)  # fmt: skip
    assert paused.status.phase == "Paused"
    assert condition(paused, R.PROGRESSING) == ("True", R.ANALYSIS_INCONCLUSIVE)
    assert paused.status.message == (
        "pre-promotion analysis of version 4 is inconclusive (errorRatio: previewRequests 3 < "
        "minRequests 10): annotate turnout.dev/promote to promote it, turnout.dev/abort to abort"
    )
    assert paused.status.rollout.promote is False  # type: ignore[union-attr]
    assert AnalysisFinished("PrePromotion", "Inconclusive") in paused.actions
    assert not any(isinstance(a, DeployColor) and a.color == "green" and a.replicas == 2
                   for a in paused.actions)  # fmt: skip
    later = NOW + timedelta(hours=1)
    still = plan(gated(PRE_GATE), observe(paused.status, colors=BOTH_UP), later)
    assert still.status.phase == "Paused"
    assert not any(isinstance(a, Measure) for a in still.actions)  # never measured again
    promoted = plan(gated(PRE_GATE), observe(paused.status, colors=BOTH_UP,
                                             annotations={PROMOTE: "now"}), later)  # fmt: skip
    assert DeployColor("green", "4", uri("4"), 2) in promoted.actions
    assert condition(promoted, R.PROGRESSING) == ("True", R.SCALING_UP)


def test_a_superseded_rollout_stops_mirroring() -> None:
    result = plan(gated(PRE_GATE), observe(analysing(), colors=BOTH_UP,
                                           resolution=Resolved("5", uri("5"))), NOW)  # fmt: skip
    assert StopShadow("blue") in result.actions
    assert result.status.rollout is not None and result.status.rollout.version == "5"
    assert not result.status.rollout.mirroring
    kept = result.status.last_pre_promotion_analysis
    assert kept is not None and (kept.version, kept.phase) == ("4", "Running")


def test_without_shadow_nothing_is_mirrored_and_a_dropped_shadow_stops() -> None:
    result = plan(gated(PRE_GATE, shadow=False), observe(analysing(), colors=BOTH_UP), NOW)
    assert StopShadow("blue") in result.actions
    assert not any(isinstance(a, StartShadow) for a in result.actions)
    assert result.status.rollout.mirroring is False  # type: ignore[union-attr]
    again = plan(gated(PRE_GATE, shadow=False), observe(result.status, colors=BOTH_UP), NOW)
    assert not any(isinstance(a, StartShadow | StopShadow) for a in again.actions)


def test_the_first_deploy_has_no_analysis_to_run() -> None:
    status = ModelDeploymentStatus(desired_version="3", rollout=Rollout(
        version="3", color="blue", model_uri=uri("3"), started_at=T0, smoke="Passed"))  # fmt: skip
    result = plan(gated(PRE_GATE), observe(status, colors={"blue": up("3")}), NOW)
    assert PointService("active", "blue") in result.actions
    assert not any(isinstance(a, StartShadow | Measure) for a in result.actions)


# --- the planner: the switch and after it -----------------------------------------------------

POST_GATE = {"intervalSeconds": 10, "errorRatioMax": 0.01, "p99LatencyRatioMax": 1.5}


def with_post(post_promotion: dict[str, Any], pre_promotion: dict[str, Any] | None = None,
              **blue_green: Any) -> ModelDeploymentSpec:  # fmt: skip
    analysis = {"postPromotion": post_promotion}
    if pre_promotion:
        analysis["prePromotion"] = pre_promotion
    return ModelDeploymentSpec.model_validate({
        "model": {"name": "bikes", "alias": "champion"}, "replicas": 2,
        "strategy": {"blueGreen": {"scaleDownDelaySeconds": 60, "analysis": analysis,
                                   **blue_green}},
    })  # fmt: skip


FULL = {"blue": up("3"), "green": up("4")}


def test_the_switch_starts_the_post_promotion_analysis_with_the_pre_promotion_baseline() -> None:
    last = MeasurementRecord(at=timestamp(NOW - timedelta(seconds=5)), verdict="Successful",
                             values={"activeP99LatencySeconds": 0.02})  # fmt: skip
    status = in_preview(
        smoke="Passed", ready_at=T0, scaled_up_at=T0,
        pre_promotion_analysis=AnalysisRun(started_at=T0, phase="Successful", successful=1,
                                           measurements=[last]),
    )  # fmt: skip
    result = plan(with_post(POST_GATE, PRE_GATE), observe(status, colors=FULL), NOW)
    assert PointService("active", "green") in result.actions
    assert result.status.post_promotion_analysis == PostPromotionRun(
        started_at=timestamp(NOW), version="4", color="green", previous_version="3",
        previous_color="blue", ends_at=timestamp(NOW + timedelta(seconds=60)),
        baseline_p99_seconds=0.02,
    )  # fmt: skip
    assert result.status.last_pre_promotion_analysis == PrePromotionRecord(
        started_at=T0, phase="Successful", successful=1, measurements=[last], version="4",
        color="green",
    )  # fmt: skip
    assert result.status.phase == "Progressing"
    assert condition(result, R.PROGRESSING) == ("True", R.POST_PROMOTION_ANALYSIS)
    assert result.status.message == (
        "post-promotion analysis of version 4: 0 measurements (0 successful) until "
        "2026-11-23T12:01:00Z"
    )
    assert result.requeue_after == 10.0


def test_without_a_pre_promotion_reading_the_old_colors_latency_is_measured_first() -> None:
    status = in_preview(smoke="Passed", ready_at=T0, scaled_up_at=T0)
    asked = plan(with_post(POST_GATE), observe(status, colors=FULL), NOW)
    assert Measure("Baseline", "3", ("blue",)) in asked.actions
    assert not any(isinstance(a, PointService) and a.role == "active" for a in asked.actions)
    assert condition(asked, R.PROGRESSING) == ("True", R.MEASURING_BASELINE)
    baseline = Measurement("Baseline", "3", NOW, {"blue": ColorFigures(requests=500,
                                                                      p99_seconds=0.03)})  # fmt: skip
    switched = plan(with_post(POST_GATE), observe(asked.status, colors=FULL,
                                                  measurement=baseline), NOW)  # fmt: skip
    assert PointService("active", "green") in switched.actions
    run = switched.status.post_promotion_analysis
    assert run is not None and run.baseline_p99_seconds == 0.03


def after_switch(**run: Any) -> ModelDeploymentStatus:
    """Version 4 active in green since a minute, 3 warm in blue for 60 s more (scale-down at
    NOW + 20 s for the tests that need it due)."""
    status = serving("4", "green", scale_downs=[
        ScaleDown(color="blue", version="3", at=timestamp(NOW + timedelta(seconds=20)),
                  after="Promotion")])  # fmt: skip
    status.history.append(
        HistoryEntry(version="3", color="blue", promoted_at=T0, outcome="Promoted")
    )
    status.post_promotion_analysis = PostPromotionRun(
        **{"started_at": T0, "version": "4", "color": "green", "previous_version": "3",
           "previous_color": "blue", "ends_at": timestamp(NOW + timedelta(seconds=20)),
           "baseline_p99_seconds": 0.02, **run},
    )  # fmt: skip
    return status


def post_measured(figures: ColorFigures) -> Measurement:
    return Measurement("PostPromotion", "4", NOW, {"green": figures})


def test_a_failed_post_promotion_analysis_rolls_back_through_the_warm_color() -> None:
    slow = ColorFigures(requests=300, errors=0, p99_seconds=0.05)
    result = plan(with_post(POST_GATE), observe(after_switch(), colors=FULL,
                                                measurement=post_measured(slow)), NOW)  # fmt: skip
    message = (
        "post-promotion analysis of version 4 (green) failed: 1 failed measurements > "
        "failureLimit 0; last: p99LatencyRatio 2.5 > p99LatencyRatioMax 1.5; switched back to "
        "version 3 (blue)"
    )
    assert without_events(result)[:3] == [
        AnalysisFinished("PostPromotion", "Failed"),
        PointService("active", "blue"), PointService("preview", "blue"),
    ]  # fmt: skip
    s = result.status
    assert (s.active_version, s.active_color, s.rejected_versions) == ("3", "blue", ["4"])
    assert condition(result, R.DEGRADED) == ("True", R.ANALYSIS_FAILED)
    assert s.conditions[3].message == message
    assert RolloutFinished("rolled_back", 60.0) in result.actions
    assert TagVersion("4", "rejected") in result.actions
    assert s.post_promotion_analysis is not None and s.post_promotion_analysis.phase == "Failed"
    assert [(h.version, h.outcome, h.reason) for h in s.history[:2]] == [
        ("3", "Promoted", "restored by AnalysisFailed"), ("4", "RolledBack", message),
    ]  # fmt: skip
    assert s.phase == "Degraded"
    again = plan(with_post(POST_GATE), observe(s, colors={"blue": up("3"), "green": up("4")}),
                 NOW + timedelta(seconds=1))  # fmt: skip
    assert not any(isinstance(a, PointService) and a.role == "active" for a in again.actions)
    assert again.status.post_promotion_analysis == s.post_promotion_analysis  # kept, as a record


def test_a_failed_post_promotion_analysis_redeploys_when_nothing_is_warm() -> None:
    status = after_switch()
    status.scale_downs = []
    result = plan(with_post(POST_GATE), observe(status, colors={"green": up("4")},
                  measurement=post_measured(ColorFigures(requests=300, errors=30))), NOW)  # fmt: skip
    assert result.status.rejected_versions == ["4"]
    assert result.status.rollout is not None and result.status.rollout.version == "3"
    assert DeployColor("blue", "3", uri("3"), 1) in result.actions
    assert ("Warning", R.ANALYSIS_FAILED) in emitted(result)


def test_an_inconclusive_post_promotion_verdict_keeps_the_old_color_warm_until_decided() -> None:
    quiet = ColorFigures(requests=2)
    held = plan(with_post(POST_GATE), observe(after_switch(), colors=FULL,
                                              measurement=post_measured(quiet)),
                NOW + timedelta(seconds=30))  # the scale-down was due 10 s ago  # fmt: skip
    assert not any(isinstance(a, ScaleColor) for a in held.actions)
    assert [sd.color for sd in held.status.scale_downs] == ["blue"]
    assert held.status.phase == "Paused"
    assert condition(held, R.PROGRESSING) == ("True", R.ANALYSIS_INCONCLUSIVE)
    assert "version 3 stays warm: annotate turnout.dev/promote" in held.status.message
    assert held.requeue_after is None  # nothing to wait for but a person
    accepted = plan(with_post(POST_GATE), observe(held.status, colors=FULL,
                                                  annotations={PROMOTE: "now"}),
                    NOW + timedelta(seconds=40))  # fmt: skip
    assert ScaleColor("blue", 0) in accepted.actions
    assert TagVersion("3", "retired") in accepted.actions
    assert accepted.status.phase == "Healthy"
    run = accepted.status.post_promotion_analysis
    assert run is not None and (run.phase, run.accepted) == ("Inconclusive", True)


def test_a_rollback_annotation_decides_an_inconclusive_verdict_the_other_way() -> None:
    status = after_switch(phase="Inconclusive", inconclusive=1)
    result = plan(with_post(POST_GATE), observe(status, colors=FULL,
                                                annotations={ROLLBACK: "now"}), NOW)  # fmt: skip
    assert (result.status.active_version, result.status.active_color) == ("3", "blue")
    assert result.status.post_promotion_analysis is None
    assert condition(result, R.DEGRADED) == ("True", R.ROLLED_BACK)


def test_the_window_ending_with_no_failure_is_a_success_and_lets_the_old_color_go() -> None:
    good = ColorFigures(requests=300, errors=0, p99_seconds=0.021)
    status = after_switch(successful=1, measurements=[
        MeasurementRecord(at=timestamp(NOW + timedelta(seconds=10)), verdict="Successful")])  # fmt: skip
    at_end = NOW + timedelta(seconds=20)
    asked = plan(with_post(POST_GATE), observe(status, colors=FULL), at_end)
    assert Measure("PostPromotion", "4", ("green",)) in asked.actions
    assert not any(isinstance(a, ScaleColor) for a in asked.actions)  # held for the last one
    done = plan(with_post(POST_GATE), observe(asked.status, colors=FULL,
                                              measurement=post_measured(good)), at_end)  # fmt: skip
    run = done.status.post_promotion_analysis
    assert run is not None
    assert (run.phase, run.message) == ("Successful", "window ended: 2 measurements, 2 successful")
    assert AnalysisFinished("PostPromotion", "Successful") in done.actions
    assert ScaleColor("blue", 0) in done.actions
    assert done.status.phase == "Healthy"
    assert condition(done, R.PROGRESSING) == ("False", R.ROLLOUT_COMPLETE)


def test_failing_pods_still_roll_back_at_once_while_the_analysis_runs() -> None:
    colors = {"blue": up("3"), "green": ColorState(version="4", replicas=2,
                                                   failure="CrashLoopBackOff")}  # fmt: skip
    result = plan(with_post(POST_GATE), observe(after_switch(), colors=colors), NOW)
    assert (result.status.active_version, result.status.active_color) == ("3", "blue")
    assert condition(result, R.DEGRADED) == ("True", R.AUTO_ROLLED_BACK)


def test_what_the_analysis_writes_to_status_is_accepted_and_kept_whole() -> None:
    """The API server keeps every figure and verdict the planner writes (none is pruned)."""
    slow = ColorFigures(requests=300, errors=0, p99_seconds=0.05)
    rolled_back = plan(with_post(POST_GATE), observe(after_switch(), colors=FULL,
                                                     measurement=post_measured(slow)), NOW)  # fmt: skip
    measuring = plan(gated(PRE_GATE), observe(analysing(), colors=BOTH_UP,
                                              measurement=pre_measured(PREVIEW)), NOW)  # fmt: skip
    for result in (rolled_back, measuring):
        written = result.status.to_api()
        assert errors(STATUS, written) == []
        assert pruned(written, STATUS) == written
    [entry] = measuring.status.to_api()["rollout"]["prePromotionAnalysis"]["measurements"]
    assert entry == {
        "at": "2026-11-23T12:00:00Z", "verdict": "Successful",
        "message": "errorRatio 0 <= errorRatioMax 0.01", "values": PRE_VALUES,
    }  # fmt: skip


def test_a_newer_version_taking_the_old_color_ends_the_post_promotion_analysis() -> None:
    """The old color is what a failed analysis would go back to: once a newer rollout takes
    it, the analysis is superseded (never left to fail with nowhere to go)."""
    result = plan(with_post(POST_GATE), observe(after_switch(), colors=FULL,
                                                resolution=Resolved("5", uri("5"))), NOW)  # fmt: skip
    assert result.status.post_promotion_analysis is None
    assert result.status.rollout is not None and result.status.rollout.color == "blue"
    assert ("Normal", R.SUPERSEDED, "post-promotion analysis of version 4 stopped: version 5 "
            "rolls out into blue") in [(a.type, a.reason, a.message) for a in result.actions
                                       if isinstance(a, Emit)]  # fmt: skip
    assert result.status.phase == "Progressing"
    assert condition(result, R.PROGRESSING) == ("True", R.WAITING_FOR_PREVIEW)
