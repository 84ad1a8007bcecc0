"""The `ModelDeployment` status: what users read, and all the state a rollout needs to resume.

The operator keeps no state of its own: everything a reconcile needs beyond the cluster objects is
here (the rollout in progress, pending scale-downs, rejected versions, history), so an operator
restarted at any point picks up where the last one stopped.

Conditions follow the Kubernetes API conventions: CamelCase reasons from `reasons.py`,
`lastTransitionTime` kept while the condition's status does not change, `observedGeneration`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from turnout_operator.domain.spec import Color, Phase
from turnout_operator.domain.spec import _Model as _Frozen

HISTORY_LIMIT = 20
ConditionStatus = Literal["True", "False", "Unknown"]
Outcome = Literal["Promoted", "Aborted", "Superseded", "RolledBack", "Retired"]


class _Model(_Frozen):
    """Status models are mutable: the planner edits a deep copy and writes it back once."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=False
    )


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, to the second, as the API server writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class Condition(_Model):
    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class HistoryEntry(_Model):
    """One version's time in a color: promoted (or not), retired, and how it ended."""

    version: str
    color: Color
    promoted_at: str | None = None
    retired_at: str | None = None
    outcome: Outcome
    reason: str = ""


class Endpoints(_Model):
    active: str | None = None
    preview: str | None = None


RouteKind = Literal["Ingress", "HTTPRoute"]
MeasurementVerdict = Literal["Successful", "Failed", "Inconclusive", "Error"]
AnalysisPhase = Literal["Running", "Successful", "Failed", "Inconclusive", "Error"]


class MeasurementRecord(_Model):
    """One measurement of an analysis: when, the figures read, the verdict and why."""

    at: str
    verdict: MeasurementVerdict
    values: dict[str, float] = Field(
        default_factory=dict, description="The figures read, by name (see docs/analysis.md)."
    )
    message: str = Field("", description="Why this verdict: each condition against its limit.")


class AnalysisRun(_Model):
    """An analysis in progress or done: its verdict counts (kept whole) and its last
    measurements (at most MEASUREMENT_HISTORY, as Argo Rollouts keeps them)."""

    phase: AnalysisPhase = Field(
        "Running", description="Running, then Successful, Failed, Inconclusive or Error."
    )
    started_at: str
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    errors: int = Field(0, description="Measurements that could not be taken, in a row.")
    measurements: list[MeasurementRecord] = Field(
        default_factory=list, description="The last 10 measurements, oldest first."
    )
    message: str = Field("", description="Why the analysis ended as it did.")

    @property
    def taken(self) -> int:
        """Measurements that count toward `count` (errors do not, as in Argo Rollouts)."""
        return self.successful + self.failed + self.inconclusive


class PostPromotionRun(AnalysisRun):
    """The post-promotion analysis of the version the last switch made active."""

    version: str
    color: Color
    previous_version: str
    previous_color: Color
    ends_at: str = Field(description="When the window ends (at most the old color's scale-down).")
    baseline_p99_seconds: float | None = Field(
        None, description="The old color's p99 latency just before the switch."
    )
    accepted: bool = Field(
        False, description="An inconclusive verdict accepted by the turnout.dev/promote annotation."
    )


class PrePromotionRecord(AnalysisRun):
    """The pre-promotion analysis of the last rollout that ended, kept once the rollout is gone
    (promoted, aborted or superseded) so its figures stay readable."""

    version: str
    color: Color


class Rollout(_Model):
    """The rollout in progress: a version deployed to the idle color, not yet active."""

    version: str
    color: Color
    model_uri: str
    run_id: str | None = None
    started_at: str
    ready_at: str | None = Field(None, description="When the preview first had all pods available.")
    smoke: Literal["Passed", "Failed"] | None = None
    smoke_message: str = ""
    promote: bool = Field(False, description="Promotion requested by the promote annotation.")
    scaled_up_at: str | None = Field(None, description="When it was scaled to full replicas.")
    mirroring: bool = Field(
        False, description="The active color mirrors requests to this preview (spec.shadow)."
    )
    pre_promotion_analysis: AnalysisRun | None = Field(
        None, description="The pre-promotion analysis of this version."
    )
    baseline_p99_seconds: float | None = Field(
        None, description="The active color's p99 latency measured before the switch."
    )
    baseline_at: str | None = Field(None, description="When that baseline was measured.")


class ScaleDown(_Model):
    """A color to scale to zero once `at` has passed (the old active, or an aborted preview)."""

    color: Color
    version: str
    at: str
    after: Literal["Promotion", "Abort"]
    run_id: str | None = None


RetrainingReason = Literal["Requested", "Quality", "Drift", "Schedule"]
RetrainingState = Literal["Running", "Succeeded", "Failed"]
PromotionState = Literal["Pending", "Promoted", "Kept"]


