"""The `ModelDeployment` API (`turnout.dev/v1alpha1`): typed spec and status.

One source of truth: the CRD in `crds/` is generated from these models (`crd.py`) and a test keeps
the two identical. Field names are the API's camelCase names (aliases); Python code uses
snake_case. Defaults live here and in the CRD's structural schema alike, so a ModelDeployment read
back from the API server and one parsed here agree.

Pure: no kopf, Kubernetes or MLflow imports (an import-linter contract checks it).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from croniter import croniter
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
    "TURNOUT_SHADOW_QUEUE_SIZE", "TURNOUT_SHADOW_TIMEOUT_SECONDS", "TURNOUT_SHADOW_WINDOW_ROWS",
    "TURNOUT_SHADOW_TOLERANCE", "TURNOUT_RATE_LIMIT_MAX_CLIENTS", "TURNOUT_PAYLOAD_LOG_QUEUE_SIZE",
    "TURNOUT_PAYLOAD_LOG_TIMEOUT_SECONDS", "TURNOUT_PAYLOAD_LOG_RETRIES",
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
    topology_spread_constraints: list[dict[str, Any]] | None = Field(
        None,
        description="Pod topologySpreadConstraints; when empty, the pods of a color spread over "
        "nodes (kubernetes.io/hostname, maxSkew 1, ScheduleAnyway).",
    )


# A condition on the Prometheus provider's scalar result, as Argo Rollouts writes one
# (`result >= 0.95`, or `result[0] >= 0.95` for the first element of a vector), and nothing more:
# the operator compares one number, it never evaluates an expression language.
SUCCESS_CONDITION = (
    r"^\s*result(\[0\])?\s*(<=|>=|==|!=|<|>)\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"
)
MAX_MEASUREMENTS = 1000


class Shadow(_Model):
    """Mirroring of live traffic from the active color to the preview while it is analysed."""

    percent: float = Field(
        10, ge=0, le=100, description="Share of the active color's requests copied to the preview."
    )
    max_requests_per_second: float = Field(
        50,
        gt=0,
        le=10000,
        description="At most this many mirrored requests a second per active pod (the rest are "
        "dropped, never queued without bound).",
    )


class PrometheusQuery(_Model):
    """A PromQL query whose scalar result decides a measurement (the escape hatch)."""

    address: str = Field(
        pattern=r"^https?://\S+$", description="Prometheus' base URL (http or https)."
    )
    query: str = Field(min_length=1, description="PromQL returning one number (a scalar or a "
                       "one-element vector).")  # fmt: skip
    success_condition: str = Field(
        pattern=SUCCESS_CONDITION,
        description="`result OP NUMBER`, OP one of `<`, `<=`, `>`, `>=`, `==`, `!=` "
        "(`result[0]` reads the same); false fails the measurement, no result leaves it "
        "inconclusive.",
    )


class Provider(_Model):
    prometheus: PrometheusQuery = Field(description="A query to a Prometheus server.")


class _Analysis(_Model):
    """When to measure and how many bad verdicts to tolerate (Argo Rollouts' semantics); each
    gate adds its count and conditions (each optional; a measurement passes when all hold)."""

    CONDITIONS: ClassVar[tuple[str, ...]] = ()

    interval_seconds: int = Field(
        60,
        ge=5,
        le=MAX_POLL_INTERVAL_SECONDS,
        description="Seconds between measurements; the first is taken one interval after the "
        "analysis starts.",
    )
    failure_limit: int = Field(
        0,
        ge=0,
        le=MAX_MEASUREMENTS,
        description="The analysis fails once more measurements than this have failed.",
    )
    inconclusive_limit: int = Field(
        0,
        ge=0,
        le=MAX_MEASUREMENTS,
        description="The analysis is inconclusive once more measurements than this were.",
    )
    min_requests: int = Field(
        10,
        ge=0,
        le=10**9,
        description="A measurement with fewer requests (or compared mirrored requests) than "
        "this in its interval is inconclusive for the conditions that count them.",
    )

    @model_validator(mode="after")
    def _a_condition(self) -> _Analysis:
        if all(getattr(self, name) is None for name in self.CONDITIONS):
            names = ", ".join(to_camel(name) for name in self.CONDITIONS)
            raise ValueError(f"an analysis needs at least one condition: {names}")
        return self


PRE_CONDITIONS = (
    "shadow_agreement_min", "shadow_mean_abs_diff_max", "error_ratio_max",
    "p99_latency_seconds_max", "p99_latency_ratio_max", "prediction_drift_max", "provider",
)  # fmt: skip
POST_CONDITIONS = ("error_ratio_max", "p99_latency_ratio_max", "drift_max", "quality_max",
                   "provider")  # fmt: skip
SHADOW_CONDITIONS = ("shadow_agreement_min", "shadow_mean_abs_diff_max")


def _one_of_rule(conditions: tuple[str, ...]) -> JsonDict:
    names = [to_camel(name) for name in conditions]
    return {
        "rule": " || ".join(f"has(self.{name})" for name in names),
        "message": f"an analysis needs at least one condition: {', '.join(names)}",
    }


class PrePromotionAnalysis(_Analysis):
    """Measurements of the preview (against the active color) before the switch."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_one_of_rule(PRE_CONDITIONS)]}
    )
    CONDITIONS = PRE_CONDITIONS

    count: int = Field(3, ge=1, le=MAX_MEASUREMENTS, description="Measurements to take.")
    shadow_agreement_min: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Mirrored requests the preview answered like the active color / all "
        "compared, at least (needs shadow).",
    )
    shadow_mean_abs_diff_max: float | None = Field(
        None,
        ge=0,
        description="Mean absolute difference between the preview's and the active color's "
        "predictions on mirrored rows (regressors), at most (needs shadow).",
    )
    error_ratio_max: float | None = Field(
        None, ge=0, le=1, description="The preview's answers with a 5xx code / all, at most."
    )
    p99_latency_seconds_max: float | None = Field(
        None, gt=0, le=3600, description="The preview's p99 request latency, at most."
    )
    p99_latency_ratio_max: float | None = Field(
        None,
        gt=0,
        le=1000,
        description="The preview's p99 request latency / the active color's, at most.",
    )
    prediction_drift_max: float | None = Field(
        None,
        ge=0,
        description="The preview's prediction drift PSI minus the active color's (each against "
        "its own training reference, on the same traffic), at most.",
    )
    provider: Provider | None = Field(None, description="A query to Prometheus (escape hatch).")


