"""One typed settings object per server process.

Every knob of `turnout-serve` lives here, read from `TURNOUT_*` environment variables and overridden
by command-line flags (see `cli.py`, whose `--help` is built from these fields). Port, host and
timeout also read the variables `mlflow models serve` reads (`MLFLOW_PORT`, `MLFLOW_HOST`,
`MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT`), after their `TURNOUT_*` name, and default as MLflow's do.
Nothing else in the package reads the environment for its own configuration; MLflow and boto3 keep
reading their standard `MLFLOW_*` / `AWS_*` variables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    """Configuration of one `turnout-serve` process."""

    model_config = SettingsConfigDict(env_prefix="TURNOUT_", extra="ignore", populate_by_name=True)

    model_uri: str = Field(
        "",
        description="What to serve: models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/STAGE, "
        "models:/MODEL_ID (a logged model), runs:/RUN_ID/PATH, another artifact URI or a local "
        "directory.",
    )
    host: str = Field(
        "127.0.0.1",
        validation_alias=AliasChoices("TURNOUT_HOST", "MLFLOW_HOST"),
        description="Address to listen on.",
    )
    port: int = Field(
        5000,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("TURNOUT_PORT", "MLFLOW_PORT"),
        description="Port to listen on.",
    )
    color: str = Field(
        "none", description="Blue-green color of this server (label on every metric)."
    )
    cache_dir: Path = Field(
        Path("/tmp/turnout-cache"),
        description="Where downloaded model artifacts are kept, one folder per model version, "
        "so a restart does not download again.",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="Largest request body accepted (413 above it)."
    )
    request_timeout_seconds: float = Field(
        60.0,
        gt=0,
        validation_alias=AliasChoices(
            "TURNOUT_REQUEST_TIMEOUT_SECONDS", "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"
        ),
        description="A request still running after this many seconds gets a 504.",
    )
    registry_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Seconds, in all, to resolve the model URI while the registry does not "
        "answer (refused, or silent), retrying with backoff; then exit with status 2.",
    )
    artifact_timeout_seconds: float = Field(
        300.0,
        gt=0,
        description="Seconds, in all, to keep retrying (with backoff) an artifact store that "
        "does not answer; then exit with status 3.",
    )
    termination_message_path: Path = Field(
        Path("/dev/termination-log"),
        description="Where the reason for exiting 2 or 3 is written, when that file exists (the "
        "kubelet makes it: the pod's container status then shows the reason).",
    )
    graceful_shutdown_seconds: float = Field(
        30.0, ge=0, description="On SIGTERM, how long in-flight requests may take to finish."
    )
    warmup: bool = Field(
        True,
        description="Predict once on the logged input example before reporting ready.",
    )
    drift_enabled: bool = Field(True, description="Compute data drift against the reference.")
    drift_window_rows: int = Field(1000, ge=20, description="Rows in the sliding drift window.")
    feedback_ttl_seconds: float = Field(
        3600.0, gt=0, description="How long a prediction waits for its ground-truth label."
    )
    feedback_max_predictions: int = Field(
        100_000, gt=0, description="Most predictions kept for joining feedback (oldest go first)."
    )
    feedback_window: int = Field(
        1000, gt=0, description="Labelled predictions in the live MAE/RMSE/accuracy window."
    )
    auth_token_file: Path | None = Field(
        None, description="File of bearer tokens, one a line; inference and feedback need one."
    )
    auth_tokens: SecretStr | None = Field(
        None, description="Comma-separated bearer tokens (alternative to auth_token_file)."
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Token the admin endpoints (/admin/shadow) require; without one (or "
        "admin_token_file) they answer 404.",
    )
    admin_token_file: Path | None = Field(
        None, description="File of admin tokens, one a line (alternative to admin_token)."
    )
    shadow_queue_size: int = Field(
        256, gt=0, description="Shadow copies waiting to be sent to the preview; more are dropped."
    )
    shadow_timeout_seconds: float = Field(
        2.0, gt=0, description="Time the preview has to answer one post of shadow copies."
    )
    shadow_window_rows: int = Field(
        1000, gt=0, description="Compared rows in the preview's shadow agreement window."
    )
    shadow_tolerance: float = Field(
        0.01,
        ge=0,
        description="Regressors: a shadow row agrees when |preview - active| is at most this "
        "share of the larger of the two.",
    )
    rate_limit_requests_per_second: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Inference requests a second each client may send to this server (a token "
        "bucket per bearer token with auth on, per client address without; 429 above it); 0 "
        "switches rate limiting off.",
    )
    rate_limit_burst: int = Field(
        10, gt=0, description="Requests a client may send at once before its rate applies."
    )
    rate_limit_max_clients: int = Field(
        10_000,
        gt=0,
        description="Clients whose rate limit is tracked; the least recently seen is forgotten "
        "first (and starts again with a full burst).",
    )
    payload_log_sample_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Share (0-1) of live requests logged with their answers; 0 switches the "
        "payload log off.",
    )
    payload_log_sink: Literal["stdout", "http"] = Field(
        "stdout", description="Where logged requests go: JSON lines on stdout, or POSTed to "
        "payload_log_url.",
    )  # fmt: skip
    payload_log_url: str = Field(
        "", description="The receiver the http sink POSTs to (http or https URL)."
    )
    payload_log_format: Literal["json", "cloudevents"] = Field(
        "json",
        description="The http sink's form: one JSON document per request, or two CloudEvents "
        "in binary mode (the request, the response), as KServe's logger sends.",
    )
    payload_log_redact: str = Field(
        "", description="Comma-separated input columns whose values are logged as REDACTED."
    )
    payload_log_hash: str = Field(
        "",
        description="Comma-separated input columns logged as the HMAC-SHA256 of their value, "
        "keyed with the salt (equal values still join).",
    )
    payload_log_hash_salt_file: Path | None = Field(
        None, description="File holding the secret salt the hashed columns are keyed with."
    )
    payload_log_queue_size: int = Field(
        1000, gt=0, description="Log entries waiting to be written; more are dropped (counted)."
    )
    payload_log_timeout_seconds: float = Field(
        2.0, gt=0, description="Time the http sink's receiver has to answer one POST."
    )
    payload_log_retries: int = Field(
        2, ge=0, le=10, description="Retries of an entry the sink could not take, with backoff."
    )
    log_level: str = Field("info", description="Log level of the server and uvicorn.")
    max_rows: int = Field(
        100_000,
        gt=0,
        description="Most rows one request may decode to (413 above it; checked before decoding "
        "where the format says: Parquet metadata, CSV lines).",
    )
    max_cells: int = Field(
        5_000_000, gt=0, description="Most values (rows x columns) one request may decode to."
    )
    max_header_bytes: int = Field(
        64 * 1024, gt=0, description="Largest request line plus headers accepted (431 above it)."
    )
    read_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Time a client has to send a request's headers, and again its body "
        "(408 after).",
    )
    keep_alive_seconds: int = Field(
        5, gt=0, description="An idle keep-alive connection is closed after this long."
    )
    scoring_threads: int = Field(
        4,
        gt=0,
        description="Worker threads that parse and score requests; more requests queue, so the "
        "event loop (health checks, metrics) is never starved by them.",
    )
    http: Literal["auto", "httptools", "h11"] = Field(
        "auto", description="HTTP/1.1 implementation: httptools when installed (auto), or h11."
    )
    api_docs: bool = Field(
        False, description="Serve the OpenAPI description (/openapi.json) and /docs."
    )

    @model_validator(mode="after")
    def _payload_log_sink_complete(self) -> ServingSettings:
        if self.payload_log_sample_rate == 0:
            return self
        if self.payload_log_sink == "http" and not self.payload_log_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError("payload_log_sink http needs payload_log_url, an http(s) URL")
        if self.payload_log_sink == "stdout" and self.payload_log_format == "cloudevents":
            raise ValueError("payload_log_format cloudevents needs payload_log_sink http")
        if self.payload_log_hash.strip(", ") and self.payload_log_hash_salt_file is None:
            raise ValueError("payload_log_hash needs payload_log_hash_salt_file (the secret salt)")
        return self
