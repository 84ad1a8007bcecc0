"""The retraining Job's manifest (domain/retraining_job.py)."""

from __future__ import annotations

import json

from turnout_operator.domain.actions import StartRetraining
from turnout_operator.domain.manifests import Defaults
from turnout_operator.domain.retraining_job import build_job
from turnout_operator.domain.spec import ModelDeploymentSpec

DEFAULTS = Defaults(image="turnout-serve:1", tracking_uri="http://mlflow:5000")


def test_the_job_runs_the_users_trainer_with_the_model_the_reason_and_the_credentials() -> None:
    spec = ModelDeploymentSpec.model_validate({
        "model": {"name": "fraud", "alias": "champion"},
        "registry": {"credentialsSecret": "mlflow-creds"},
        "retraining": {"jobTemplate": {
            "image": "trainer:2", "command": ["python", "train.py"], "args": ["--fast"],
            "env": [{"name": "EPOCHS", "value": "3"}],
            "resources": {"limits": {"cpu": "1"}}, "serviceAccountName": "trainer",
        }},
    })  # fmt: skip
    assert spec.retraining is not None
    start = StartRetraining("fraud-retrain-2", "Drift", "4", {"psi": 0.5, "bound": 0.2})
    job = build_job("fraud", "ml", start, spec, spec.retraining, DEFAULTS)
    labels = {
        "app.kubernetes.io/instance": "fraud", "turnout.dev/model-deployment": "fraud",
        "app.kubernetes.io/component": "retraining", "app.kubernetes.io/managed-by": "turnout",
        "turnout.dev/retraining-reason": "Drift",
    }  # fmt: skip
    assert job["metadata"] == {"name": "fraud-retrain-2", "namespace": "ml", "labels": labels}
    assert {k: v for k, v in job["spec"].items() if k != "template"} == {
        "backoffLimit": 0, "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 604800,
    }  # fmt: skip
    pod = job["spec"]["template"]["spec"]
    assert (pod["restartPolicy"], pod["serviceAccountName"]) == ("Never", "trainer")
    [container] = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "TURNOUT_MODEL_NAME": "fraud", "TURNOUT_MODEL_VERSION": "4",
        "TURNOUT_MODEL_ALIAS": "champion", "TURNOUT_MODEL_DEPLOYMENT": "ml/fraud",
        "TURNOUT_RETRAIN_REASON": "Drift",
        "TURNOUT_RETRAIN_FIGURES": '{"bound": 0.2, "psi": 0.5}',
        "TURNOUT_RETRAINING_JOB": "fraud-retrain-2", "TURNOUT_OPERATOR_PROMOTES": "false",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000", "EPOCHS": "3",
    }  # fmt: skip
    assert json.loads(env["TURNOUT_RETRAIN_FIGURES"]) == {"psi": 0.5, "bound": 0.2}
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-creds"}}]
    assert (container["image"], container["command"], container["args"]) == (
        "trainer:2", ["python", "train.py"], ["--fast"]
    )  # fmt: skip
    assert container["resources"] == {"limits": {"cpu": "1"}}
