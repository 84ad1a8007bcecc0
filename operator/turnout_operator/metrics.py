"""The operator's own metrics, on its own `/metrics` (explicit registry, label sets up front)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES = ("promoted", "aborted", "superseded", "rolled_back")
ANALYSIS_PHASES = {"PrePromotion": "pre_promotion", "PostPromotion": "post_promotion"}
ANALYSIS_RESULTS = ("Successful", "Failed", "Inconclusive", "Error")
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
            "From a rollout's start to its end (promotion, abort or replacement); for rolled_back, "
            "from its promotion to the rollback.",
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
        self._info = Gauge(
            "turnout_operator_modeldeployment_info",
            "1 per ModelDeployment: its model, active version and color ('' when none), phase.",
            ["namespace", "modeldeployment", "model", "version", "color", "phase"],
            registry=registry,
        )
        self.tags_pending = Gauge(
            "turnout_operator_tag_writes_pending",
            "MLflow model-version tags waiting to be written (the registry is down or slow).",
            registry=registry,
        )
        self.analysis_runs = Counter(
            "turnout_operator_analysis_runs",
            "Analyses ended, by gate (pre_promotion, post_promotion) and verdict.",
            ["phase", "result"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.rollouts.labels(outcome)
            self.duration.labels(outcome)
        for phase in ANALYSIS_PHASES.values():
            for result in ANALYSIS_RESULTS:
                self.analysis_runs.labels(phase, result.lower())
        for phase in PHASES:
            self._phase.labels(phase)
        # (namespace, name) -> the labels of its info series; the phase is the last of them
        self._infos: dict[tuple[str, str], tuple[str, ...]] = {}

    def rollout_finished(self, outcome: str, seconds: float) -> None:
        self.rollouts.labels(outcome).inc()
        self.duration.labels(outcome).observe(seconds)

    def analysis_finished(self, gate: str, result: str) -> None:
        self.analysis_runs.labels(ANALYSIS_PHASES[gate], result.lower()).inc()

    def observe(
        self, namespace: str, name: str, phase: str | None, model: str = "",
        version: str | None = None, color: str | None = None,
    ) -> None:  # fmt: skip
        """Record one object's phase and active version (phase None: it is gone); refresh the
        per-phase counts. A changed label set replaces the object's old info series."""
        key = (namespace, name)
        labels = (namespace, name, model, version or "", color or "", phase or "")
        old = self._infos.pop(key, None)
        if old is not None and old != labels:
            self._info.remove(*old)
        if phase is not None:
            self._infos[key] = labels
            self._info.labels(*labels).set(1)
        phases = [info[-1] for info in self._infos.values()]
        for each in PHASES:
            self._phase.labels(each).set(phases.count(each))
