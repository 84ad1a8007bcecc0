"""turnout on a real cluster (kind): the images, the chart with its bundled MLflow, the operator
in a pod, served models as real pods. The quickstart's story (a model served by alias through one
URL; the alias moves; the same URL answers from the other color), then what a user does when a
rollout goes wrong: a version that does not exist, an abort, a rollback. Each test has its own
ModelDeployment in namespace `e2e`, deleted when it ends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import wait_until
from tests.e2e.conftest import (
    NAMESPACE,
    NODE_PORT,
    ROOT,
    Forward,
    Kubectl,
    Versions,
    quickstart_models,
    skip_without_kind,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

# Before anything heavy is imported: without kind, this module costs nothing.
skip_without_kind()

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(2700)]

ABORT, ROLLBACK = "turnout.dev/abort", "turnout.dev/rollback"
HEALTHY = {
    "Ready": ("True", "Available"),
    "Progressing": ("False", "RolloutComplete"),
    "ModelResolved": ("True", "Resolved"),
    "Degraded": ("False", "Healthy"),
}
ROLLOUT_TIMEOUT = 600  # image already on the node; model download, load, smoke test, switch


@pytest.fixture(autouse=True)
def clean_up(kube: Kubectl) -> Iterator[None]:
    yield
    kube("delete", "modeldeployments", "--all", "-n", NAMESPACE, "--wait=false")


# --- helpers: what a user types, and reads back ---------------------------------------------------


def apply(kube: Kubectl, name: str, model: dict[str, str], **spec: Any) -> None:
    kube.apply({
        "apiVersion": "turnout.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"model": model, "replicas": 1, **spec},
    })  # fmt: skip


def patch_spec(kube: Kubectl, name: str, spec: dict[str, Any]) -> None:
    kube(
        "patch", "mdep", name, "-n", NAMESPACE, "--type", "merge", "-p", json.dumps({"spec": spec})
    )


def annotate(kube: Kubectl, name: str, key: str) -> None:
    kube("annotate", "mdep", name, "-n", NAMESPACE, f"{key}=now")


def status(kube: Kubectl, name: str) -> dict[str, Any]:
    return dict(kube.get("mdep", name).get("status") or {})


def conditions(found: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in found.get("conditions", [])}


def wait_status(kube: Kubectl, name: str, what: str, check: Any) -> dict[str, Any]:
    """The status once `check(status)` holds; on timeout, the status, the description and the
    operator's log, to say why."""

    def reached() -> dict[str, Any] | None:
        found = status(kube, name)
        return found if check(found) else None

    try:
        return wait_until(reached, timeout=ROLLOUT_TIMEOUT, interval=2, what=f"{name}: {what}")
    except AssertionError as exc:
        describe = kube("describe", "mdep", name, "-n", NAMESPACE)
        raise AssertionError(f"{exc}\n{describe}\noperator log:\n{kube.operator_log()}") from None


def wait_phase(kube: Kubectl, name: str, phase: str, **fields: Any) -> dict[str, Any]:
    return wait_status(
        kube, name, f"{phase} {fields}",
        lambda s: s.get("phase") == phase and all(s.get(k) == v for k, v in fields.items()),
    )  # fmt: skip


def selector(kube: Kubectl, service: str) -> str:
    return str(kube.get("service", service)["spec"]["selector"]["turnout.dev/color"])


def replicas(kube: Kubectl, deployment: str) -> int:
    return int(kube.get("deployment", deployment)["spec"]["replicas"])


def served(kube: Kubectl, service: str) -> tuple[str, str]:
    """(model version, color) answering behind a Service, through the API server."""
    answer = kube.service_get(service, "version")
    return answer["model_version"], answer["color"]


def wait_served(kube: Kubectl, service: str, version: str, color: str) -> None:
    """Endpoints follow a Service's selector within a moment of the switch: wait for it."""
    wait_until(lambda: served(kube, service) == (version, color), timeout=60, interval=1,
               what=f"{service} answering from version {version} ({color})")  # fmt: skip


def tag(client: MlflowClient, version: str, name: str) -> str | None:
    return client.get_model_version("Diabetes", version).tags.get(f"turnout.dev/{NAMESPACE}.{name}")


