"""One typed settings object for the operator process, from `TURNOUT_OPERATOR_*` environment
variables (overridden by `turnout-operator run` flags). Nothing else reads the environment."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from turnout_operator.domain.notifications import Channels


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TURNOUT_OPERATOR_", extra="ignore")

    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch; empty with all_namespaces."
    )
    all_namespaces: bool = Field(False, description="Watch every namespace (cluster-wide RBAC).")
    tracking_uri: str = Field(
        "http://mlflow.mlflow.svc:5000",
        description="MLflow tracking URI for ModelDeployments that do not name one.",
    )
    serving_image: str = Field(
        "ghcr.io/turnout-dev/turnout-serve:0.1.0",
        description="turnout-serve image for ModelDeployments that do not name one.",
    )
    metrics_port: int = Field(8000, ge=0, le=65535, description="Port of the operator's /metrics.")
    smoke_via: str = Field(
        "auto",
        pattern="^(auto|proxy|direct)$",
        description="How smoke tests reach a preview Service, and analysis the serving pods' "
        "/metrics and /admin/shadow: `direct` (cluster DNS and pod IPs, in-cluster), `proxy` "
        "(through the API server's service and pod proxies, out-of-cluster), `auto` (direct "
        "when running in a pod).",
    )
    smoke_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of one smoke request.")
    metrics_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="Timeout of one read of a serving pod's /metrics or /admin/shadow, or of "
        "one Prometheus query of an analysis.",
    )
    registry_retry_seconds: float = Field(
        10.0, gt=0, description="First retry delay after a registry error (doubles up to 5 min)."
    )
    registry_timeout_seconds: float = Field(
        3.0,
        gt=0,
        description="Timeout of one registry request; a registry that never answers holds one "
        "registry worker this long, and delays nothing but its own ModelDeployments.",
    )
    registry_workers: int = Field(
        16, ge=1, description="Registry requests in flight at once, across ModelDeployments."
    )
    live_quality_interval_seconds: float = Field(
        300.0,
        gt=0,
        description="Read each ModelDeployment's active pods' live quality (MAE, RMSE, "
        "accuracy) at most this often, and tag the served MLflow model version with it "
        "(`turnout.live/...`); also once when a version stops being active.",
    )
    reconcile_workers: int = Field(
        8, ge=1, description="Reconciles running at once (one per ModelDeployment at most)."
    )
    resync_seconds: float = Field(
        60.0, gt=0, description="Reconcile every ModelDeployment at least this often."
    )
    # MLflow registry webhooks (docs/webhooks.md): off unless a port is given.
    webhook_port: int = Field(
        0, ge=0, le=65535,
        description="Port of the HTTPS endpoint for MLflow's registry webhooks (0: off).",
    )  # fmt: skip
    webhook_address: str = Field("0.0.0.0", description="Address the webhook endpoint binds.")
    webhook_cert_file: str = Field(
        "/etc/turnout/webhook-tls/tls.crt",
        description="The endpoint's TLS certificate (chain), PEM; re-read when it changes.",
    )
    webhook_key_file: str = Field(
        "/etc/turnout/webhook-tls/tls.key", description="The certificate's private key, PEM."
    )
    webhook_secret_file: str = Field(
        "/etc/turnout/webhook-secret/secret",
        description="The HMAC secret the webhook was created with in MLflow (surrounding "
        "whitespace ignored); re-read when it changes.",
    )
    webhook_max_age_seconds: float = Field(
        300.0,
        gt=0,
        description="Deliveries signed longer ago (or further ahead) than this are refused as "
        "stale; delivery ids are remembered this long to refuse replays.",
    )
    webhook_delivery_ids: int = Field(
        100_000, ge=1, description="Delivery ids remembered at most (the oldest go first)."
    )
    log_level: str = "info"
    # Leader election (docs/operations.md, "Running two replicas"): off unless asked for.
    leader_election: bool = Field(
        False,
        description="Run as one of several replicas: only the holder of the Lease reconciles "
        "and serves the registry webhooks; the others wait to take over.",
    )
    leader_election_lease: str = Field("turnout-operator", description="The Lease's name.")
    leader_election_namespace: str = Field(
        "", description="The Lease's namespace (empty: pod_namespace)."
    )
    leader_election_lease_seconds: float = Field(
        15.0,
        gt=0,
        description="A standby takes the Lease over once its holder has not renewed it for "
        "this long (at once when the holder released it on a clean stop).",
    )
    leader_election_renew_deadline_seconds: float = Field(
        10.0,
        gt=0,
        description="A leader that could not renew the Lease for this long exits (and is "
        "restarted as a standby); shorter than the lease.",
    )
    leader_election_retry_seconds: float = Field(
        2.0, gt=0, description="Between two attempts to take or renew the Lease."
    )
    pod_name: str = Field(
        "", description="This replica's identity in the Lease (empty: hostname and pid)."
    )
    pod_namespace: str = Field("", description="The namespace the operator runs in.")
    # Notifications (docs/notifications.md); the channels' URLs are secrets: set this from a Secret.
    notification_channels: Channels = Field(
        default_factory=list,
        description="The channels spec.notifications may name: a JSON list of {name, url, "
        "format} (format: slack, json or cloudevents).",
    )
    notification_queue_size: int = Field(
        100, ge=1, description="Notifications waiting per channel, at most; more are dropped."
    )
    notification_retries: int = Field(
        5, ge=0, le=100, description="Retries of a notification the receiver failed to take."
    )
    notification_retry_seconds: float = Field(
        1.0, gt=0, description="First wait before a retry (doubles, up to 30 s)."
    )
    notification_timeout_seconds: float = Field(
        5.0, gt=0, description="Timeout of one notification request."
    )
