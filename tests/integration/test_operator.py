"""The real operator (`turnout-operator run`, out of cluster, with a kubeconfig) against the
Kubernetes API emulator, a real MLflow registry, and pods that are real `turnout-serve`
processes: a ModelDeployment becomes a served model and moves between versions blue-green."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from tests.conftest import free_port, wait_until
from tests.integration.conftest import BIN, Process, Registry, start
from tests.kube.emulator import KubeEmulator
from turnout_operator.crd import build_crd

pytestmark = pytest.mark.slow

API = "turnout.dev/v1alpha1"
ROW = {"age": 0.03, "sex": 0.05, "bmi": 0.06, "bp": 0.02, "s1": -0.04, "s2": -0.03,
       "s3": -0.04, "s4": 0.0, "s5": 0.02, "s6": -0.02}  # fmt: skip


@dataclass
class Cluster:
    kube: KubeEmulator
    operator: Process
    metrics: str
    registry: Registry

    def apply(self, name: str, model: dict[str, str], **spec: Any) -> None:
        self.kube.create({
            "apiVersion": API, "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"model": model, "replicas": 1, **spec},
        })  # fmt: skip

    def md(self, name: str) -> dict[str, Any]:
        found = self.kube.get(API, "ModelDeployment", "default", name)
        assert found is not None
        return found

    def status(self, name: str) -> dict[str, Any]:
        return self.md(name).get("status") or {}

    def wait_phase(self, name: str, phase: str, timeout: float = 90, **fields: Any) -> dict:  # type: ignore[type-arg]
        def reached() -> dict | None:  # type: ignore[type-arg]
            self.operator.alive()
            status = self.status(name)
            ok = status.get("phase") == phase and all(status.get(k) == v for k, v in fields.items())
            return status if ok else None

        try:
            return wait_until(
                reached, timeout=timeout, interval=0.2, what=f"{name} {phase} {fields}"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstatus: {self.status(name)}\noperator log:\n"
                                 f"{self.operator.output()[-4000:]}") from None  # fmt: skip

    def selector(self, service: str) -> str | None:
        found = self.kube.get("v1", "Service", "default", service)
        return None if found is None else found["spec"]["selector"].get("turnout.dev/color")

    def predict(self, service: str) -> httpx.Response:
        return httpx.post(
            f"{self.kube.url}/api/v1/namespaces/default/services/{service}:http/proxy/invocations",
            json={"dataframe_records": [ROW]}, timeout=30,
        )  # fmt: skip

    def reasons(self, name: str) -> list[str]:
        return [e.get("reason", "") for e in self.kube.events("default", involved_name=name)]

    def tag(self, model: str, version: str, name: str) -> str | None:
        client = MlflowClient(self.registry.uri)
        tags = client.get_model_version(model, version).tags
        return tags.get(f"turnout.dev/default.{name}")


@pytest.fixture(scope="module")
def cluster(
    mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("cluster")
    with KubeEmulator(log_dir=home / "pods") as kube:
        kube.apply_crd(build_crd())
        kube.controller.behave_default("process")
        kubeconfig = kube.write_kubeconfig(home / "kubeconfig")
        port = free_port()
        env = {
            **mlflow_registry.env,
            "KUBECONFIG": str(kubeconfig),
            "TURNOUT_OPERATOR_TRACKING_URI": mlflow_registry.uri,
            "TURNOUT_OPERATOR_METRICS_PORT": str(port),
            "TURNOUT_OPERATOR_RESYNC_SECONDS": "10",
        }
        log = home / "operator.log"
        argv = [str(BIN / "turnout-operator"), "run", "--namespace", "default"]
        operator = Process(f"http://127.0.0.1:{port}", start(argv, log, env), log)
        try:
            yield Cluster(kube, operator, f"http://127.0.0.1:{port}/metrics", mlflow_registry)
        finally:
            operator.stop()


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
