"""Builders of the objects a ModelDeployment owns: one Deployment per color, two Services.

Plain dicts from arguments only (no settings or environment look-ups), so a test states exactly
what a pod runs. The pods run `turnout-serve` configured through `TURNOUT_*` environment
variables; the registry credentials come from the user's Secret by reference (`envFrom`), never
copied into the Deployment. Pods run as non-root with a read-only root filesystem; the model
cache and /tmp are emptyDir volumes.

Selectors use only the ModelDeployment's name and the color, which never change for an object;
the served version is a pod label (for people and dashboards) and part of the template.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from turnout_operator.domain.spec import Color, ModelDeploymentSpec

PORT = 8080
CACHE_DIR = "/var/cache/turnout"
TOKENS_DIR = "/etc/turnout/auth"
TOKENS_KEY = "tokens"  # the key of spec.auth.tokenSecret that the pods read as their token file
SALT_DIR = "/etc/turnout/payload-log"
SALT_KEY = "salt"  # the key of spec.monitoring.payloadLog.hashSaltSecret
# The admin token of turnout-serve's /admin endpoints (shadow traffic): a Secret the operator
# creates per ModelDeployment and every serving pod mounts, whether mirroring is asked for or
# not, so turning mirroring on or off never changes the pod template (no restart).
ADMIN_DIR = "/etc/turnout/admin"
# Where turnout-serve writes why it exits (a package the model needs that the image lacks, ...):
# the pod's container status carries it, and the operator reads it from there.
TERMINATION_LOG = "/dev/termination-log"
ADMIN_TOKEN_HEADER = "X-Turnout-Admin-Token"
# The header turnout-serve also takes a token in (its TOKEN_HEADER): the API server's service
# proxy deletes `Authorization` before forwarding, so the smoke test sends the token here.
TOKEN_HEADER = "X-Turnout-Token"
NAME_LABEL = "turnout.dev/model-deployment"
COLOR_LABEL = "turnout.dev/color"
VERSION_LABEL = "turnout.dev/model-version"
HASH_ANNOTATION = "turnout.dev/template-hash"
MANAGED_BY = {"app.kubernetes.io/managed-by": "turnout"}
# A pod being deleted gets SIGTERM while kube-proxies and ingresses still route new connections
# to it (endpoint removal propagates in parallel). The kubelet's own sleep (`preStop.sleep`,
# Kubernetes >= 1.30; the image needs no shell, and no server endpoint exists for a client to
# hold open) keeps the pod serving until they have caught up; then turnout-serve drains.
PRESTOP_SECONDS = 5
DRAIN_SECONDS = 30  # turnout-serve's TURNOUT_GRACEFUL_SHUTDOWN_SECONDS default
# The grace period covers the preStop sleep, the drain, and the keep-alive timeout (5 s) after
# which idle connections close, with room to exit.
TERMINATION_GRACE_SECONDS = PRESTOP_SECONDS + DRAIN_SECONDS + 10


@dataclass(frozen=True)
class Defaults:
    """What the operator's settings supply when the spec leaves it out."""

    image: str
    tracking_uri: str


def deployment_name(name: str, color: Color) -> str:
    return f"{name}-{color}"


def service_name(name: str, role: str) -> str:
    return name if role == "active" else f"{name}-preview"


def admin_secret_name(name: str) -> str:
    return f"{name}-turnout-admin"


def selector(name: str, color: Color) -> dict[str, str]:
    return {NAME_LABEL: name, COLOR_LABEL: color}


def labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "turnout-serve", "app.kubernetes.io/instance": name,
            NAME_LABEL: name, **MANAGED_BY}  # fmt: skip


def build_deployment(
    name: str,
    namespace: str,
    color: Color,
    version: str,
    model_uri: str,
    replicas: int,
    spec: ModelDeploymentSpec,
    defaults: Defaults,
) -> dict[str, Any]:
    template = _pod_template(name, color, version, model_uri, spec, defaults)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(name, color),
            "namespace": namespace,
            "labels": {**labels(name), COLOR_LABEL: color, VERSION_LABEL: version},
            "annotations": {HASH_ANNOTATION: template_hash(template)},
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": selector(name, color)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": template,
        },
    }


def build_service(name: str, namespace: str, role: str, color: Color) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(name, role),
            "namespace": namespace,
            "labels": {**labels(name), "turnout.dev/service-role": role},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector(name, color),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def spread(name: str, color: Color) -> list[dict[str, Any]]:
    """The default topology spread of a color's pods: over nodes, as evenly as the scheduler
    can without leaving a pod unscheduled (one node down takes as few of them as it can)."""
    return [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
             "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": selector(name, color)}}]  # fmt: skip


def first_token(tokens: str) -> str | None:
    """The token the smoke test sends: the first of the token file's lines, read as
    turnout-serve reads it (one token a line, surrounding blanks and empty lines skipped)."""
    return next((line.strip() for line in tokens.splitlines() if line.strip()), None)


