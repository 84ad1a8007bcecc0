"""Every query of every shipped dashboard and every shipped rule, evaluated by a real Prometheus
scraping a real turnout-serve pair and the real operator (the scenario: conftest.py).

A query must parse and return at least one series: a typo in a metric or label name, or a
label the exporters do not set, returns nothing and fails here. Grafana's variables are replaced
by the values of the scenario (a multi-value regex for the model, as Grafana renders "All");
comparisons are made non-filtering (`bool`, see promql.py) so an alert that rightly does not
fire still proves its series exist. Then the alerts Prometheus itself computes from the rules
file are exactly those the scenario calls for, and the operator's going away raises its own.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import wait_until
from tests.observability.conftest import (
    DRIFT_WINDOW,
    GATED,
    IRIS_REQUESTS,
    MD,
    NAMESPACE,
    Observed,
)
from tests.observability.promql import (
    Query,
    annotation_labels,
    dashboards,
    non_filtering,
    panel_queries,
    rules,
    substitute,
    variable_queries,
)
from turnout_serving.metrics import DIFF_BUCKETS

pytestmark = pytest.mark.slow

# Grafana's rendering of the variables for the scenario: "All" models and ModelDeployments, the
# version with live traffic (version 2 only compares mirrored copies: the shadow test adds it).
VALUES = {
    "namespace": NAMESPACE, "model": "(Diabetes|Iris)", "version": "1",
    "modeldeployment": f"({MD}|{GATED})",
    "__rate_interval": "1m", "__interval": "15s", "__range": "1h",
}  # fmt: skip
QUERIES = [query for name, board in dashboards().items() for query in panel_queries(name, board)]


@pytest.mark.parametrize("query", QUERIES, ids=[q.where for q in QUERIES])
def test_every_dashboard_query_returns_series(observed: Observed, query: Query) -> None:
    expr = non_filtering(substitute(query.expr, VALUES))
    series = observed.query(expr)
    assert series, f"no series for {query.where}:\n{expr}"
    for each in series:  # a typo in a `by (...)` still returns series, without the label
        assert query.labels <= set(each["metric"]), f"{query.where} shows {query.labels}: {each}"


def test_dashboard_variables_list_what_is_served(observed: Observed) -> None:
    found = {}
    for name, board in dashboards().items():
        for variable, (selector, label) in variable_queries(board).items():
            expr = f"count by ({label}) ({substitute(selector, VALUES)})"
            found[(name, variable)] = set(observed.values(expr, label))
    assert found == {
        ("turnout-serving.json", "namespace"): {NAMESPACE},
        ("turnout-serving.json", "model"): {"Diabetes", "Iris"},
        ("turnout-serving.json", "version"): {"1", "2"},
        ("turnout-rollouts.json", "namespace"): {NAMESPACE},
        ("turnout-rollouts.json", "modeldeployment"): {MD, GATED},
    }


def panel(board: str, title: str, **values: str) -> list[str]:
    """The expressions of one panel, variables substituted (VALUES, changed by `values`)."""
    found = [p for p in dashboards()[board]["panels"] if p["title"] == title]
    assert len(found) == 1, f"{board} has no single panel {title!r}"
    return [substitute(t["expr"], {**VALUES, **values}) for t in found[0]["targets"]]


def test_drift_panels_show_the_shift_against_the_bonferroni_bound(observed: Observed) -> None:
    p_values, bound = panel("turnout-serving.json", "Feature drift p-values")
    bounds = observed.values(bound, "model")
    assert bounds == {"Diabetes": pytest.approx(0.05 / 11)}  # 10 features + the prediction
    features = observed.values(p_values, "feature")
    assert len(features) == 10 and features["bmi"] < bounds["Diabetes"]
    (detected,) = panel("turnout-serving.json", "Drift detected")
    assert observed.values(detected, "model") == {"Diabetes": 1.0}
    (rows,) = panel("turnout-serving.json", "Rows in the drift window")
    assert observed.values(rows, "model") == {"Diabetes": float(DRIFT_WINDOW)}


def test_quality_panels_and_recording_rules_match_what_was_served(observed: Observed) -> None:
    mae, rmse = panel("turnout-serving.json", "Live MAE and RMSE")
    assert observed.values(mae, "model") == {"Diabetes": pytest.approx(observed.live_mae)}
    assert math.isfinite(observed.values(rmse, "model")["Diabetes"])
    (accuracy,) = panel("turnout-serving.json", "Live accuracy")
    assert observed.values(accuracy, "model") == {"Iris": pytest.approx(observed.live_accuracy)}
    # The recording rules keep the labels an alert groups by, and the values.
    recorded = observed.query("turnout:live_mae:avg")
    assert [s["metric"] for s in recorded] == [{
        "__name__": "turnout:live_mae:avg", "namespace": NAMESPACE, "model": "Diabetes",
        "version": "1", "color": "blue",
    }]  # fmt: skip
    assert float(recorded[0]["value"][1]) == pytest.approx(observed.live_mae)
    assert observed.values("turnout:live_accuracy:avg", "model") == {
        "Iris": pytest.approx(observed.live_accuracy)
    }


def logged(observed: Observed, model: str, metric: str) -> float:
    """What the training run of version 1 of `model` logged, as MLflow's client reads it."""
    client = MlflowClient(observed.cluster.registry.uri)
    run_id = client.get_model_version(model, "1").run_id
    return float(client.get_run(run_id).data.metrics[metric])


