"""The retraining Job a `StartRetraining` asks for: a plain dict from arguments only.

The user's image and command run with what they need to train the next version: the model's
name (and alias, when spec.model follows one), the version serving when the retraining started,
why it started and on which figures (JSON), its own Job name (the trainer tags the version it
registers with it), whether the operator moves the alias (`promote: alias`) or the trainer
decides, the tracking URI, and the registry credentials Secret by reference (`envFrom`), never
copied.

Pure: no Kubernetes client.
"""

from __future__ import annotations

import json
from typing import Any

from turnout_operator.domain.actions import StartRetraining
from turnout_operator.domain.manifests import MANAGED_BY, NAME_LABEL, Defaults
from turnout_operator.domain.spec import ModelDeploymentSpec, Retraining

REASON_LABEL = "turnout.dev/retraining-reason"
COMPONENT = {"app.kubernetes.io/component": "retraining"}
FINISHED_TTL_SECONDS = 7 * 24 * 3600  # the Job controller deletes a finished Job after a week


def job_labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": name, NAME_LABEL: name, **COMPONENT, **MANAGED_BY}


def build_job(
    name: str,
    namespace: str,
    start: StartRetraining,
    spec: ModelDeploymentSpec,
    retraining: Retraining,
    defaults: Defaults,
) -> dict[str, Any]:
    t = retraining.job_template
    env = [
        {"name": "TURNOUT_MODEL_NAME", "value": spec.model.name},
        {"name": "TURNOUT_MODEL_VERSION", "value": start.version or ""},
        {"name": "TURNOUT_MODEL_ALIAS", "value": spec.model.alias or ""},
        {"name": "TURNOUT_MODEL_DEPLOYMENT", "value": f"{namespace}/{name}"},
        {"name": "TURNOUT_RETRAIN_REASON", "value": start.reason},
        {"name": "TURNOUT_RETRAIN_FIGURES", "value": json.dumps(start.figures, sort_keys=True)},
        {"name": "TURNOUT_RETRAINING_JOB", "value": start.job_name},
        {"name": "TURNOUT_OPERATOR_PROMOTES", "value": str(retraining.promote == "alias").lower()},
        {"name": "MLFLOW_TRACKING_URI",
         "value": spec.registry.tracking_uri or defaults.tracking_uri},
        *(e.to_api() for e in t.env),
    ]  # fmt: skip
    container: dict[str, Any] = {"name": "trainer", "image": t.image, "env": env}
    optional_container = {"command": t.command, "args": t.args, "resources": t.resources}
    container.update({key: value for key, value in optional_container.items() if value})
    if spec.registry.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": spec.registry.credentials_secret}}]
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    optional_pod = {
        "nodeSelector": t.node_selector,
        "tolerations": t.tolerations,
        "serviceAccountName": t.service_account_name,
        "imagePullSecrets": t.image_pull_secrets,
    }
    pod.update({key: value for key, value in optional_pod.items() if value})
    labels = {**job_labels(name), REASON_LABEL: start.reason}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": start.job_name, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": t.backoff_limit,
            "activeDeadlineSeconds": t.active_deadline_seconds,
            "ttlSecondsAfterFinished": FINISHED_TTL_SECONDS,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