class PostPromotionAnalysis(_Analysis):
    """Measurements of the new active color after the switch, while the old one is warm."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_one_of_rule(POST_CONDITIONS)]}
    )
    CONDITIONS = POST_CONDITIONS

    count: int | None = Field(
        None,
        ge=1,
        le=MAX_MEASUREMENTS,
        description="Measurements to take; absent: one every interval until the window ends.",
    )
    window_seconds: int | None = Field(
        None,
        ge=1,
        le=MAX_DELAY_SECONDS,
        description="How long after the switch the analysis runs, at most scaleDownDelaySeconds "
        "(the old color must stay warm to roll back to); absent: scaleDownDelaySeconds.",
    )
    error_ratio_max: float | None = Field(
        None,
        ge=0,
        le=1,
        description="The new active color's answers with a 5xx code / all, at most.",
    )
    p99_latency_ratio_max: float | None = Field(
        None,
        gt=0,
        le=1000,
        description="The new active color's p99 request latency / the old color's just before "
        "the switch, at most.",
    )
    drift_max: float | None = Field(
        None, ge=0, description="The new active color's prediction drift PSI, at most."
    )
    quality_max: float | None = Field(
        None,
        ge=0,
        description="Live error from labelled feedback, at most: MAE for regressors, "
        "1 - accuracy for classifiers.",
    )
    provider: Provider | None = Field(None, description="A query to Prometheus (escape hatch).")


class Analysis(_Model):
    pre_promotion: PrePromotionAnalysis | None = Field(
        None, description="Before the switch: measure the preview; fail aborts the rollout."
    )
    post_promotion: PostPromotionAnalysis | None = Field(
        None,
        description="After the switch: measure the new active color; fail rolls back to the "
        "warm old color.",
    )


SHADOW_RULE: JsonDict = {
    "rule": "has(self.shadow) || !has(self.analysis) || !has(self.analysis.prePromotion) || "
    + " && ".join(f"!has(self.analysis.prePromotion.{to_camel(n)})" for n in SHADOW_CONDITIONS),
    "message": "analysis.prePromotion.shadowAgreementMin and shadowMeanAbsDiffMax compare "
    "mirrored requests: they need shadow",
}
WINDOW_RULE: JsonDict = {
    "rule": "!has(self.analysis) || !has(self.analysis.postPromotion) || "
    "!has(self.analysis.postPromotion.windowSeconds) || "
    "self.analysis.postPromotion.windowSeconds <= self.scaleDownDelaySeconds",
    "message": "analysis.postPromotion.windowSeconds may be at most scaleDownDelaySeconds: a "
    "failing analysis rolls back to the old color, which is warm only that long",
}


class BlueGreen(_Model):
    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [SHADOW_RULE, WINDOW_RULE]}
    )

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
    shadow: Shadow | None = Field(
        None,
        description="Mirror live requests of the active color to the preview from its smoke "
        "test to the switch; absent: no mirroring.",
    )
    analysis: Analysis | None = Field(
        None, description="Measurements that gate the switch and may roll it back."
    )

    @model_validator(mode="after")
    def _analysis_fits(self) -> BlueGreen:
        pre = self.analysis.pre_promotion if self.analysis else None
        post = self.analysis.post_promotion if self.analysis else None
        if pre is not None and self.shadow is None:
            for name in SHADOW_CONDITIONS:
                if getattr(pre, name) is not None:
                    raise ValueError(
                        f"analysis.prePromotion.{to_camel(name)} compares mirrored requests: "
                        "it needs shadow (e.g. shadow: {percent: 10})"
                    )
        window = post.window_seconds if post is not None else None
        if window is not None and window > self.scale_down_delay_seconds:
            raise ValueError(
                f"analysis.postPromotion.windowSeconds ({window}) may be at most "
                f"scaleDownDelaySeconds ({self.scale_down_delay_seconds}): a failing analysis "
                "rolls back to the old color, which is warm only that long"
            )
        return self

    @property
    def post_window_seconds(self) -> int:
        """How long a post-promotion analysis runs after the switch."""
        post = self.analysis.post_promotion if self.analysis else None
        if post is None or post.window_seconds is None:
            return self.scale_down_delay_seconds
        return post.window_seconds


class Strategy(_Model):
    blue_green: BlueGreen = Field(
        default_factory=BlueGreen, description="Blue-green rollout settings."
    )


class Drift(_Model):
    enabled: bool = Field(True, description="Compute data drift against the run's reference.")
    window_size: int = Field(1000, ge=20, description="Rows in the sliding drift window.")


class Monitoring(_Model):
    drift: Drift = Field(default_factory=Drift, description="In-server data drift detection.")
    payload_log: PayloadLog | None = Field(
        None, description="Sampled logging of live requests and their answers (off when absent)."
    )


class Auth(_Model):
    token_secret: ObjectName = Field(
        "",
        description="Secret whose `tokens` key (one per line) holds the tokens turnout-serve "
        "requires, in `Authorization: Bearer` or `X-Turnout-Token`; the smoke test sends the "
        "first.",
    )


NotificationEvent = Literal[
    "rollout.started", "rollout.promoted", "rollout.aborted", "rollout.rolled_back",
    "retraining.started", "retraining.finished", "retraining.failed", "version.resolved",
]  # fmt: skip
MAX_NOTIFICATION_ROUTES = 32


class NotificationRoute(_Model):
    """Which events go to one of the operator's notification channels (docs/notifications.md)."""

    channel: str = Field(
        min_length=1, max_length=63, description="A channel the operator is configured with."
    )
    events: list[NotificationEvent] = Field(
        min_length=1, max_length=16, description="The events sent to it."
    )