def template_hash(template: dict[str, Any]) -> str:
    """Stable digest of a pod template: an unchanged hash means nothing to patch."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _pod_template(
    name: str,
    color: Color,
    version: str,
    model_uri: str,
    spec: ModelDeploymentSpec,
    defaults: Defaults,
) -> dict[str, Any]:
    t = spec.template
    pod: dict[str, Any] = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(color, model_uri, spec, defaults)],
        "volumes": [
            {"name": "cache", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "admin", "secret": {"secretName": admin_secret_name(name)}},
        ],
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "topologySpreadConstraints": t.topology_spread_constraints or spread(name, color),
    }
    if spec.auth.token_secret:
        pod["volumes"].append({"name": "tokens", "secret": {"secretName": spec.auth.token_secret}})
    payload_log = spec.monitoring.payload_log
    if payload_log is not None and payload_log.hash_salt_secret:
        pod["volumes"].append({"name": "salt",
                               "secret": {"secretName": payload_log.hash_salt_secret}})  # fmt: skip
    optional = {
        "nodeSelector": t.node_selector,
        "tolerations": t.tolerations,
        "affinity": t.affinity,
        "serviceAccountName": t.service_account_name,
        "imagePullSecrets": t.image_pull_secrets,
    }
    pod.update({key: value for key, value in optional.items() if value})
    return {
        "metadata": {
            "labels": {
                **(t.pod_labels or {}),
                **labels(name),
                COLOR_LABEL: color,
                VERSION_LABEL: version,
            },
            "annotations": {
                **(t.pod_annotations or {}),
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": pod,
    }


def _container(
    color: Color, model_uri: str, spec: ModelDeploymentSpec, defaults: Defaults
) -> dict[str, Any]:
    drift = spec.monitoring.drift
    env = [
        {"name": "TURNOUT_MODEL_URI", "value": model_uri},
        {"name": "TURNOUT_HOST", "value": "0.0.0.0"},
        {"name": "TURNOUT_PORT", "value": str(PORT)},
        {"name": "TURNOUT_COLOR", "value": color},
        {"name": "TURNOUT_CACHE_DIR", "value": CACHE_DIR},
        {"name": "TURNOUT_DRIFT_ENABLED", "value": "true" if drift.enabled else "false"},
        {"name": "TURNOUT_DRIFT_WINDOW_ROWS", "value": str(drift.window_size)},
        {"name": "MLFLOW_TRACKING_URI",
         "value": spec.registry.tracking_uri or defaults.tracking_uri},
    ]  # fmt: skip
    env.append({"name": "TURNOUT_ADMIN_TOKEN_FILE", "value": f"{ADMIN_DIR}/{TOKENS_KEY}"})
    env.append({"name": "TURNOUT_TERMINATION_MESSAGE_PATH", "value": TERMINATION_LOG})
    mounts: list[dict[str, Any]] = [
        {"name": "cache", "mountPath": CACHE_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "admin", "mountPath": ADMIN_DIR, "readOnly": True},
    ]
    if spec.auth.token_secret:
        env.append({"name": "TURNOUT_AUTH_TOKEN_FILE", "value": f"{TOKENS_DIR}/{TOKENS_KEY}"})
        mounts.append({"name": "tokens", "mountPath": TOKENS_DIR, "readOnly": True})
    env += _payload_log_env(spec, mounts) + _rate_limit_env(spec)
    container: dict[str, Any] = {
        "name": "server",
        "image": spec.template.image or defaults.image,
        "command": ["turnout-serve"],
        "env": [*env, *(e.to_api() for e in spec.template.env)],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": _probe("/v2/health/ready", period=2, failures=3),
        "livenessProbe": _probe("/v2/health/live", period=10, failures=3),
        # Loading a large model can take minutes: liveness waits for the first live answer.
        "startupProbe": _probe("/v2/health/live", period=2, failures=150),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
        # A crash before it writes the file (an import error) still shows its last log lines.
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if spec.registry.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": spec.registry.credentials_secret}}]
    if spec.template.resources:
        container["resources"] = spec.template.resources
    return container


def _payload_log_env(
    spec: ModelDeploymentSpec, mounts: list[dict[str, Any]]
) -> list[dict[str, str]]:
    """turnout-serve's payload log settings; the salt Secret mounted where they say."""
    payload_log = spec.monitoring.payload_log
    if payload_log is None:
        return []
    env = {
        "TURNOUT_PAYLOAD_LOG_SAMPLE_RATE": f"{payload_log.sample_rate:g}",
        "TURNOUT_PAYLOAD_LOG_SINK": payload_log.sink,
        "TURNOUT_PAYLOAD_LOG_FORMAT": payload_log.format,
        "TURNOUT_PAYLOAD_LOG_URL": payload_log.url or "",
        "TURNOUT_PAYLOAD_LOG_REDACT": ",".join(payload_log.redact),
        "TURNOUT_PAYLOAD_LOG_HASH": ",".join(payload_log.hash),
    }
    if payload_log.hash_salt_secret:
        env["TURNOUT_PAYLOAD_LOG_HASH_SALT_FILE"] = f"{SALT_DIR}/{SALT_KEY}"
        mounts.append({"name": "salt", "mountPath": SALT_DIR, "readOnly": True})
    return [{"name": name, "value": value} for name, value in env.items() if value]


def _rate_limit_env(spec: ModelDeploymentSpec) -> list[dict[str, str]]:
    limit = spec.rate_limit
    if limit is None:
        return []
    return [
        {
            "name": "TURNOUT_RATE_LIMIT_REQUESTS_PER_SECOND",
            "value": f"{limit.requests_per_second:g}",
        },
        {"name": "TURNOUT_RATE_LIMIT_BURST", "value": str(limit.burst)},
    ]


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }
