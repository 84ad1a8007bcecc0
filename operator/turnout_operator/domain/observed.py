"""What the planner sees: the cluster's and the registry's answers, already read by the adapters.

Plain frozen values, so a table of test cases can state a whole situation in a few lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from turnout_operator.domain.analysis import Measurement
from turnout_operator.domain.retraining import Seen
from turnout_operator.domain.spec import Color
from turnout_operator.domain.status import ModelDeploymentStatus

# Annotations users set on a ModelDeployment to drive a rollout by hand.
PROMOTE = "turnout.dev/promote"
ABORT = "turnout.dev/abort"
RETRY = "turnout.dev/retry"
ROLLBACK = "turnout.dev/rollback"
ANNOTATIONS = (PROMOTE, ABORT, RETRY, ROLLBACK)


@dataclass(frozen=True)
class ColorState:
    """One color's Deployment as the cluster reports it."""

    version: str | None = None  # the model version its pod template serves; None: no Deployment
    replicas: int = 0  # spec.replicas
    rolled_out: bool = True  # generation observed, updatedReplicas == replicas == status.replicas
    available: int = 0  # status.availableReplicas
    failure: str | None = None  # a pod's waiting reason (CrashLoopBackOff, ImagePullBackOff, ...)
    # and, after a colon, the message its container last ended with, when it left one

    @property
    def exists(self) -> bool:
        return self.version is not None

    def serves(self, version: str, replicas: int) -> bool:
        """All `replicas` pods of `version` are rolled out and available."""
        return (
            self.version == version
            and self.rolled_out
            and self.replicas == replicas
            and self.available >= replicas
        )


NO_DEPLOYMENT = ColorState()


@dataclass(frozen=True)
class Resolved:
    """The registry's answer for spec.model."""

    version: str
    model_uri: str  # models:/NAME/VERSION, what the pods serve
    run_id: str | None = None


@dataclass(frozen=True)
class ResolveFailed:
    reason: str  # reasons.REGISTRY_UNAVAILABLE, MODEL_NOT_FOUND, UNAUTHORIZED
    message: str


@dataclass(frozen=True)
class SmokeResult:
    version: str
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class ExposureSeen:
    """The objects that expose the active Service, as the cluster reports them. A record is
    the exposure annotation the operator wrote on the object (None: no such object)."""

    service: str | None = None  # the active Service's record ("" when it has none)
    load_balancer: str | None = None  # the active Service's first load balancer IP or hostname
    ingress: str | None = None
    ingress_address: str | None = None  # the Ingress' first load balancer IP or hostname
    http_route: str | None = None
    gateway_api: bool = True  # gateway.networking.k8s.io/v1 httproutes is served


@dataclass(frozen=True)
class Observed:
    status: ModelDeploymentStatus
    name: str = "model"
    namespace: str = "default"
    generation: int = 1
    annotations: Mapping[str, str] = field(default_factory=dict)
    resolution: Resolved | ResolveFailed | None = None  # None: the registry was not asked now
    colors: Mapping[Color, ColorState] = field(default_factory=dict)
    active_selector: Color | None = None  # the active Service's color, None without a Service
    preview_selector: Color | None = None
    smoke: SmokeResult | None = None  # the result of a smoke test run during this reconcile
    measurement: Measurement | None = None  # what a Measure of this reconcile read
    retraining: Seen | None = None  # what the retraining triggers see (spec.retraining set)
    autoscaler: Color | None = None  # the color the HorizontalPodAutoscaler targets; None: none
    exposure: ExposureSeen | None = None  # None: not read (a spec that cannot be acted on)

    def color(self, color: Color) -> ColorState:
        return self.colors.get(color, NO_DEPLOYMENT)
