"""The `ModelDeployment` API (`turnout.dev/v1alpha1`): typed spec and status.

One source of truth: the CRD in `crds/` is generated from these models (`crd.py`) and a test keeps
the two identical. Field names are the API's camelCase names (aliases); Python code uses
snake_case. Defaults live here and in the CRD's structural schema alike, so a ModelDeployment read
back from the API server and one parsed here agree.

Pure: no kopf, Kubernetes or MLflow imports (an import-linter contract checks it).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GROUP = "turnout.dev"
VERSION = "v1alpha1"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
API_VERSION = f"{GROUP}/{VERSION}"

Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")
Phase = Literal["Pending", "Progressing", "Paused", "Healthy", "Degraded"]


def other(color: Color) -> Color:
    return "green" if color == "blue" else "blue"


class _Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields kept out."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ModelRef(_Model):
    """Which registered model version to serve: exactly one of version, alias or stage."""

    name: str = Field(min_length=1, description="Registered model name in the MLflow registry.")
    version: str | None = Field(None, pattern=r"^[0-9]+$", description="A fixed model version.")
    alias: str | None = Field(
        None, min_length=1, description="A registry alias (e.g. champion), re-resolved by polling."
    )
    stage: str | None = Field(
        None,
        min_length=1,
        description="A legacy registry stage (e.g. Production), re-resolved by polling.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelRef:
        chosen = [f for f in ("version", "alias", "stage") if getattr(self, f) is not None]
        if len(chosen) != 1:
            raise ValueError(
                f"spec.model needs exactly one of version, alias or stage (got {chosen or 'none'})"
            )
        return self

    @property
    def reference(self) -> str:
        """The MLflow URI the user means: models:/NAME/3, models:/NAME@champion or
        models:/NAME/Production."""
        if self.alias is not None:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}/{self.version or self.stage}"

    @property
    def floating(self) -> bool:
        """True when the reference can move in the registry (alias or stage) and must be polled."""
        return self.version is None


class RegistrySpec(_Model):
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; the operator's default when empty."
    )
    credentials_secret: str | None = Field(
        None,
        description="Secret with MLFLOW_TRACKING_TOKEN / _USERNAME / _PASSWORD, AWS_* and "
        "MLFLOW_S3_ENDPOINT_URL keys, handed to the serving pods as environment.",
    )
    poll_interval_seconds: int = Field(
        60, ge=5, description="How often an alias or stage is re-resolved; a move starts a rollout."
    )


class PodTemplate(_Model):
    image: str | None = Field(
        None, description="turnout-serve image; the operator's default when empty."
    )
    resources: dict[str, Any] | None = Field(None, description="Container resources.")
    env: list[dict[str, Any]] = Field(default_factory=list, description="Extra container env.")
    node_selector: dict[str, str] | None = Field(None, description="Pod nodeSelector.")
    tolerations: list[dict[str, Any]] | None = Field(None, description="Pod tolerations.")
    affinity: dict[str, Any] | None = Field(None, description="Pod affinity.")
    service_account_name: str | None = Field(
        None, description="Service account of the serving pods (e.g. for cloud storage access)."
    )
    image_pull_secrets: list[dict[str, Any]] | None = Field(
        None, description="Pull secrets for the serving image."
    )
    pod_labels: dict[str, str] | None = Field(None, description="Extra labels on the pods.")
    pod_annotations: dict[str, str] | None = Field(None, description="Extra pod annotations.")


class BlueGreen(_Model):
    auto_promotion_enabled: bool = Field(
        True, description="false: wait in Paused for the turnout.dev/promote annotation."
    )
    auto_promotion_seconds: int = Field(
        0, ge=0, description="Wait this long after the preview is ready before promoting."
    )
    preview_replica_count: int = Field(
        1,
        ge=1,
        description="Replicas of the preview before promotion (scaled to replicas at the switch).",
    )
    scale_down_delay_seconds: int = Field(
        30,
        ge=0,
        description="The old color stays warm this long after a switch, for instant rollback.",
    )
    abort_scale_down_delay_seconds: int = Field(
        30, ge=0, description="An aborted preview is scaled down after this long."
    )
    progress_deadline_seconds: int = Field(
        600, ge=10, description="A preview not ready and smoke-tested within this long is aborted."
    )
    smoke_test: bool = Field(
        True, description="Send the version's logged input example to the preview before promoting."
    )


class Strategy(_Model):
    blue_green: BlueGreen = Field(
        default_factory=BlueGreen, description="Blue-green rollout settings."
    )


class Drift(_Model):
    enabled: bool = Field(True, description="Compute data drift against the run's reference.")
    window_size: int = Field(1000, ge=20, description="Rows in the sliding drift window.")


class Monitoring(_Model):
    drift: Drift = Field(default_factory=Drift, description="In-server data drift detection.")


class Auth(_Model):
    token_secret: str = Field(
        "",
        description="Secret whose `tokens` key (one per line) holds the tokens turnout-serve "
        "requires, in `Authorization: Bearer` or `X-Turnout-Token`; the smoke test sends the "
        "first.",
    )


class ModelDeploymentSpec(_Model):
    """What to serve, from which registry, on which pods, and how to roll versions out."""

    model: ModelRef = Field(description="The registered model and which version of it to serve.")
    registry: RegistrySpec = Field(
        default_factory=RegistrySpec, description="Where the MLflow registry is and how to log in."
    )
    replicas: int = Field(2, ge=1, le=100, description="Serving pods of the active version.")
    template: PodTemplate = Field(
        default_factory=PodTemplate, description="What the serving pods look like."
    )
    strategy: Strategy = Field(default_factory=Strategy, description="How versions roll out.")
    monitoring: Monitoring = Field(
        default_factory=Monitoring, description="What the serving pods measure."
    )
    auth: Auth = Field(default_factory=Auth, description="Bearer-token auth of inference.")
    paused: bool = Field(False, description="Freeze rollouts: nothing moves until unpaused.")

    @property
    def blue_green(self) -> BlueGreen:
        return self.strategy.blue_green