RETRAIN = "turnout.dev/retrain"  # the annotation that asks for a retraining now (value "now")
MAX_HISTORY_LIMIT = 100


class DriftTrigger(_Model):
    """Retrain when the active color's prediction drift stays above a bound for a while."""

    psi_above: float = Field(
        gt=0, le=100, description="The active color's prediction drift PSI above this ..."
    )
    for_seconds: int = Field(
        600,
        ge=0,
        le=MAX_DELAY_SECONDS,
        description="... for at least this long, without a reading at or below it.",
    )
    min_rows: int = Field(
        100,
        ge=20,
        le=10**9,
        description="Readings of a drift window with fewer rows than this count as no reading "
        "(too little data to say the data drifted).",
    )


class QualityTrigger(_Model):
    """Retrain when the active version's live error (labelled feedback) passes a bound: MAE for
    regressors, 1 - accuracy for classifiers. Exactly one of maxAbsolute or
    maxRelativeToTraining."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.maxAbsolute) != has(self.maxRelativeToTraining)",
                    "message": "retraining.triggers.quality needs exactly one of maxAbsolute "
                    "or maxRelativeToTraining",
                }
            ]
        }
    )

    max_absolute: float | None = Field(
        None, ge=0, description="The live error above this value triggers."
    )
    max_relative_to_training: float | None = Field(
        None,
        gt=0,
        le=1000,
        description="The live error above this factor times the training run's own error "
        "(its `mae`, or 1 - its `accuracy`) triggers, e.g. 1.25.",
    )
    min_labelled_rows: int = Field(
        50,
        ge=1,
        le=10**9,
        description="Fewer labelled rows than this in the feedback window never trigger.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> QualityTrigger:
        if (self.max_absolute is None) == (self.max_relative_to_training is None):
            raise ValueError(
                "retraining.triggers.quality needs exactly one of maxAbsolute or "
                "maxRelativeToTraining"
            )
        return self


# Five fields (minute hour day-of-month month day-of-week), numbers, ranges, steps, lists and
# names; no seconds field and no @-macros. croniter checks the values (validate_cron below).
CRON = r"^\S+( \S+){4}$"


class RetrainingTriggers(_Model):
    drift: DriftTrigger | None = Field(None, description="Sustained prediction drift.")
    quality: QualityTrigger | None = Field(None, description="Live quality past a bound.")
    schedule: str | None = Field(
        None,
        pattern=CRON,
        description="A cron schedule in UTC, five fields (e.g. `0 3 * * 1`: Mondays at 03:00).",
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, schedule: str | None) -> str | None:
        if schedule is not None:
            validate_cron(schedule)
        return schedule


def validate_cron(schedule: str) -> None:
    fields = schedule.split()
    if len(fields) != 5 or not croniter.is_valid(schedule):
        raise ValueError(
            f"{schedule!r} is not a cron schedule of five fields (minute hour day-of-month "
            "month day-of-week, e.g. '0 3 * * 1')"
        )


class JobTemplate(_Model):
    """The training Job's pod: the user's image and command (a subset of a pod template)."""

    image: str = Field(min_length=1, description="The training image.")
    command: list[str] | None = Field(None, description="The container's command (entrypoint).")
    args: list[str] | None = Field(None, description="The container's arguments.")
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=256,
        description="Extra environment; MLFLOW_TRACKING_URI and TURNOUT_* are the operator's.",
    )
    resources: dict[str, Any] | None = Field(None, description="Container resources.")
    node_selector: dict[str, LabelValue] | None = Field(
        None, max_length=MAX_LABELS, description="Pod nodeSelector."
    )
    tolerations: list[dict[str, Any]] | None = Field(None, description="Pod tolerations.")
    service_account_name: ObjectName | None = Field(
        None, description="Service account of the training pod."
    )
    image_pull_secrets: list[dict[str, Any]] | None = Field(
        None, description="Pull secrets for the training image."
    )
    backoff_limit: int = Field(
        0, ge=0, le=10, description="Retries of the Job's pod before the Job fails."
    )
    active_deadline_seconds: int = Field(
        3600,
        ge=10,
        le=MAX_DELAY_SECONDS,
        description="The Job fails once it has run this long.",
    )


class Retraining(_Model):
    """When to retrain the model, and the Job that does it (docs/retraining.md)."""

    triggers: RetrainingTriggers = Field(
        default_factory=RetrainingTriggers,
        description="What starts a retraining; the turnout.dev/retrain=now annotation always does.",
    )
    job_template: JobTemplate = Field(description="The Job that trains and registers a version.")
    cooldown_seconds: int = Field(
        3600,
        ge=0,
        le=MAX_DELAY_SECONDS,
        description="No trigger starts a retraining this soon after the last one started (the "
        "annotation excepted).",
    )
    promote: Literal["none", "alias"] = Field(
        "none",
        description="none: the Job decides whether to move the alias; alias: the operator "
        "moves it when the new version's evaluation beats the serving one's.",
    )
    history_limit: int = Field(
        10, ge=1, le=MAX_HISTORY_LIMIT, description="Retrainings kept in status.retraining."
    )


# An input column the payload log protects: passed to the pods comma-separated.
ColumnName = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^,]+$")]
PAYLOAD_LOG_RULES: list[JsonDict] = [
    {"rule": "self.sink != 'http' || has(self.url)", "message": "payloadLog.sink http needs url"},
    {"rule": "self.format != 'cloudevents' || self.sink == 'http'",
     "message": "payloadLog.format cloudevents needs sink http"},
    {"rule": "size(self.hash) == 0 || size(self.hashSaltSecret) > 0",
     "message": "payloadLog.hash needs hashSaltSecret (the secret salt the hashes are keyed with)"},
    {"rule": "!self.redact.exists(c, c in self.hash)",
     "message": "payloadLog: a column is either redacted or hashed, not both"},
]  # fmt: skip


class PayloadLog(_Model):
    """Sampled logging of live requests and their answers (docs/payload-logs.md)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [*PAYLOAD_LOG_RULES]})

    sample_rate: float = Field(ge=0, le=1, description="Share (0-1) of live requests logged.")
    redact: list[ColumnName] = Field(
        default_factory=list, max_length=256, description="Input columns logged as REDACTED."
    )
    hash: list[ColumnName] = Field(
        default_factory=list,
        max_length=256,
        description="Input columns logged as the HMAC-SHA256 of their value keyed with the salt "
        "(equal values still join).",
    )
    hash_salt_secret: ObjectName = Field(
        "", description="Secret whose `salt` key holds the secret the hashes are keyed with."
    )
    sink: Literal["stdout", "http"] = Field(
        "stdout", description="stdout: JSON lines in the pods' logs; http: POSTed to url."
    )
    url: str | None = Field(
        None, pattern=r"^https?://\S+$", description="The receiver the http sink POSTs to."
    )
    format: Literal["json", "cloudevents"] = Field(
        "json",
        description="The http sink's form: a JSON document per request, or two CloudEvents in "
        "binary mode (the request, the response), as KServe's logger sends.",
    )

    @model_validator(mode="after")
    def _complete(self) -> PayloadLog:
        if self.sink == "http" and self.url is None:
            raise ValueError(PAYLOAD_LOG_RULES[0]["message"])
        if self.format == "cloudevents" and self.sink != "http":
            raise ValueError(PAYLOAD_LOG_RULES[1]["message"])
        if self.hash and not self.hash_salt_secret:
            raise ValueError(PAYLOAD_LOG_RULES[2]["message"])
        if set(self.redact) & set(self.hash):
            raise ValueError(PAYLOAD_LOG_RULES[3]["message"])
        return self