def test_training_panels_put_the_runs_figures_beside_the_live_ones(observed: Observed) -> None:
    live, trained = panel("turnout-serving.json", "Live MAE against training")
    assert observed.values(live, "model") == {"Diabetes": pytest.approx(observed.live_mae)}
    assert observed.values(trained, "model") == {"Diabetes": logged(observed, "Diabetes", "mae")}
    live, trained = panel("turnout-serving.json", "Live accuracy against training")
    assert observed.values(live, "model") == {"Iris": pytest.approx(observed.live_accuracy)}
    assert observed.values(trained, "model") == {"Iris": logged(observed, "Iris", "accuracy")}
    # Both within the alert's factors (so TurnoutLiveQualityBelowTraining stays silent): the
    # shifted traffic's live MAE (34.7) is 1.246 times the run's in-sample `mae` (27.8), Iris'
    # live accuracy on rows it was trained on is its training accuracy's.
    assert observed.live_mae == pytest.approx(1.246 * logged(observed, "Diabetes", "mae"), rel=1e-3)
    assert observed.live_accuracy >= 0.95 * logged(observed, "Iris", "accuracy")


def test_payload_log_panel_counts_every_logged_request(observed: Observed) -> None:
    """Iris logs every request's payload: each one is an entry sent, none lost."""
    (by_result,) = panel("turnout-serving.json", "Payload log entries per second, by result")
    assert set(observed.values(by_result, "result")) == {"sent", "failed", "dropped"}
    counted = 'sum by (result) (turnout_payload_log_total{model="Iris"})'
    assert observed.values(counted, "result") == {"sent": IRIS_REQUESTS, "failed": 0.0,
                                                  "dropped": 0.0}  # fmt: skip


def test_rollout_panels_show_the_promotion_and_the_abort(observed: Observed) -> None:
    (table,) = panel("turnout-rollouts.json", "ModelDeployments")
    row = {"namespace": NAMESPACE, "model": "Diabetes", "version": "1", "color": "blue"}
    assert sorted((s["metric"] for s in observed.query(table)),
                  key=lambda m: m["modeldeployment"]) == [
        {**row, "modeldeployment": MD, "phase": "Degraded"},
        {**row, "modeldeployment": GATED, "phase": "Progressing"},
    ]  # fmt: skip
    (active,) = panel("turnout-rollouts.json", "Active version and color")
    assert observed.values(active, "modeldeployment") == {MD: 1.0, GATED: 1.0}  # 1: blue
    (outcomes,) = panel("turnout-rollouts.json", "Rollouts in the time range")
    counted = {k: round(v) for k, v in observed.values(outcomes, "outcome").items()}
    assert counted == {"promoted": 2, "aborted": 1, "superseded": 0, "rolled_back": 0}
    p50, _ = panel("turnout-rollouts.json", "Rollout duration")
    # First deploys and an abort, all under 5 s: the middle of the first bucket; others NaN.
    durations = observed.values(p50, "outcome")
    assert {k: v for k, v in durations.items() if not math.isnan(v)} == {
        "promoted": 2.5, "aborted": 2.5,
    }  # fmt: skip