class RetrainingRecord(_Model):
    """One retraining: why it started, on which figures, its Job and how it ended."""

    job_name: str = Field(description="The Job that trains.")
    reason: RetrainingReason = Field(description="Requested, Quality, Drift or Schedule.")
    state: RetrainingState = Field(description="Running, Succeeded or Failed.")
    started_at: str = Field(description="When the Job was created.")
    finished_at: str | None = Field(None, description="When the Job was seen to end.")
    version: str | None = Field(None, description="The version serving when it started.")
    figures: dict[str, float] = Field(
        default_factory=dict, description="The figures that triggered it, by name."
    )
    message: str = Field("", description="One line on how it ended, for people.")
    promotion: PromotionState | None = Field(
        None,
        description="promote: alias only: Pending (the new version not compared yet), Promoted "
        "(the alias moved to it) or Kept (it did not beat the serving version).",
    )
    registered_version: str | None = Field(
        None, description="promote: alias only: the version the Job registered."
    )


class RetrainingStatus(_Model):
    """The retraining side of the status: the last retraining, its history and the state the
    triggers keep between reconciles."""

    last: RetrainingRecord | None = Field(None, description="The latest retraining.")
    history: list[RetrainingRecord] = Field(
        default_factory=list,
        description="Earlier retrainings, newest first (spec.retraining.historyLimit).",
    )
    started: int = Field(0, description="Retrainings started so far (numbers the Jobs).")
    drift_above_since: str | None = Field(
        None, description="Since when the active version's drift has stayed above the bound."
    )
    schedule_due_at: str | None = Field(
        None, description="The schedule's latest due time already acted on (or skipped)."
    )


class ModelDeploymentStatus(_Model):
    """What the operator observed and decided; written only by the operator."""

    phase: Phase = Field(
        "Pending", description="Pending, Progressing, Paused, Healthy or Degraded."
    )
    observed_generation: int | None = Field(None, description="The spec generation last acted on.")
    message: str = Field("", description="One line on the phase, for people.")
    desired_version: str | None = Field(None, description="What spec.model resolved to.")
    active_version: str | None = Field(None, description="The version the active Service serves.")
    active_color: Color | None = Field(None, description="blue or green: where it runs.")
    preview_version: str | None = Field(None, description="The version being rolled out.")
    preview_color: Color | None = Field(None, description="Where the rollout runs.")
    model_uri: str | None = Field(None, description="models:/NAME/VERSION of the active version.")
    run_id: str | None = Field(None, description="MLflow run of the active version, when known.")
    rejected_versions: list[str] = Field(
        default_factory=list,
        description="Versions aborted or rolled back; not tried again before turnout.dev/retry.",
    )
    endpoints: Endpoints = Field(
        default_factory=Endpoints, description="In-cluster URLs of the active and preview Services."
    )
    history: list[HistoryEntry] = Field(
        default_factory=list, description="The last 20 versions, newest first, with outcomes."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Progressing, ModelResolved, Degraded."
    )
    rollout: Rollout | None = Field(None, description="The rollout in progress (for resuming).")
    scale_downs: list[ScaleDown] = Field(
        default_factory=list, description="Colors to scale to zero, and when."
    )
    resolved_at: str | None = Field(None, description="When the registry was last asked.")
    post_promotion_analysis: PostPromotionRun | None = Field(
        None, description="The post-promotion analysis of the last switch."
    )
    last_pre_promotion_analysis: PrePromotionRecord | None = Field(
        None, description="The pre-promotion analysis of the last rollout that ended."
    )
    retraining: RetrainingStatus | None = Field(
        None, description="Retrainings (spec.retraining): the latest, its history, the triggers."
    )
    replicas: int | None = Field(
        None, description="Pods the active color runs (the scale subresource's status)."
    )
    selector: str | None = Field(
        None, description="The label selector of the active color's pods (scale subresource)."
    )
    url: str | None = Field(
        None,
        description="Where clients reach the active version: the Ingress' or HTTPRoute's URL, "
        "else the LoadBalancer's address once assigned, else the in-cluster URL.",
    )
    routes: list[RouteKind] = Field(
        default_factory=list, description="The Ingress and HTTPRoute the operator keeps."
    )

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """The conditions with `type_` set; its lastTransitionTime moves only when status changes."""
    previous = next((c for c in conditions if c.type == type_), None)
    since = (
        previous.last_transition_time
        if previous is not None and previous.status == status
        else timestamp(now)
    )
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    others = [c for c in conditions if c.type != type_]
    return sorted([*others, updated], key=lambda c: _CONDITION_ORDER.get(c.type, 99))


_CONDITION_ORDER = {"Ready": 0, "Progressing": 1, "ModelResolved": 2, "Degraded": 3}


def add_history(history: list[HistoryEntry], entry: HistoryEntry) -> list[HistoryEntry]:
    """Newest first, at most HISTORY_LIMIT entries."""
    return [entry, *history][:HISTORY_LIMIT]
