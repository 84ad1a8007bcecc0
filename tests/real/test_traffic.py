"""What a client of the active Service sees while the operator works: zero failed requests.

One ModelDeployment of two replicas on the real control plane (real pods: `turnout-serve` run
by the node agent), and a client sending steady predictions through the API server's service
proxy (tests/real/traffic.py) from the first Healthy to the end, through: a blue-green switch
(smoke test on), a rollback by annotation to the warm color, a preview aborted by annotation,
the operator killed (SIGKILL) twice in a rollout, and an automatic rollback when a pod of the new
version is replaced and the replacement cannot load its model. Every request must answer 200.
bench/switch.py reports the same run's latencies by phase.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import Ridge

from tests.conftest import Registry, load_script
from tests.integration.cluster import ROW, Cluster, conditions
from tests.real.traffic import Traffic

pytestmark = [pytest.mark.real, pytest.mark.usefixtures("clean_model_deployments")]

MODEL, NAME = "Traffic", "steady"
PROMOTE, ABORT, ROLLBACK = (f"turnout.dev/{verb}" for verb in ("promote", "abort", "rollback"))


@pytest.fixture(scope="module")
def versions(mlflow_registry: Registry) -> list[str]:
    """Four versions of a model of the test's own: gradient boosting (100, then 50 trees), a
    ridge regression, and another ridge logged separately (its artifacts are removed later)."""
    models = load_script("demo_models")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_registry.uri)
    try:
        registered = models.register_diabetes(MODEL)["versions"]
        X, y = models.diabetes_frame()
        fourth = models._log_sklearn(Ridge(alpha=1.0).fit(X, y), X, MODEL, reference=False)
    finally:
        mlflow.set_tracking_uri(previous)
    return [*registered, fourth]


def artifacts(registry: Registry, version: str) -> Path:
    """The local directory holding a version's model files (the registry's artifact root)."""
    return registry.artifact_path(
        MlflowClient(registry.uri).get_model_version_download_uri(MODEL, version)
    )


def strategy(**options: Any) -> dict[str, Any]:
    return {"blueGreen": {"scaleDownDelaySeconds": 900, "abortScaleDownDelaySeconds": 2,
                          **options}}  # fmt: skip


def test_no_request_fails_through_switches_aborts_rollbacks_and_operator_restarts(
    cluster: Cluster, versions: list[str], mlflow_registry: Registry
) -> None:
    v1, v2, v3, v4 = versions
    cluster.apply(NAME, {"name": MODEL, "version": v1}, replicas=2, strategy=strategy())
    cluster.wait_phase(NAME, "Healthy", timeout=180, activeVersion=v1, activeColor="blue")
    path = f"/api/v1/namespaces/{cluster.namespace}/services/{NAME}:http/proxy/invocations"
    with Traffic(cluster.kube.http, path, {"dataframe_records": [ROW]}) as traffic:
        traffic.wait_answers(40)

        traffic.phase("switch")
        cluster.patch_spec(NAME, {"model": {"name": MODEL, "version": v2}})
        cluster.wait_phase(NAME, "Healthy", timeout=180, activeVersion=v2, activeColor="green")
        traffic.wait_answers(20)

        traffic.phase("rollback by annotation")
        cluster.annotate(NAME, ROLLBACK)
        status = cluster.wait_phase(NAME, "Degraded", activeVersion=v1, activeColor="blue")
        assert conditions(status)["Degraded"] == ("True", "RolledBack")
        traffic.wait_answers(20)

        traffic.phase("abort")
        cluster.patch_spec(NAME, {"model": {"name": MODEL, "version": v3},
                                  "strategy": strategy(autoPromotionEnabled=False)})  # fmt: skip
        cluster.wait_phase(NAME, "Paused", timeout=180, previewVersion=v3)
        cluster.annotate(NAME, ABORT)
        status = cluster.wait_phase(NAME, "Degraded", activeVersion=v1, rejectedVersions=[v2, v3])
        assert conditions(status)["Degraded"] == ("True", "AbortedByUser")
        traffic.wait_answers(20)

        traffic.phase("operator killed")
        cluster.patch_spec(NAME, {"model": {"name": MODEL, "version": v4}})
        cluster.wait_rollout(NAME, v4)
        cluster.restart_operator()
        cluster.wait_phase(NAME, "Paused", timeout=180, previewVersion=v4)
        cluster.restart_operator()
        cluster.annotate(NAME, PROMOTE)
        cluster.wait_phase(NAME, "Healthy", timeout=180, activeVersion=v4, activeColor="green")
        traffic.wait_answers(20)

        traffic.phase("automatic rollback")
        # A pod of the new version is replaced (deleted gracefully, as a drain would), and its
        # replacement cannot load the model: the operator goes back to the warm color.
        source = artifacts(mlflow_registry, v4)
        moved = source.with_name(source.name + ".moved")
        source.rename(moved)
        try:
            labels = f"turnout.dev/model-deployment={NAME},turnout.dev/model-version={v4}"
            serving = [p for p in cluster.kube.list("v1", "Pod", cluster.namespace, labels=labels)
                       if not p["metadata"].get("deletionTimestamp")]  # fmt: skip
            assert len(serving) == 2
            cluster.kube.delete("v1", "Pod", cluster.namespace, serving[0]["metadata"]["name"])
            status = cluster.wait_phase(NAME, "Degraded", timeout=180, activeVersion=v1,
                                        activeColor="blue")  # fmt: skip
            assert conditions(status)["Degraded"] == ("True", "AutoRolledBack")
            traffic.wait_answers(20)
        finally:
            moved.rename(source)
    summary = traffic.summary()
    assert list(summary) == ["steady", "switch", "rollback by annotation", "abort",
                             "operator killed", "automatic rollback"]  # fmt: skip
    assert traffic.failures() == []