def test_analysis_panels_show_what_each_gate_waits_on(observed: Observed) -> None:
    (steps,) = panel("turnout-rollouts.json", "Step now")
    progressing = {
        name: next(c["reason"] for c in observed.cluster.status(name)["conditions"]
                   if c["type"] == "Progressing")
        for name in (MD, GATED)
    }  # fmt: skip
    assert progressing[GATED] == "PrePromotionAnalysis"
    assert {s["metric"]["modeldeployment"]: s["metric"]["step"]
            for s in observed.query(steps)} == progressing  # fmt: skip
    # One running analysis (obs-bikes' rollout ended and took its analysis-free status with it),
    # no measurement yet: one row, 0 of each verdict.
    run = {"namespace": NAMESPACE, "modeldeployment": GATED, "gate": "pre_promotion",
           "version": "2", "phase": "Running"}  # fmt: skip
    for verdict in panel("turnout-rollouts.json", "Analyses now"):
        assert [(s["metric"], s["value"][1]) for s in observed.query(verdict)] == [(run, "0")]
    (ended,) = panel("turnout-rollouts.json", "Analyses in the time range")
    counted = {(s["metric"]["phase"], s["metric"]["result"]): float(s["value"][1])
               for s in observed.query(ended)}  # fmt: skip
    assert counted == {(gate, result): 0.0 for gate in ("pre_promotion", "post_promotion")
                       for result in ("successful", "failed", "inconclusive", "error")}  # fmt: skip


def quantile(q: float, values: np.ndarray, bounds: tuple[float, ...]) -> float:
    """Prometheus' histogram_quantile of `values` observed into buckets with these upper bounds:
    linear within the bucket the rank falls in (the first bucket starts at 0)."""
    counts = [int(np.sum(values <= bound)) for bound in bounds]
    rank = q * len(values)
    at = next(i for i, count in enumerate(counts) if count >= rank)
    lower, below = (bounds[at - 1], counts[at - 1]) if at else (0.0, 0)
    return lower + (bounds[at] - lower) * (rank - below) / (counts[at] - below)


def test_shadow_panels_show_the_copies_and_how_the_preview_differs(observed: Observed) -> None:
    """Blue (version 1) mirrored its answered requests to green (version 2). Rates over the
    whole scenario (an hour's range): their ratios are exact."""
    both, whole = {"version": "(1|2)"}, {"__rate_interval": "1h"}
    (mirrored,) = panel("turnout-serving.json", "Mirrored copies per second, by result", **both,
                        **whole)  # fmt: skip
    active = {s["metric"]["result"]: float(s["value"][1]) for s in observed.query(mirrored)
              if s["metric"]["color"] == "blue"}  # fmt: skip
    assert set(active) == {"mirrored", "dropped_queue_full", "dropped_rate", "dropped_stopped",
                           "failed"}  # fmt: skip
    assert active["mirrored"] > 0 and {v for k, v in active.items() if k != "mirrored"} == {0.0}
    compared, errors = panel("turnout-serving.json", "Compared copies per second", **both, **whole)
    preview = {(s["metric"]["version"], s["metric"]["result"]): float(s["value"][1])
               for s in observed.query(compared)}  # fmt: skip
    assert preview[("2", "error")] == 0.0 and preview[("2", "compared")] > 0
    assert preview[("1", "compared")] == 0.0  # the active compares nothing
    assert {float(s["value"][1]) for s in observed.query(errors)} == {0.0}
    (agreement,) = panel("turnout-serving.json", "Agreement with the active color", **both)
    found = {(s["metric"]["pod"], s["metric"]["version"]): float(s["value"][1])
             for s in observed.query(agreement)}  # fmt: skip
    assert found[("diabetes-green-0", "2")] == pytest.approx(observed.shadow_agreement)
    assert math.isnan(found[("diabetes-blue-0", "1")])  # nothing compared: no ratio, not 0
    (rows,) = panel("turnout-serving.json", "Rows behind the agreement ratio", version="2")
    assert observed.values(rows, "pod") == {"diabetes-green-0": len(observed.shadow_diffs)}
    p50, p99 = panel("turnout-serving.json", "Prediction difference p50 / p99", version="2",
                     **whole)  # fmt: skip
    for expr, q in ((p50, 0.5), (p99, 0.99)):
        assert observed.values(expr, "version") == {
            "2": pytest.approx(quantile(q, observed.shadow_diffs, DIFF_BUCKETS))
        }
    p50, p99 = panel("turnout-serving.json", "Scoring time: preview vs active", version="2",
                     **whole)  # fmt: skip
    for expr in (p50, p99):
        sides = observed.values(expr, "side")
        assert set(sides) == {"active", "preview"} and all(v > 0 for v in sides.values())