class RateLimit(_Model):
    """Inference requests each client may send to each serving pod: a token bucket per bearer
    token (with spec.auth) or per client address; 429 with Retry-After above it."""

    requests_per_second: float = Field(
        gt=0, le=100000, description="Requests a second each client may send to each pod."
    )
    burst: int = Field(10, ge=1, le=100000, description="Requests a client may send at once.")


# A Kubernetes quantity (resource.Quantity), positive: 4, 500m, 1.5, 2k.
QUANTITY = r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE])?$"
IN_FLIGHT_METRIC = "turnout_inference_in_flight"  # turnout-serve's gauge (serving/metrics.py)
MAX_REPLICAS = 100


class PodsMetric(_Model):
    """A per-pod metric of the custom metrics API (custom.metrics.k8s.io), averaged over the
    active color's pods: turnout-serve's in-flight requests, exposed by a Prometheus Adapter
    (docs/operations.md)."""

    name: str = Field(
        IN_FLIGHT_METRIC,
        pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
        description="The metric's name in the custom metrics API.",
    )
    average_value: str = Field(
        pattern=QUANTITY, description="The target average per pod (a quantity: 4, 500m)."
    )


METRICS_RULE: JsonDict = {
    "rule": "has(self.cpuUtilization) || has(self.pods)",
    "message": "autoscaling.metrics needs cpuUtilization or pods",
}


