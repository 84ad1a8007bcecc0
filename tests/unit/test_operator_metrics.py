"""The operator's /metrics: label sets exist before anything happens (so dashboards and alerts
see zeros, not gaps), and one info series per ModelDeployment follows its active version."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

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
