"""The real operator (`turnout-operator run`, out of cluster, with a kubeconfig) against the
Kubernetes API emulator, a real MLflow registry, and pods that are real `turnout-serve`
processes: a ModelDeployment becomes a served model and moves between versions blue-green."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kmock import KubernetesError

from tests.conftest import Registry, wait_until
from tests.gateway_api import http_route_crd
from tests.integration import exposure
from tests.integration.cluster import API, Cluster, calls_made, granted, running_cluster

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
    cluster.wait_tag("Diabetes", "1", "diabetes", "active")

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
    cluster.wait_tag("Diabetes", "2", "diabetes", "active")
    # The scale-down's Event is posted right after the scale and the tag: wait for it too.
    reasons = wait_until(lambda: "ScaledDown" in (r := cluster.reasons("diabetes")) and r,
                         timeout=30, what="the ScaledDown event")  # fmt: skip
    assert reasons.count("RolloutStarted") == 2 and reasons.count("Promoted") == 2
    metrics = httpx.get(cluster.metrics).text
    assert 'turnout_operator_rollouts_total{outcome="promoted"} 2.0' in metrics


def test_a_spec_the_crd_refuses_is_answered_at_once_and_creates_nothing(cluster: Cluster) -> None:
    """What `kubectl apply` shows for a model reference naming no version, alias or stage: the
    CRD's own rule refuses it (422), so no ModelDeployment exists for the operator to act on.
    Specs the CRD accepts but the operator refuses are in test_invalid_specs.py."""
    with pytest.raises(KubernetesError) as refused:
        cluster.kube.create({
            "apiVersion": API, "kind": "ModelDeployment",
            "metadata": {"name": "broken-spec", "namespace": "default"},
            "spec": {"model": {"name": "Diabetes"}, "replicas": 1},
        })  # fmt: skip
    assert (refused.value.status, refused.value.reason) == (422, "Invalid")
    assert "exactly one of version, alias or stage" in (refused.value.message or "")
    assert cluster.kube.get(API, "ModelDeployment", "default", "broken-spec") is None
    assert cluster.kube.get("apps/v1", "Deployment", "default", "broken-spec-blue") is None


def test_a_missing_model_is_reported_and_nothing_is_deployed(cluster: Cluster) -> None:
    cluster.apply("ghost", {"name": "NoSuchModel", "alias": "champion"})
    status = cluster.wait_phase("ghost", "Degraded")
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions["ModelResolved"] == ("False", "ModelNotFound")
    assert "NoSuchModel" in status["message"]
    assert cluster.kube.get("apps/v1", "Deployment", "default", "ghost-blue") is None


def test_registry_credentials_come_from_the_named_secret(cluster: Cluster) -> None:
    cluster.kube.create({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "mlflow-credentials", "namespace": "default"},
        "stringData": {"MLFLOW_TRACKING_TOKEN": "not-checked-by-this-server"},
    })  # fmt: skip
    cluster.apply("with-secret", {"name": "Iris", "alias": "champion"},
                  registry={"credentialsSecret": "mlflow-credentials"})  # fmt: skip
    status = cluster.wait_phase("with-secret", "Healthy")
    deployment = cluster.kube.get(
        "apps/v1", "Deployment", "default", f"with-secret-{status['activeColor']}"
    )
    assert deployment is not None
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-credentials"}}]
    assert all(e["name"] != "MLFLOW_TRACKING_TOKEN" for e in container["env"])  # never copied


def test_a_template_change_updates_the_active_deployment_in_place(cluster: Cluster) -> None:
    cluster.apply("tuned", {"name": "Diabetes", "stage": "Production"})
    status = cluster.wait_phase("tuned", "Healthy", activeVersion="1")
    color = status["activeColor"]
    cluster.kube.patch(API, "ModelDeployment", "default", "tuned",
                       {"spec": {"monitoring": {"drift": {"windowSize": 500}}}})  # fmt: skip

    def window() -> str | None:
        found = cluster.kube.get("apps/v1", "Deployment", "default", f"tuned-{color}")
        env = found["spec"]["template"]["spec"]["containers"][0]["env"] if found else []
        return next((e["value"] for e in env if e["name"] == "TURNOUT_DRIFT_WINDOW_ROWS"), None)

    wait_until(lambda: window() == "500", timeout=30, what="the drift window in the pod template")
    status = cluster.wait_phase("tuned", "Healthy", activeVersion="1", activeColor=color)


def test_deleting_a_model_deployment_removes_what_it_owns(cluster: Cluster) -> None:
    cluster.apply("short-lived", {"name": "Diabetes", "version": "2"})
    cluster.wait_phase("short-lived", "Healthy")
    assert cluster.kube.get("v1", "Service", "default", "short-lived") is not None
    cluster.kube.delete(API, "ModelDeployment", "default", "short-lived")
    owned = [("v1", "Service", "short-lived"), ("v1", "Service", "short-lived-preview"),
             ("apps/v1", "Deployment", "short-lived-blue")]  # fmt: skip

    def collected() -> bool:
        return all(
            cluster.kube.get(api, kind, "default", name) is None for api, kind, name in owned
        )

    wait_until(collected, timeout=30, what="owned Services and Deployments collected")


def test_an_analysed_rollout_reads_and_steers_the_pods_through_the_pod_proxy(
    cluster: Cluster,
) -> None:
    """Out of the cluster the operator reaches the serving pods through the API server's pod
    proxy: their /metrics for each measurement, their /admin/shadow to start and stop mirroring
    (the copies themselves go nowhere here: the emulator's pods have no cluster DNS; the real
    control plane's tests follow them, tests/real/test_analysis.py)."""
    analysis = {"intervalSeconds": 5, "count": 2, "minRequests": 0, "errorRatioMax": 0.5}
    strategy = {"blueGreen": {
        "scaleDownDelaySeconds": 30, "shadow": {"percent": 100},
        "analysis": {"prePromotion": analysis,
                     "postPromotion": {**analysis, "count": 1, "windowSeconds": 10}},
    }}  # fmt: skip
    cluster.apply("measured", {"name": "Diabetes", "version": "1"}, strategy=strategy)
    cluster.wait_phase("measured", "Healthy", activeVersion="1", activeColor="blue")
    cluster.kube.patch(API, "ModelDeployment", "default", "measured",
                       {"spec": {"model": {"name": "Diabetes", "version": "2"}}})  # fmt: skip

    def post_promotion_verdict() -> dict[str, Any] | None:
        """Traffic to both Services until a verdict: each measurement needs requests of both
        colors, and the preview gets no mirrored copies here."""
        for service in ("measured", "measured-preview"):
            assert cluster.predict(service).status_code in (200, 503)  # 503: no preview yet
        run = cluster.status("measured").get("postPromotionAnalysis")
        return run if run and run["phase"] != "Running" else None

    post = wait_until(post_promotion_verdict, timeout=120, what="the post-promotion verdict")
    status = cluster.wait_phase("measured", "Healthy", activeVersion="2", activeColor="green")
    assert status["history"][0]["version"] == "2"
    assert (post["phase"], post["successful"], post["version"]) == ("Successful", 1, "2")
    reasons = cluster.reasons("measured")
    assert reasons.count("AnalysisSuccessful") == 2, reasons
    proxied = {
        (c.method, c.path.rsplit("/proxy", 1)[1], c.code)
        for c in cluster.kube.requests
        if (c.resource, c.subresource, c.name.split("-")[:1] if c.name else None)
        == ("pods", "proxy", ["measured"])
    }
    assert proxied == {
        ("GET", "/metrics", 200), ("PUT", "/admin/shadow", 200), ("DELETE", "/admin/shadow", 200),
    }  # fmt: skip


def test_a_retraining_job_is_created_owned_and_followed_to_its_end(cluster: Cluster) -> None:
    """The annotation starts a Job (created, owned by the ModelDeployment, given the model and
    the reason); the Job's end, seen through the watch and a read, is recorded."""
    trainer = {"image": "trainer:1", "command": [sys.executable, "-c", "print('trained')"]}
    cluster.apply("retrained", {"name": "Diabetes", "version": "1"},
                  retraining={"jobTemplate": trainer})  # fmt: skip
    cluster.wait_phase("retrained", "Healthy", activeVersion="1", activeColor="blue")
    cluster.annotate("retrained", "turnout.dev/retrain", "now")
    last = wait_until(
        lambda: (r := (cluster.status("retrained").get("retraining") or {}).get("last"))
        and r["state"] == "Succeeded" and r, timeout=60, interval=0.2, what="the Job's end",
    )  # fmt: skip
    assert (last["jobName"], last["reason"], last["version"]) == ("retrained-retrain-1",
                                                                  "Requested", "1")  # fmt: skip
    job = cluster.kube.get("batch/v1", "Job", "default", "retrained-retrain-1")
    [owner] = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == (
        "ModelDeployment", "retrained", True
    )  # fmt: skip
    [container] = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["TURNOUT_MODEL_NAME"], env["TURNOUT_RETRAIN_REASON"]) == ("Diabetes", "Requested")
    assert "turnout.dev/retrain" not in cluster.annotations("retrained")


HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")
PDB = ("policy/v1", "PodDisruptionBudget")


def test_the_autoscaler_follows_the_active_color_and_each_color_has_a_disruption_budget(
    cluster: Cluster,
) -> None:
    """spec.autoscaling makes a HorizontalPodAutoscaler on the active color, whose count the
    operator then keeps (the emulator runs no autoscaler: the test scales blue as one would);
    a new version comes up at that count and takes the autoscaler; a changed budget is
    written; without spec.autoscaling the autoscaler goes and spec.replicas rules again."""
    cluster.apply("scaled", {"name": "Diabetes", "version": "1"},
                  strategy={"blueGreen": {"scaleDownDelaySeconds": 2}},
                  autoscaling={"minReplicas": 1, "maxReplicas": 3})  # fmt: skip
    cluster.wait_phase("scaled", "Healthy", activeVersion="1", activeColor="blue")
    hpa = wait_until(lambda: cluster.kube.get(*HPA, "default", "scaled"), timeout=20,
                     interval=0.2, what="the autoscaler")  # fmt: skip
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "scaled-blue"}  # fmt: skip
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    cluster.kube.patch("apps/v1", "Deployment", "default", "scaled-blue", {"spec": {"replicas": 2}})
    wait_until(lambda: cluster.status("scaled").get("replicas") == 2, timeout=60, interval=0.2,
               what="blue's second pod available")  # fmt: skip
    assert cluster.replicas("scaled-blue") == 2  # kept, not forced back to spec.replicas (1)

    cluster.patch_spec("scaled", {"model": {"name": "Diabetes", "version": "2"}})
    status = cluster.wait_phase("scaled", "Healthy", timeout=90, activeVersion="2",
                                activeColor="green")  # fmt: skip
    assert (cluster.replicas("scaled-green"), status["replicas"]) == (2, 2)
    assert status["selector"] == "turnout.dev/model-deployment=scaled,turnout.dev/color=green"
    target = cluster.kube.get(*HPA, "default", "scaled")["spec"]["scaleTargetRef"]["name"]
    assert target == "scaled-green"
    for color in ("blue", "green"):
        pdb = cluster.kube.get(*PDB, "default", f"scaled-{color}")
        assert (pdb["spec"]["maxUnavailable"], pdb["metadata"]["ownerReferences"][0]["name"]) == (
            1, "scaled")  # fmt: skip

    cluster.patch_spec("scaled", {"autoscaling": None, "disruptionBudget": {"minAvailable": 1}})
    wait_until(lambda: cluster.kube.get(*HPA, "default", "scaled") is None, timeout=20,
               interval=0.2, what="the autoscaler removed")  # fmt: skip
    cluster.wait_replicas("scaled-green", 1)
    pdb = wait_until(lambda: (p := cluster.kube.get(*PDB, "default", "scaled-green"))
                     and "minAvailable" in p["spec"] and p, timeout=20, interval=0.2,
                     what="the budget updated")  # fmt: skip
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]