@pytest.mark.parametrize("rule", rules(), ids=[r.get("alert") or r["record"] for r in rules()])
def test_every_rule_expression_returns_series(observed: Observed, rule: dict[str, Any]) -> None:
    expr = non_filtering(rule["expr"])
    series = observed.query(expr)
    assert series, f"no series for {rule.get('alert') or rule['record']}:\n{expr}"
    for each in series:  # what the annotations print must be there
        assert annotation_labels(rule) <= set(each["metric"]), each


def test_prometheus_evaluates_every_rule_without_error(observed: Observed) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        found = [r for g in observed.api("rules")["groups"] for r in g["rules"]]
        return found if all(r["health"] != "unknown" for r in found) else None

    found = wait_until(evaluated, timeout=30, interval=0.5, what="every rule evaluated")
    assert {r["name"]: (r["health"], r.get("lastError", "")) for r in found} == {
        r.get("alert") or r["record"]: ("ok", "") for r in rules()
    }


def active_alerts(observed: Observed) -> set[tuple[str, str, frozenset[tuple[str, str]]]]:
    """(alertname, state, labels) of the pending and firing alerts. TurnoutHighLatencyP99 is left
    out: whether one request of the scenario took over 500 ms depends on the machine's load."""
    return {
        (a["labels"]["alertname"], a["state"],
         frozenset((k, v) for k, v in a["labels"].items() if k != "alertname"))
        for a in observed.api("alerts")["alerts"]
        if a["labels"]["alertname"] != "TurnoutHighLatencyP99"
    }  # fmt: skip


def test_the_alerts_of_the_scenario_and_an_operator_going_away(observed: Observed) -> None:
    """Runs last: it stops the operator."""
    serving = {"namespace": NAMESPACE, "model": "Diabetes", "version": "1", "color": "blue"}
    expected = {
        # for: 15m, so pending within a test's time
        ("TurnoutDriftDetected", "pending", frozenset({**serving, "severity": "warning"}.items())),
        ("TurnoutModelDeploymentDegraded", "pending", frozenset({
            "namespace": NAMESPACE, "modeldeployment": MD, "model": "Diabetes",
            "severity": "warning"}.items())),
        # no for: firing at once
        ("TurnoutRolloutAborted", "firing",
         frozenset({"outcome": "aborted", "severity": "warning"}.items())),
    }  # fmt: skip
    # Not there: a high error ratio (the 4xx of the malformed requests are not errors of the
    # model), degraded live quality (no day of history yet), live quality below training (within
    # its factors), the operator down.
    try:
        wait_until(lambda: active_alerts(observed) == expected, timeout=30, interval=0.5,
                   what="exactly the alerts of the scenario")  # fmt: skip
    except AssertionError:
        assert active_alerts(observed) == expected  # shows the difference
        raise

    observed.cluster.operator.stop()
    down = ("TurnoutOperatorDown", "pending",
            frozenset({"job": "turnout-operator", "severity": "critical"}.items()))  # fmt: skip
    wait_until(lambda: down in active_alerts(observed), timeout=30, interval=0.5,
               what="TurnoutOperatorDown pending once the operator stopped")  # fmt: skip
