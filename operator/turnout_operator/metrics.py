"""The operator's own metrics, on its own `/metrics` (explicit registry, label sets up front).

Per-object series (info, step, analysis measurements) are bounded by the ModelDeployments: a
fixed handful each, replaced when the object's labels change and removed when it goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import RetrainingResult
from turnout_operator.domain.observed import Resolved, ResolveFailed
from turnout_operator.domain.status import AnalysisRun, ModelDeploymentStatus, RetrainingReason

OUTCOMES = ("promoted", "aborted", "superseded", "rolled_back")
ANALYSIS_PHASES = {"PrePromotion": "pre_promotion", "PostPromotion": "post_promotion"}
ANALYSIS_RESULTS = ("Successful", "Failed", "Inconclusive", "Error")
PHASES = ("Pending", "Progressing", "Paused", "Healthy", "Degraded")
# A run's measurement verdicts, as the status counts them (errors: in a row).
# What a registry resolution ended in: ModelResolved's reasons.
RESOLUTIONS = (R.RESOLVED, R.MODEL_NOT_FOUND, R.REGISTRY_UNAVAILABLE, R.UNAUTHORIZED,
               R.INVALID_SPEC)  # fmt: skip
VERDICTS = {"successful": "successful", "failed": "failed", "inconclusive": "inconclusive",
            "error": "errors"}  # fmt: skip


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
        self.leader = Gauge(
            "turnout_operator_leader",
            "1 while this replica reconciles (it holds the Lease, or runs without leader "
            "election), 0 while it waits as a standby.",
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
        self._step = Gauge(
            "turnout_operator_modeldeployment_step",
            "1 per ModelDeployment: the step its rollout is at (the Progressing condition's "
            "reason, kubectl's STEP column; '' before the first).",
            ["namespace", "modeldeployment", "step"],
            registry=registry,
        )
        self._measurements = Gauge(
            "turnout_operator_analysis_measurements",
            "Measurements of the analyses a ModelDeployment's status holds (the rollout's "
            "pre-promotion one, the last switch's post-promotion one), by verdict; error counts "
            "those in a row. phase: the analysis' own (Running, Successful, Failed, ...).",
            ["namespace", "modeldeployment", "gate", "version", "phase", "verdict"],
            registry=registry,
        )
        self.notifications = Counter(
            "turnout_operator_notifications",
            "Notifications by channel and result: sent, retried (one per retry), dropped (given "
            "up after the retries, or refused), overflow (the channel's queue was full).",
            ["channel", "result"],
            registry=registry,
        )
        self.retrainings = Counter(
            "turnout_operator_retraining",
            "Retrainings by reason (Requested, Quality, Drift, Schedule) and result: started, "
            "succeeded, failed, and with promote: alias, promoted or kept.",
            ["reason", "result"],
            registry=registry,
        )
        self.resolutions = Counter(
            "turnout_operator_registry_resolutions",
            "Model references resolved by asking the registry (one MLflow request; two when the "
            "lookup fails and the registry is asked which part is missing), by result: Resolved "
            "or ModelResolved's failure reason.",
            ["result"],
            registry=registry,
        )
        self.answers_shared = Counter(
            "turnout_operator_registry_answers_shared",
            "Registry answers handed to a ModelDeployment without asking the registry: fetched "
            "for another ModelDeployment following the same reference, or waited for in flight.",
            registry=registry,
        )
        for result in RESOLUTIONS:
            self.resolutions.labels(result)
        for reason in get_args(RetrainingReason):
            for result in get_args(RetrainingResult):
                self.retrainings.labels(reason, result)
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
        self._steps: dict[tuple[str, str], tuple[str, ...]] = {}
        # (namespace, name) -> the labels of its measurement series, verdict last
        self._runs: dict[tuple[str, str], list[tuple[str, ...]]] = {}

    def notification_channels(self, channels: Sequence[str], results: Sequence[str]) -> None:
        """Create each channel's series up front, so they read 0 before the first send."""
        for channel in channels:
            for result in results:
                self.notifications.labels(channel, result)

    def notification(self, channel: str, result: str) -> None:
        self.notifications.labels(channel, result).inc()

    def resolution_fetched(self, resolution: Resolved | ResolveFailed) -> None:
        result = resolution.reason if isinstance(resolution, ResolveFailed) else R.RESOLVED
        self.resolutions.labels(result).inc()

    def rollout_finished(self, outcome: str, seconds: float) -> None:
        self.rollouts.labels(outcome).inc()
        self.duration.labels(outcome).observe(seconds)

    def retraining(self, reason: str, result: str) -> None:
        self.retrainings.labels(reason, result).inc()

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
        if phase is None:
            self._gates(key, None, ())

    def observe_status(
        self, namespace: str, name: str, model: str, status: ModelDeploymentStatus
    ) -> None:
        """Record one object's status: its phase and active version, the step it is at and
        the measurements of the analyses it holds."""
        self.observe(namespace, name, status.phase, model, status.active_version,
                     status.active_color)  # fmt: skip
        progressing = status.condition(R.PROGRESSING)
        runs: list[tuple[str, str, AnalysisRun]] = []
        rollout = status.rollout
        if rollout is not None and rollout.pre_promotion_analysis is not None:
            runs.append(("pre_promotion", rollout.version, rollout.pre_promotion_analysis))
        post = status.post_promotion_analysis
        if post is not None:
            runs.append(("post_promotion", post.version, post))
        self._gates((namespace, name), progressing.reason if progressing else "", runs)

    def _gates(
        self, key: tuple[str, str], step: str | None, runs: Sequence[tuple[str, str, AnalysisRun]]
    ) -> None:
        """Set one object's step and measurement series, removing those it no longer has (step
        None: it is gone). Series kept are never removed first: a scrape sees no gap."""
        old_step = self._steps.pop(key, None)
        if old_step is not None and old_step != (*key, step):
            self._step.remove(*old_step)
        if step is not None:
            self._steps[key] = (*key, step)
            self._step.labels(*key, step).set(1)
        values = {
            (*key, gate, version, run.phase, verdict): getattr(run, count)
            for gate, version, run in runs
            for verdict, count in VERDICTS.items()
        }
        for labels in set(self._runs.pop(key, ())) - values.keys():
            self._measurements.remove(*labels)
        for labels, value in values.items():
            self._measurements.labels(*labels).set(value)
        if values:
            self._runs[key] = list(values)