class ScalingMetrics(_Model):
    """What the HorizontalPodAutoscaler scales on: the largest count any of them asks for."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [METRICS_RULE]})

    cpu_utilization: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Target average CPU use, in percent of the pods' CPU request "
        "(template.resources.requests.cpu must be set).",
    )
    pods: PodsMetric | None = Field(
        None, description="A per-pod metric of the custom metrics API (in-flight requests)."
    )

    @model_validator(mode="after")
    def _one_at_least(self) -> ScalingMetrics:
        if self.cpu_utilization is None and self.pods is None:
            raise ValueError(METRICS_RULE["message"])
        return self


MIN_MAX_RULE: JsonDict = {
    "rule": "self.minReplicas <= self.maxReplicas",
    "message": "autoscaling.minReplicas may be at most maxReplicas",
}


class Autoscaling(_Model):
    """One HorizontalPodAutoscaler per ModelDeployment, on the active color's Deployment: it
    moves with the active color at each switch and back at a rollback (docs/operations.md)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [MIN_MAX_RULE]})

    min_replicas: int = Field(1, ge=1, le=MAX_REPLICAS, description="Fewest active pods.")
    max_replicas: int = Field(ge=1, le=MAX_REPLICAS, description="Most active pods.")
    metrics: ScalingMetrics = Field(
        default_factory=lambda: ScalingMetrics(cpu_utilization=80),
        description="What to scale on; CPU at 80% of the request when left out.",
    )

    @model_validator(mode="after")
    def _min_max(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(MIN_MAX_RULE["message"])
        return self


class DisruptionBudget(_Model):
    min_available: int | None = Field(
        None,
        ge=0,
        le=MAX_REPLICAS,
        description="Pods of a color that voluntary evictions (node drains) must leave "
        "running; when empty, at most one pod of a color is evicted at a time.",
    )


ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]
# An Ingress rule's host (networking/v1 validation: a DNS-1123 subdomain, or one under a leading
# `*.` wildcard); an HTTPRoute hostname follows the same rule.
HOST = anchored(rf"(\*\.)?{DNS1123_SUBDOMAIN}")
Host = Annotated[str, Field(max_length=DNS1123_SUBDOMAIN_MAX, pattern=HOST)]
HTTP_PATH = r"^/\S*$"
ROUTE_ANNOTATIONS_SIZE_RULE: JsonDict = {
    "rule": ANNOTATIONS_SIZE_RULE["rule"],
    "message": f"annotations may total at most {POD_ANNOTATIONS_BUDGET} characters (keys and "
    "values; the API server allows 256 KiB per object, the operator adds its own)",
}
Annotations = Annotated[
    dict[str, str],
    Field(
        max_length=MAX_ANNOTATIONS,
        json_schema_extra={"x-kubernetes-validations": [ROUTE_ANNOTATIONS_SIZE_RULE]},
    ),
]


