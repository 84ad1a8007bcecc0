"""The operator's own metrics, on its own `/metrics` (explicit registry, label sets up front)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES = ("promoted", "aborted", "superseded", "rolled_back")
PHASES = ("Pending", "Progressing", "Paused", "Healthy", "Degraded")


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.rollouts = Counter(
            "turnout_operator_rollouts", "Rollouts ended, by outcome.", ["outcome"],
            registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "turnout_operator_rollout_duration_seconds",
            "From a rollout's start to its end (promotion, abort or replacement).",
            ["outcome"],
            buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600),
            registry=registry,
        )
        self.errors = Counter(
            "turnout_operator_reconcile_errors", "Reconciles that raised.", registry=registry
        )
        self._phase = Gauge(
            "turnout_operator_modeldeployment_phase",
            "ModelDeployments in each phase.",
            ["phase"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.rollouts.labels(outcome)
            self.duration.labels(outcome)
        for phase in PHASES:
            self._phase.labels(phase)
        self._phases: dict[tuple[str, str], str] = {}

    def rollout_finished(self, outcome: str, seconds: float) -> None:
        self.rollouts.labels(outcome).inc()
        self.duration.labels(outcome).observe(seconds)

    def phase(self, namespace: str, name: str, phase: str | None) -> None:
        """Record one object's phase (None: it is gone) and refresh the per-phase counts."""
        if phase is None:
            self._phases.pop((namespace, name), None)
        else:
            self._phases[(namespace, name)] = phase
        for each in PHASES:
            self._phase.labels(each).set(sum(1 for p in self._phases.values() if p == each))