def registry(uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(uri)


def expected_predictions(trees: int) -> list[float]:
    """What quickstart_models.py's regressor of `trees` stages predicts for the first 3 rows:
    the same data and seed, trained here."""
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = GradientBoostingRegressor(n_estimators=trees, random_state=0).fit(X, y)
    return [float(p) for p in model.predict(X.iloc[:3])]


def answer_at(url: str) -> dict[str, Any]:
    """quickstart_models.py's `predict`, as the quickstart prints it."""
    return dict(json.loads(quickstart_models("predict", url)))


# --- the quickstart's story -------------------------------------------------------------------------


def test_moving_the_alias_switches_colors_behind_the_same_url(
    kube: Kubectl, mlflow: Forward, diabetes: Versions, host_port: int
) -> None:
    client = registry(mlflow.uri)
    client.set_registered_model_alias("Diabetes", "champion", diabetes.first)
    kube("apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "diabetes-champion.yaml"))
    found = wait_phase(
        kube, "diabetes", "Healthy", activeVersion=diabetes.first, activeColor="blue"
    )
    assert conditions(found) == HEALTHY
    assert replicas(kube, "diabetes-blue") == 2

    # The quickstart's way in from the host: the active Service as a NodePort (kind-config.yaml).
    patch = {"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": NODE_PORT}]}}
    kube("patch", "service", "diabetes", "-n", NAMESPACE, "-p", json.dumps(patch))
    url = f"http://127.0.0.1:{host_port}"
    wait_until(lambda: httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200,
               timeout=120, interval=1, what="the active Service on the NodePort")  # fmt: skip
    assert answer_at(url) == {
        "model": "Diabetes", "version": diabetes.first, "color": "blue",
        "predictions": pytest.approx(expected_predictions(100), rel=1e-9),
    }  # fmt: skip

    client.set_registered_model_alias("Diabetes", "champion", diabetes.second)
    found = wait_phase(kube, "diabetes", "Healthy", activeVersion=diabetes.second,
                       activeColor="green")  # fmt: skip
    assert conditions(found) == HEALTHY
    assert selector(kube, "diabetes") == "green"
    wait_until(lambda: httpx.get(f"{url}/info", timeout=5).json()["color"] == "green",
               timeout=60, interval=1, what="the NodePort answering from green")  # fmt: skip
    assert answer_at(url) == {
        "model": "Diabetes", "version": diabetes.second, "color": "green",
        "predictions": pytest.approx(expected_predictions(50), rel=1e-9),
    }  # fmt: skip
    # The operator's NodePort-agnostic Service patch kept the port the quickstart set.
    assert kube.get("service", "diabetes")["spec"]["ports"][0]["nodePort"] == NODE_PORT
    wait_until(lambda: tag(client, diabetes.second, "diabetes") == "active", timeout=60,
               what="the new version tagged active in MLflow")  # fmt: skip