class ServiceSpec(_Model):
    """How the active Service is reached (domain/exposure.py). The preview Service stays an
    internal ClusterIP on port 80: the operator's smoke test and mirrored requests reach it
    there; `ingress.preview` exposes it on a host of its own."""

    type: ServiceType = Field("ClusterIP", description="ClusterIP, NodePort or LoadBalancer.")
    port: int = Field(80, ge=1, le=65535, description="The port the active Service listens on.")
    annotations: Annotations | None = Field(
        None, description="Extra annotations (e.g. a cloud load balancer's settings)."
    )
    labels: dict[str, LabelValue] | None = Field(
        None, max_length=MAX_LABELS, description="Extra labels; the operator's own win."
    )


class IngressTLS(_Model):
    secret_name: ObjectName = Field(
        min_length=1, description="Secret with the certificate of the host (and preview host)."
    )


class PreviewHost(_Model):
    host: Host = Field(description="Host on which the preview Service is reached.")


class IngressSpec(_Model):
    """A networking.k8s.io/v1 Ingress `<name>` to the active Service (and the preview)."""

    class_name: ObjectName | None = Field(None, description="The IngressClass; absent: default.")
    host: Host | None = Field(
        None, description="Host of the active Service; absent: any host (the Ingress' address)."
    )
    path: str = Field("/", pattern=HTTP_PATH, max_length=1024, description="Path prefix.")
    tls: IngressTLS | None = Field(None, description="Terminate TLS with this Secret (https).")
    annotations: Annotations | None = Field(
        None, description="Annotations of the Ingress (the controller's settings)."
    )
    preview: PreviewHost | None = Field(
        None, description="Also route this host to the preview Service (testing a rollout)."
    )


