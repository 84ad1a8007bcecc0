"""What the planner asks the adapters to do. Each action is idempotent: carrying out the same
plan twice leaves the cluster and the registry as carrying it out once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from turnout_operator.domain.spec import Color


@dataclass(frozen=True)
class DeployColor:
    """Create or update `<name>-<color>` to serve `version` with `replicas` pods."""

    color: Color
    version: str
    model_uri: str
    replicas: int


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
class RolloutFinished:
    """For the operator's metrics: a rollout ended with `outcome` after `seconds`."""

    outcome: Literal["promoted", "aborted", "superseded", "rolled_back"]
    seconds: float


Action = (
    DeployColor
    | ScaleColor
    | PointService
    | SmokeTest
    | TagVersion
    | RemoveAnnotation
    | Emit
    | RolloutFinished
)
