"""The `ModelDeployment` API (`turnout.dev/v1alpha1`): typed spec and status.

One source of truth: the CRD in `crds/` is generated from these models (`crd.py`) and a test keeps
the two identical. Field names are the API's camelCase names (aliases); Python code uses
snake_case. Defaults live here and in the CRD's structural schema alike, so a ModelDeployment read
back from the API server and one parsed here agree.

Pure: no kopf, Kubernetes or MLflow imports (an import-linter contract checks it).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonDict

from turnout_operator.domain.kube_rules import (
    DNS1123_SUBDOMAIN,
    DNS1123_SUBDOMAIN_MAX,
    ENV_VAR_NAME,
    LABEL_VALUE,
    LABEL_VALUE_MAX,
    TOTAL_ANNOTATION_SIZE_LIMIT,
    anchored,
)

GROUP = "turnout.dev"
VERSION = "v1alpha1"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
API_VERSION = f"{GROUP}/{VERSION}"

Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")
Phase = Literal["Pending", "Progressing", "Paused", "Healthy", "Degraded"]


# Rollout delays and deadlines are capped, so every time the planner computes stays a date (a
# delay of 10^12 s would overflow datetime arithmetic) and a typo cannot park a rollout for years.
MAX_DELAY_SECONDS = 7 * 24 * 3600  # one week
MAX_POLL_INTERVAL_SECONDS = 24 * 3600  # one day

# Environment variables a template may not set: MLFLOW_TRACKING_URI and turnout-serve's TURNOUT_*
# settings, which the operator sets on every serving pod (domain/manifests.py) or governs by a spec
# field (the model, color, port, cache, drift, auth, shutdown against the pod's grace period):
# overriding one would make the pods serve something other than what the status says. A prefix,
# so a variable the operator sets in a later version is reserved already; the exceptions are the
# turnout-serve tunables no spec field governs.
RESERVED_ENV_PREFIX = "TURNOUT_"
RESERVED_ENV_NAMES = frozenset({"MLFLOW_TRACKING_URI"})
TUNABLE_ENV_NAMES = frozenset({
    "TURNOUT_WARMUP", "TURNOUT_REQUEST_TIMEOUT_SECONDS", "TURNOUT_MAX_BODY_BYTES",
    "TURNOUT_FEEDBACK_TTL_SECONDS", "TURNOUT_FEEDBACK_MAX_PREDICTIONS", "TURNOUT_FEEDBACK_WINDOW",
    "TURNOUT_LOG_LEVEL", "TURNOUT_MAX_ROWS", "TURNOUT_MAX_CELLS", "TURNOUT_MAX_HEADER_BYTES",
    "TURNOUT_READ_TIMEOUT_SECONDS", "TURNOUT_SCORING_THREADS", "TURNOUT_HTTP", "TURNOUT_API_DOCS",
    "TURNOUT_REGISTRY_TIMEOUT_SECONDS", "TURNOUT_ARTIFACT_TIMEOUT_SECONDS",
})  # fmt: skip


def reserved_env_name(name: str) -> bool:
    return (name.startswith(RESERVED_ENV_PREFIX) and name not in TUNABLE_ENV_NAMES) or (
        name in RESERVED_ENV_NAMES
    )


RESERVED_ENV_RULE: JsonDict = {
    "rule": f"(!self.name.startsWith('{RESERVED_ENV_PREFIX}') || self.name in "
    f"{sorted(TUNABLE_ENV_NAMES)}) && !(self.name in {sorted(RESERVED_ENV_NAMES)})",
    "message": "MLFLOW_TRACKING_URI and TURNOUT_* are set by the operator and cannot be "
    f"overridden (except {', '.join(sorted(TUNABLE_ENV_NAMES))})",
}

# A Secret or service account name (a DNS-1123 subdomain); the empty string means "none".
ObjectName = Annotated[
    str, Field(max_length=DNS1123_SUBDOMAIN_MAX, pattern=anchored(f"({DNS1123_SUBDOMAIN})?"))
]
LabelValue = Annotated[str, Field(max_length=LABEL_VALUE_MAX, pattern=anchored(LABEL_VALUE))]
MAX_LABELS = 64
MAX_ANNOTATIONS = 128
# The serving pods' own annotations (prometheus.io/*) leave this much of the API server's limit.
POD_ANNOTATIONS_BUDGET = TOTAL_ANNOTATION_SIZE_LIMIT - 1024
ANNOTATIONS_SIZE_RULE: JsonDict = {
    "rule": f"self.map(k, size(k) + size(self[k])).sum() <= {POD_ANNOTATIONS_BUDGET}",
    "message": f"pod annotations may total at most {POD_ANNOTATIONS_BUDGET} characters "
    "(keys and values; the API server allows 256 KiB per object, the operator adds its own)",
}
# The serving pods load `models:/NAME/VERSION` with MLflow, which cannot read every name it
# registers back out of such a URI: each character here, and why (MLflow refuses the first two).
UNSERVABLE_IN_MODEL_NAMES = {
    "/": "MLflow refuses it in registered model names",
    ":": "MLflow refuses it in registered model names",
    "@": "MLflow's download reads models:/NAME/VERSION as an alias when NAME holds '@'",
    "?": "MLflow's URI parser reads it as the start of a query",
    "\t": "MLflow's URI parser drops it",
    "\n": "MLflow's URI parser drops it",
    "\r": "MLflow's URI parser drops it",
}
MODEL_NAME = "^[^" + "".join(UNSERVABLE_IN_MODEL_NAMES).encode("unicode_escape").decode() + "]+$"


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

    name: str = Field(
        min_length=1,
        json_schema_extra={"pattern": MODEL_NAME},
        description="Registered model name in the MLflow registry (no '/', ':', '@', '?', tab or "
        "line break: the serving pods load it as models:/NAME/VERSION, which MLflow cannot read "
        "back for such names).",
    )
    version: str | None = Field(None, pattern=r"^[0-9]+$", description="A fixed model version.")
    alias: str | None = Field(
        None, min_length=1, description="A registry alias (e.g. champion), re-resolved by polling."
    )
    stage: str | None = Field(
        None,
        min_length=1,
        description="A legacy registry stage (e.g. Production), re-resolved by polling.",
    )

    @field_validator("name")
    @classmethod
    def _servable(cls, name: str) -> str:
        for char, why in UNSERVABLE_IN_MODEL_NAMES.items():
            if char in name:
                raise ValueError(
                    f"{name!r} cannot be served: it holds {char!r} and {why}; register the model "
                    "under a name without it"
                )
        return name

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
        None,
        pattern=r"^https?://\S+$",
        description="MLflow tracking URI (http or https); the operator's default when empty.",
    )
    credentials_secret: ObjectName | None = Field(
        None,
        description="Secret with MLFLOW_TRACKING_TOKEN / _USERNAME / _PASSWORD, AWS_* and "
        "MLFLOW_S3_ENDPOINT_URL keys, handed to the serving pods as environment.",
    )
    poll_interval_seconds: int = Field(
        60,
        ge=5,
        le=MAX_POLL_INTERVAL_SECONDS,
        description="How often an alias or stage is re-resolved; a move starts a rollout.",
    )

    @field_validator("tracking_uri")
    @classmethod
    def _a_url(cls, uri: str | None) -> str | None:
        """The registry adapter speaks MLflow's REST API over http(s) to the URI's host."""
        if uri is None:
            return uri
        try:
            parts = urlsplit(uri)
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError as exc:
            raise ValueError(f"{uri!r} is not a URL: {exc}") from None
        if not parts.hostname:
            raise ValueError(f"{uri!r} names no host")
        return uri


class EnvVar(_Model):
    """One extra environment variable of the serving container (a Kubernetes EnvVar)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [RESERVED_ENV_RULE]})

    name: str = Field(max_length=256, pattern=anchored(ENV_VAR_NAME), description="Its name.")
    value: str | None = Field(None, description="Its value.")
    value_from: dict[str, Any] | None = Field(
        None, description="Where its value comes from (secretKeyRef, configMapKeyRef, ...)."
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if reserved_env_name(name):
            raise ValueError(f"{name!r}: {RESERVED_ENV_RULE['message']}")
        return name


class PodTemplate(_Model):
    image: str | None = Field(
        None, description="turnout-serve image; the operator's default when empty."
    )
    resources: dict[str, Any] | None = Field(None, description="Container resources.")
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=256,
        description="Extra container env; MLFLOW_TRACKING_URI and TURNOUT_* are the operator's, "
        "but for turnout-serve's tunables (see Limits).",
    )
    node_selector: dict[str, LabelValue] | None = Field(
        None, max_length=MAX_LABELS, description="Pod nodeSelector."
    )
    tolerations: list[dict[str, Any]] | None = Field(None, description="Pod tolerations.")
    affinity: dict[str, Any] | None = Field(None, description="Pod affinity.")
    service_account_name: ObjectName | None = Field(
        None, description="Service account of the serving pods (e.g. for cloud storage access)."
    )
    image_pull_secrets: list[dict[str, Any]] | None = Field(
        None, description="Pull secrets for the serving image."
    )
    pod_labels: dict[str, LabelValue] | None = Field(
        None, max_length=MAX_LABELS, description="Extra labels on the pods."
    )
    pod_annotations: dict[str, str] | None = Field(
        None,
        max_length=MAX_ANNOTATIONS,
        json_schema_extra={"x-kubernetes-validations": [ANNOTATIONS_SIZE_RULE]},
        description="Extra pod annotations.",
    )


class BlueGreen(_Model):
    auto_promotion_enabled: bool = Field(
        True, description="false: wait in Paused for the turnout.dev/promote annotation."
    )
    auto_promotion_seconds: int = Field(
        0,
        ge=0,
        le=MAX_DELAY_SECONDS,
        description="Wait this long after the preview is ready before promoting.",
    )
    preview_replica_count: int = Field(
        1,
        ge=1,
        le=100,
        description="Replicas of the preview before promotion (scaled to replicas at the switch).",
    )
    scale_down_delay_seconds: int = Field(
        30,
        ge=0,
        le=MAX_DELAY_SECONDS,
        description="The old color stays warm this long after a switch, for instant rollback.",
    )
    abort_scale_down_delay_seconds: int = Field(
        30,
        ge=0,
        le=MAX_DELAY_SECONDS,
        description="An aborted preview is scaled down after this long.",
    )
    progress_deadline_seconds: int = Field(
        600,
        ge=10,
        le=MAX_DELAY_SECONDS,
        description="A preview not ready and smoke-tested within this long is aborted.",
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
    token_secret: ObjectName = Field(
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
