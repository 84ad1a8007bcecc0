"""Analysis gates: the spec (and its CRD rules), the evaluation of one measurement, the verdict
of a run over Argo Rollouts' interval/count/failureLimit/inconclusiveLimit, and the planner's
pre- and post-promotion steps, case by case with exact values. The invariants over random
histories are in test_planner_properties.py."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.unit.test_crd import SPEC, cel, defaulted, errors, parsed_strictly, pruned
from turnout_operator.domain.manifests import Defaults
from turnout_operator.domain.spec import BlueGreen
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
