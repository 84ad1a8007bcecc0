"""The real operator (`turnout-operator run`, out of cluster, with a kubeconfig) against the
Kubernetes API emulator, a real MLflow registry, and pods that are real `turnout-serve`
processes: a ModelDeployment becomes a served model and moves between versions blue-green."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import wait_until
from tests.integration.cluster import API, Cluster, running_cluster
from tests.integration.conftest import Registry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(
    mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    yield from running_cluster(mlflow_registry, tmp_path_factory.mktemp("cluster"))


def test_first_deploy_then_blue_green_version_bump(cluster: Cluster) -> None:
    strategy = {"blueGreen": {"scaleDownDelaySeconds": 3, "previewReplicaCount": 1}}
    cluster.apply("diabetes", {"name": "Diabetes", "version": "1"}, strategy=strategy)
    status = cluster.wait_phase("diabetes", "Healthy", activeVersion="1", activeColor="blue")
    assert status["modelUri"] == "models:/Diabetes/1"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True", "Progressing": "False", "ModelResolved": "True", "Degraded": "False",
    }  # fmt: skip
    assert cluster.selector("diabetes") == "blue"
    first = cluster.predict("diabetes")
    assert first.status_code == 200, first.text
    assert len(first.json()["predictions"]) == 1
    assert cluster.tag("Diabetes", "1", "diabetes") == "active"

    md = cluster.md("diabetes")
    cluster.kube.patch(API, "ModelDeployment", "default", "diabetes",
                       {"spec": {"model": {"name": "Diabetes", "version": "2"}}})  # fmt: skip
    assert md["metadata"]["generation"] < cluster.md("diabetes")["metadata"]["generation"]
    status = cluster.wait_phase("diabetes", "Healthy", activeVersion="2", activeColor="green")
    assert cluster.selector("diabetes") == "green"
    assert cluster.selector("diabetes-preview") == "green"
    second = cluster.predict("diabetes")
    assert second.status_code == 200, second.text
    assert second.json() != first.json()  # version 2 is another model (50 trees)
    assert [(h["version"], h["outcome"]) for h in status["history"]][:2] == [
        ("2", "Promoted"), ("1", "Promoted"),
    ]  # fmt: skip
    # The old color stays warm 3 s, then goes to zero and its version is retired.
    wait_until(
        lambda: cluster.kube.get("apps/v1", "Deployment", "default", "diabetes-blue")["spec"][
            "replicas"] == 0, timeout=30, what="blue scaled down")  # fmt: skip
    wait_until(lambda: cluster.tag("Diabetes", "1", "diabetes") == "retired", timeout=30,
               what="version 1 tagged retired")  # fmt: skip
    assert cluster.tag("Diabetes", "2", "diabetes") == "active"
    reasons = cluster.reasons("diabetes")
    for reason in ("RolloutStarted", "Promoted", "ScaledDown"):
        assert reason in reasons
    metrics = httpx.get(cluster.metrics).text
    assert 'turnout_operator_rollouts_total{outcome="promoted"} 2.0' in metrics


def test_an_invalid_spec_shows_why_in_status_and_events(cluster: Cluster) -> None:
    cluster.kube.create({
        "apiVersion": API, "kind": "ModelDeployment",
        "metadata": {"name": "broken-spec", "namespace": "default"},
        "spec": {"model": {"name": "Diabetes"}, "replicas": 1},
    })  # fmt: skip
    status = cluster.wait_phase("broken-spec", "Degraded")
    assert "exactly one of version, alias or stage" in status["message"]
    assert "InvalidSpec" in cluster.reasons("broken-spec")
    assert cluster.kube.get("apps/v1", "Deployment", "default", "broken-spec-blue") is None


def test_a_missing_model_is_reported_and_nothing_is_deployed(cluster: Cluster) -> None:
    cluster.apply("ghost", {"name": "NoSuchModel", "alias": "champion"})
    status = cluster.wait_phase("ghost", "Degraded")
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions["ModelResolved"] == ("False", "ModelNotFound")
    assert "NoSuchModel" in status["message"]
    assert cluster.kube.get("apps/v1", "Deployment", "default", "ghost-blue") is None