class ParentRef(_Model):
    """A Gateway API ParentReference: the Gateway (or listener) the route attaches to."""

    name: str = Field(min_length=1, max_length=253, description="The Gateway's name.")
    namespace: ObjectName | None = Field(None, description="Its namespace; absent: the route's.")
    section_name: str | None = Field(
        None, min_length=1, max_length=253, description="One listener of the Gateway."
    )
    port: int | None = Field(None, ge=1, le=65535, description="One port of the Gateway.")


class HTTPRouteSpec(_Model):
    """A gateway.networking.k8s.io/v1 HTTPRoute `<name>` to the active Service."""

    parent_refs: list[ParentRef] = Field(
        min_length=1, max_length=32, description="The Gateways the route attaches to."
    )
    hostnames: list[Host] = Field(
        default_factory=list, max_length=16, description="Hosts it matches; empty: any."
    )
    path: str = Field("/", pattern=HTTP_PATH, max_length=1024, description="Path prefix.")
    scheme: Literal["http", "https"] = Field(
        "http", description="How clients reach the Gateway's listener: the scheme of status.url."
    )
    annotations: Annotations | None = Field(None, description="Annotations of the HTTPRoute.")


PROMOTE_ALIAS_RULE: JsonDict = {
    "rule": "!has(self.retraining) || self.retraining.promote != 'alias' || has(self.model.alias)",
    "message": "retraining.promote: alias moves model.alias: it needs model.alias",
}


class ModelDeploymentSpec(_Model):
    """What to serve, from which registry, on which pods, and how to roll versions out."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [PROMOTE_ALIAS_RULE]})

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
    notifications: list[NotificationRoute] = Field(
        default_factory=list,
        max_length=MAX_NOTIFICATION_ROUTES,
        description="Which events are sent to which of the operator's notification channels.",
    )
    retraining: Retraining | None = Field(
        None, description="Retrain on drift, decaying quality, a schedule or by hand."
    )
    rate_limit: RateLimit | None = Field(
        None,
        description="Per-client rate limit of inference on each serving pod (off when absent).",
    )
    autoscaling: Autoscaling | None = Field(
        None,
        description="Scale the active color with load (a HorizontalPodAutoscaler that follows "
        "it); spec.replicas is then ignored.",
    )
    disruption_budget: DisruptionBudget | None = Field(
        None, description="The PodDisruptionBudget of each color; when empty, maxUnavailable 1."
    )
    service: ServiceSpec = Field(
        default_factory=ServiceSpec, description="Type, port and metadata of the active Service."
    )
    ingress: IngressSpec | None = Field(
        None, description="An Ingress to the active (and preview) Service; removed when absent."
    )
    http_route: HTTPRouteSpec | None = Field(
        None, description="A Gateway API HTTPRoute to the active Service; removed when absent."
    )

    @model_validator(mode="after")
    def _promote_moves_an_alias(self) -> ModelDeploymentSpec:
        retraining = self.retraining
        if retraining is not None and retraining.promote == "alias" and self.model.alias is None:
            raise ValueError(PROMOTE_ALIAS_RULE["message"])
        return self

    @property
    def blue_green(self) -> BlueGreen:
        return self.strategy.blue_green
