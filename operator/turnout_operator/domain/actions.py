"""What the planner asks the adapters to do. Each action is idempotent: carrying out the same
plan twice leaves the cluster and the registry as carrying it out once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from turnout_operator.domain.spec import Color, NotificationEvent, PrometheusQuery
from turnout_operator.domain.status import RetrainingReason, RouteKind

RetrainingResult = Literal["started", "succeeded", "failed", "promoted", "kept"]


@dataclass(frozen=True)
class DeployColor:
    """Create or update `<name>-<color>` to serve `version` with `replicas` pods."""

    color: Color
    version: str
    model_uri: str
    replicas: int
    # The autoscaler owns the replicas: `replicas` only sizes a Deployment made now; an
    # existing one keeps its count (written back, it would undo the autoscaler's last step).
    autoscaled: bool = False


@dataclass(frozen=True)
class ScaleColor:
    """Scale `<name>-<color>` (if it exists) to `replicas`; 0 keeps the Deployment for reuse."""

    color: Color
    replicas: int


@dataclass(frozen=True)
class PointService:
    """Point the active (`<name>`) or preview (`<name>-preview`) Service at `color`."""

    role: Literal["active", "preview"]
    color: Color


@dataclass(frozen=True)
class SmokeTest:
    """Send the version's logged input example to the preview Service; the result comes back
    as `Observed.smoke` in a second planning pass of the same reconcile."""

    color: Color
    version: str


VersionState = Literal["active", "preview", "rejected", "retired"]


@dataclass(frozen=True)
class TagVersion:
    """Record the deployment state on the MLflow model version (`turnout.dev/<ns>.<name>`)."""

    version: str
    state: VersionState


@dataclass(frozen=True)
class RemoveAnnotation:
    key: str


@dataclass(frozen=True)
class Emit:
    """A Kubernetes Event on the ModelDeployment."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Notify:
    """A moment to tell the channels `spec.notifications` selects for `event` about
    (domain/notifications.py); `version` is the version it is about, `at` the plan's time."""

    event: NotificationEvent
    version: str
    reason: str
    message: str
    at: str


@dataclass(frozen=True)
class RolloutFinished:
    """For the operator's metrics: a rollout ended with `outcome` after `seconds`."""

    outcome: Literal["promoted", "aborted", "superseded", "rolled_back"]
    seconds: float


@dataclass(frozen=True)
class StartShadow:
    """Have the pods of `color` (the active color) mirror `percent` of their requests, at most
    `max_requests_per_second` per pod, to the preview Service (which points at `target`),
    for `lease_seconds`: the pods stop by themselves unless asked again before the lease ends,
    so mirroring never outlives an operator that stopped renewing it."""

    color: Color
    target: Color
    percent: float
    max_requests_per_second: float
    lease_seconds: int


@dataclass(frozen=True)
class StopShadow:
    """Have the pods of `color` stop mirroring."""

    color: Color


Gate = Literal["PrePromotion", "PostPromotion", "Baseline"]


@dataclass(frozen=True)
class Measure:
    """Read the metrics of the pods of `colors` (and run `query` when given); the result comes
    back as `Observed.measurement` in a second planning pass of the same reconcile. `version`
    is the version the gate is about (the preview's before the switch, the active one's
    after)."""

    gate: Gate
    version: str
    colors: tuple[Color, ...]
    query: PrometheusQuery | None = None


@dataclass(frozen=True)
class AnalysisFinished:
    """For the operator's metrics: an analysis of `gate` ended with `result`."""

    gate: Gate
    result: Literal["Successful", "Failed", "Inconclusive", "Error"]


@dataclass(frozen=True)
class StartRetraining:
    """Create the Job `job_name` from spec.retraining.jobTemplate, given `reason` and
    `figures` (the adapter adds the model's name and version, the tracking URI, credentials)."""

    job_name: str
    reason: RetrainingReason
    version: str | None
    figures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MoveAlias:
    """Point the registered model's `alias` at `version` (spec.retraining.promote: alias)."""

    alias: str
    version: str


@dataclass(frozen=True)
class RetrainingCounted:
    """For the operator's metrics: a retraining started, succeeded or failed."""

    reason: RetrainingReason
    result: RetrainingResult


@dataclass(frozen=True)
class Autoscale:
    """Create or update the ModelDeployment's HorizontalPodAutoscaler (spec.autoscaling) and
    point it at `color`'s Deployment."""

    color: Color


@dataclass(frozen=True)
class RemoveAutoscaler:
    """Delete the ModelDeployment's HorizontalPodAutoscaler (spec.autoscaling was removed)."""


@dataclass(frozen=True)
class ExposeService:
    """Bring the active Service's type, port and metadata to spec.service (its selector
    stays as it is: PointService moves it)."""


@dataclass(frozen=True)
class ApplyRoute:
    """Create or replace the Ingress or HTTPRoute `<name>` the spec asks for."""

    kind: RouteKind


@dataclass(frozen=True)
class DeleteRoute:
    """Delete the Ingress or HTTPRoute `<name>` the spec no longer asks for."""

    kind: RouteKind


Action = (
    DeployColor
    | ScaleColor
    | PointService
    | SmokeTest
    | TagVersion
    | RemoveAnnotation
    | Emit
    | Notify
    | RolloutFinished
    | StartShadow
    | StopShadow
    | Measure
    | AnalysisFinished
    | StartRetraining
    | MoveAlias
    | RetrainingCounted
    | Autoscale
    | RemoveAutoscaler
    | ExposeService
    | ApplyRoute
    | DeleteRoute
)
