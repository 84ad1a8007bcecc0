"""The operator's /metrics: label sets exist before anything happens (so dashboards and alerts
see zeros, not gaps), and one info series per ModelDeployment follows its active version."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from turnout_operator.domain.status import ModelDeploymentStatus
from turnout_operator.metrics import OperatorMetrics


def samples(registry: CollectorRegistry, prefix: str) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_every_outcome_and_phase_is_exported_before_the_first_rollout() -> None:
    registry = CollectorRegistry()
    OperatorMetrics(registry)
    assert samples(registry, "turnout_operator_rollouts_total") == [
        f'turnout_operator_rollouts_total{{outcome="{o}"}} 0.0'
        for o in ("promoted", "aborted", "superseded", "rolled_back")
    ]
    assert samples(registry, "turnout_operator_modeldeployment_phase") == [
        f'turnout_operator_modeldeployment_phase{{phase="{p}"}} 0.0'
        for p in ("Pending", "Progressing", "Paused", "Healthy", "Degraded")
    ]


def test_the_info_series_follows_the_active_version_and_goes_with_the_object() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    metrics.observe("ml", "bikes", "Pending", "Bikes")
    metrics.observe("ml", "bikes", "Healthy", "Bikes", "3", "blue")
    metrics.observe("ml", "taxis", "Progressing", "Taxis", "1", "green")
    assert samples(registry, "turnout_operator_modeldeployment_info") == [
        'turnout_operator_modeldeployment_info{color="blue",model="Bikes",modeldeployment="bikes",'
        'namespace="ml",phase="Healthy",version="3"} 1.0',
        'turnout_operator_modeldeployment_info{color="green",model="Taxis",modeldeployment="taxis",'
        'namespace="ml",phase="Progressing",version="1"} 1.0',
    ]
    assert 'turnout_operator_modeldeployment_phase{phase="Healthy"} 1.0' in samples(
        registry, "turnout_operator_modeldeployment_phase"
    )
    metrics.observe("ml", "bikes", None)
    assert [s.split("{")[1].split(",")[1] for s in
            samples(registry, "turnout_operator_modeldeployment_info")] == ['model="Taxis"']  # fmt: skip
    assert 'turnout_operator_modeldeployment_phase{phase="Healthy"} 0.0' in samples(
        registry, "turnout_operator_modeldeployment_phase"
    )


def test_a_finished_rollout_counts_its_outcome_and_duration() -> None:
    registry = CollectorRegistry()
    OperatorMetrics(registry).rollout_finished("rolled_back", 42.0)
    assert 'turnout_operator_rollouts_total{outcome="rolled_back"} 1.0' in samples(
        registry, "turnout_operator_rollouts_total"
    )
    assert 'turnout_operator_rollout_duration_seconds_sum{outcome="rolled_back"} 42.0' in samples(
        registry, "turnout_operator_rollout_duration_seconds_sum"
    )


def status(step: str, **fields: object) -> ModelDeploymentStatus:
    progressing = {"type": "Progressing", "status": "True", "reason": step, "message": "",
                   "lastTransitionTime": "2026-11-23T12:00:00Z"}  # fmt: skip
    return ModelDeploymentStatus.model_validate(
        {
            "phase": "Progressing",
            "activeVersion": "3",
            "activeColor": "blue",
            "conditions": [progressing],
            **fields,
        }
    )


PRE = {"version": "4", "color": "green", "modelUri": "models:/Bikes/4",
       "startedAt": "2026-11-23T12:00:00Z",
       "prePromotionAnalysis": {"startedAt": "2026-11-23T12:00:40Z", "successful": 2,
                                "failed": 1, "errors": 3}}  # fmt: skip
POST = {"version": "3", "color": "blue", "previousVersion": "2", "previousColor": "green",
        "endsAt": "2026-11-23T11:00:00Z", "startedAt": "2026-11-23T10:50:00Z",
        "phase": "Successful", "successful": 10}  # fmt: skip


def test_the_step_and_the_analyses_in_the_status_are_exported_per_object() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    metrics.observe_status("ml", "bikes", "Bikes", status(
        "PrePromotionAnalysis", rollout=PRE, postPromotionAnalysis=POST))  # fmt: skip
    assert samples(registry, "turnout_operator_modeldeployment_step") == [
        'turnout_operator_modeldeployment_step{modeldeployment="bikes",namespace="ml",'
        'step="PrePromotionAnalysis"} 1.0'
    ]
    found = {
        line.split("{")[1].split("}")[0]: line.rsplit(" ", 1)[1]
        for line in samples(registry, "turnout_operator_analysis_measurements")
    }
    run = 'modeldeployment="bikes",namespace="ml",phase="{}",verdict="{}",version="{}"'
    assert found == {
        f'gate="pre_promotion",{run.format("Running", "successful", "4")}': "2.0",
        f'gate="pre_promotion",{run.format("Running", "failed", "4")}': "1.0",
        f'gate="pre_promotion",{run.format("Running", "inconclusive", "4")}': "0.0",
        f'gate="pre_promotion",{run.format("Running", "error", "4")}': "3.0",
        f'gate="post_promotion",{run.format("Successful", "successful", "3")}': "10.0",
        f'gate="post_promotion",{run.format("Successful", "failed", "3")}': "0.0",
        f'gate="post_promotion",{run.format("Successful", "inconclusive", "3")}': "0.0",
        f'gate="post_promotion",{run.format("Successful", "error", "3")}': "0.0",
    }


def test_a_finished_rollout_and_a_deleted_object_leave_no_analysis_series() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    ended = {**PRE["prePromotionAnalysis"], "phase": "Failed"}  # type: ignore[dict-item]
    metrics.observe_status("ml", "bikes", "Bikes", status(
        "PrePromotionAnalysis", rollout={**PRE, "prePromotionAnalysis": ended}))  # fmt: skip
    assert {s.split('phase="')[1].split('"')[0] for s in
            samples(registry, "turnout_operator_analysis_measurements")} == {"Failed"}  # fmt: skip
    metrics.observe_status("ml", "bikes", "Bikes", status("AnalysisFailed"))
    assert samples(registry, "turnout_operator_analysis_measurements") == []
    assert samples(registry, "turnout_operator_modeldeployment_step") == [
        'turnout_operator_modeldeployment_step{modeldeployment="bikes",namespace="ml",'
        'step="AnalysisFailed"} 1.0'
    ]
    metrics.observe_status("ml", "taxis", "Taxis", status("RolloutComplete",
                                                          postPromotionAnalysis=POST))  # fmt: skip
    metrics.observe("ml", "taxis", None)
    assert samples(registry, "turnout_operator_analysis_measurements") == []
    assert [
        s.split(",")[0] for s in samples(registry, "turnout_operator_modeldeployment_step")
    ] == ['turnout_operator_modeldeployment_step{modeldeployment="bikes"']