def test_a_model_is_exposed_by_its_service_an_ingress_and_an_http_route(
    cluster: Cluster, tmp_path: Path
) -> None:
    """tests/integration/exposure.py; the emulator serves HTTPRoutes once the Gateway API's
    own CRD is applied."""
    crd = http_route_crd(tmp_path / "go")
    exposure.service_ingress_and_http_route(cluster, lambda: cluster.kube.apply_crd(crd))


# kopf's scanning of CRDs, cluster-wide mode only (it reads no Namespace objects then).
SCANNING = {
    ("apiextensions.k8s.io", "customresourcedefinitions", verb) for verb in ("list", "watch")
}


def test_rbac_allows_exactly_the_calls_the_operator_made(cluster: Cluster) -> None:
    """Runs last in this module: by now the operator has deployed, rolled out, smoke-tested,
    scaled down, read a Secret, updated a Deployment and removed nothing it did not own."""
    made = calls_made(cluster.kube)
    namespaced = granted("namespaced")
    assert made - namespaced == set(), "calls the namespaced Role does not allow"
    assert namespaced - made == set(), "rules of the namespaced Role nobody used"
    assert granted("cluster-wide") == namespaced | SCANNING


def test_cluster_wide_rbac_allows_every_call_of_an_operator_watching_all_namespaces(
    mlflow_registry: Registry, tmp_path: Path
) -> None:
    """With the test above (the cluster-wide rules are the namespaced ones, all used, plus
    kopf's scanning): the ClusterRole allows all an `--all-namespaces` operator does through a
    rollout, a scale-down and a deletion, and the scanning rules are used.

    Also: a rollout moves on the owned Deployments' events, not on the resync. Pods here become
    available 2 s after their Deployment, when the operator has long finished writing (so no
    event of the ModelDeployment itself wakes it) and the resync is 10 minutes away."""
    with contextlib.contextmanager(running_cluster)(
        mlflow_registry, tmp_path, pods="available", all_namespaces=True,
        extra_env={"TURNOUT_OPERATOR_RESYNC_SECONDS": "600"},
    ) as cluster:  # fmt: skip
        cluster.kube.controller.behave_default("slow", delay=2.0)
        strategy = {"blueGreen": {"smokeTest": False, "scaleDownDelaySeconds": 0}}
        cluster.apply("everywhere", {"name": "Diabetes", "version": "1"}, strategy=strategy)
        cluster.wait_phase("everywhere", "Healthy", timeout=20, activeVersion="1",
                           activeColor="blue")  # fmt: skip
        cluster.kube.patch(API, "ModelDeployment", "default", "everywhere",
                           {"spec": {"model": {"name": "Diabetes", "version": "2"}}})  # fmt: skip
        cluster.wait_phase("everywhere", "Healthy", timeout=20, activeVersion="2",
                           activeColor="green")  # fmt: skip
        cluster.wait_replicas("everywhere-blue", 0)
        cluster.kube.delete(API, "ModelDeployment", "default", "everywhere")
        wait_until(lambda: cluster.kube.get("v1", "Service", "default", "everywhere") is None,
                   timeout=30, what="the active Service collected")  # fmt: skip
        made = calls_made(cluster.kube)
    assert made - granted("cluster-wide") == set(), "calls the ClusterRole does not allow"
    assert SCANNING - made == set(), "scanning rules an --all-namespaces operator did not use"