def test_the_classifier_example_serves_its_pinned_version(kube: Kubectl, mlflow: Forward) -> None:
    client = registry(mlflow.uri)
    if not client.search_model_versions("name='Iris'"):
        assert quickstart_models("register-iris", "--tracking-uri", mlflow.uri) == "1"
    kube("apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "iris-v1.yaml"))
    found = wait_phase(kube, "iris", "Healthy", activeVersion="1", activeColor="blue")
    assert conditions(found) == HEALTHY
    assert served(kube, "iris") == ("1", "blue")
    pod = json.loads(kube("get", "pods", "-n", NAMESPACE, "-l", "turnout.dev/model-deployment=iris",
                          "-o", "json"))["items"][0]  # fmt: skip
    assert pod["metadata"]["labels"]["team"] == "ml-platform"


# --- when a rollout goes wrong ----------------------------------------------------------------------


def test_a_version_that_does_not_exist_leaves_the_active_one_serving(
    kube: Kubectl, diabetes: Versions
) -> None:
    apply(kube, "pinned", {"name": "Diabetes", "version": diabetes.first})
    wait_phase(kube, "pinned", "Healthy", activeVersion=diabetes.first, activeColor="blue")

    patch_spec(kube, "pinned", {"model": {"name": "Diabetes", "version": "9999"}})
    found = wait_status(kube, "pinned", "ModelResolved=False",
                        lambda s: conditions(s).get("ModelResolved", ("",))[0] == "False")  # fmt: skip
    [resolved] = [c for c in found["conditions"] if c["type"] == "ModelResolved"]
    assert (resolved["reason"], resolved["message"]) == (
        "ModelNotFound", "registered model 'Diabetes' has no version 9999",
    )  # fmt: skip
    assert (found["phase"], found["activeVersion"], found["activeColor"]) == (
        "Healthy", diabetes.first, "blue",
    )  # fmt: skip
    assert conditions(found)["Ready"] == ("True", "Available")
    assert served(kube, "pinned") == (diabetes.first, "blue")
    assert "pinned-green" not in kube("get", "deployments", "-n", NAMESPACE, "-o", "name")


def test_the_abort_annotation_keeps_the_active_version_and_rejects_the_new_one(
    kube: Kubectl, mlflow: Forward, diabetes: Versions
) -> None:
    strategy = {"blueGreen": {"autoPromotionEnabled": False, "abortScaleDownDelaySeconds": 5}}
    apply(kube, "abort", {"name": "Diabetes", "version": diabetes.first}, strategy=strategy)
    wait_phase(kube, "abort", "Healthy", activeVersion=diabetes.first, activeColor="blue")
    patch_spec(kube, "abort", {"model": {"name": "Diabetes", "version": diabetes.second}})
    wait_phase(kube, "abort", "Paused", previewVersion=diabetes.second, previewColor="green")
    # While it waits for a promotion, the preview Service serves the candidate for checking.
    wait_served(kube, "abort-preview", diabetes.second, "green")
    assert served(kube, "abort") == (diabetes.first, "blue")

    annotate(kube, "abort", ABORT)
    found = wait_phase(kube, "abort", "Degraded", activeVersion=diabetes.first, activeColor="blue")
    assert found["rejectedVersions"] == [diabetes.second]
    assert conditions(found)["Degraded"] == ("True", "AbortedByUser")
    assert conditions(found)["Ready"] == ("True", "Available")
    assert found["message"] == "aborted by the turnout.dev/abort annotation"
    assert ABORT not in (kube.get("mdep", "abort")["metadata"].get("annotations") or {})
    assert (selector(kube, "abort"), selector(kube, "abort-preview")) == ("blue", "blue")
    wait_served(kube, "abort-preview", diabetes.first, "blue")
    assert served(kube, "abort") == (diabetes.first, "blue")
    wait_until(lambda: replicas(kube, "abort-green") == 0, timeout=120, interval=2,
               what="the aborted color scaled down")  # fmt: skip
    client = registry(mlflow.uri)
    wait_until(lambda: tag(client, diabetes.second, "abort") == "rejected", timeout=60,
               what="the aborted version tagged rejected in MLflow")  # fmt: skip


def test_the_rollback_annotation_switches_back_to_the_warm_color(
    kube: Kubectl, mlflow: Forward, diabetes: Versions
) -> None:
    strategy = {"blueGreen": {"scaleDownDelaySeconds": 600}}
    apply(kube, "rollback", {"name": "Diabetes", "version": diabetes.first}, strategy=strategy)
    wait_phase(kube, "rollback", "Healthy", activeVersion=diabetes.first, activeColor="blue")
    patch_spec(kube, "rollback", {"model": {"name": "Diabetes", "version": diabetes.second}})
    wait_phase(kube, "rollback", "Healthy", activeVersion=diabetes.second, activeColor="green")
    wait_served(kube, "rollback", diabetes.second, "green")
    assert replicas(kube, "rollback-blue") == 1  # warm for scaleDownDelaySeconds

    annotate(kube, "rollback", ROLLBACK)
    found = wait_phase(kube, "rollback", "Degraded", activeVersion=diabetes.first,
                       activeColor="blue")  # fmt: skip
    assert found["rejectedVersions"] == [diabetes.second]
    assert conditions(found)["Degraded"] == ("True", "RolledBack")
    assert found["message"] == (
        f"version {diabetes.second} rolled back to {diabetes.first} by the turnout.dev/rollback "
        "annotation"
    )
    assert ROLLBACK not in (kube.get("mdep", "rollback")["metadata"].get("annotations") or {})
    assert selector(kube, "rollback") == "blue"
    wait_served(kube, "rollback", diabetes.first, "blue")
    assert replicas(kube, "rollback-blue") == 1  # switched back to warm pods, never scaled down
    client = registry(mlflow.uri)

    def tags() -> tuple[str | None, str | None]:
        return tag(client, diabetes.first, "rollback"), tag(client, diabetes.second, "rollback")

    wait_until(lambda: tags() == ("active", "rejected"), timeout=60,
               what="MLflow tags: the previous version active, the rolled-back one rejected")  # fmt: skip
