"""The operator's rollouts on the real control plane, with RBAC enforced and real pods.

The operator runs as a process on the host under the chart's ServiceAccount and namespaced Role
(tests/real/operator.py); Kubernetes' controllers turn its Deployments into ReplicaSets and Pods;
the node agent (tests/real/node) runs each Pod's `turnout-serve` in a network namespace of its
own, which loads the model from the real MLflow registry; the EndpointSlice controller follows
the pods' readiness; predictions go through the API server's service proxy; deleting a
ModelDeployment is Kubernetes' garbage collector's work. The last test reads the API server's
audit log: the operator was never refused a call.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from mlflow import MlflowClient

from tests.conftest import Registry, wait_until
from tests.integration.cluster import API, HEALTHY_CONDITIONS, Cluster, conditions, history, rules
from tests.real import controlplane as cp
from tests.real.operator import USER

pytestmark = [pytest.mark.real, pytest.mark.usefixtures("clean_model_deployments")]

PROMOTE, ABORT, ROLLBACK = (f"turnout.dev/{verb}" for verb in ("promote", "abort", "rollback"))
VERSION = "turnout.dev/model-version"


def deploy(cluster: Cluster, name: str, version: str, **spec: Any) -> dict[str, Any]:
    cluster.apply(name, {"name": "Diabetes", "version": version}, **spec)
    return cluster.wait_phase(name, "Healthy", timeout=180, activeVersion=version)


def bump(cluster: Cluster, name: str, version: str) -> None:
    cluster.patch_spec(name, {"model": {"name": "Diabetes", "version": version}})


def smoke_tests(cluster: Cluster, service: str) -> list[int]:
    """The status codes of the operator's requests through `service`'s proxy (the audit log)."""
    return [c["responseStatus"]["code"] for c in cluster.kube.plane.audit(USER)
            if c.get("objectRef", {}).get("resource") == "services"
            and c["objectRef"].get("subresource") == "proxy"
            and c["objectRef"].get("namespace") == cluster.namespace
            and c["objectRef"].get("name", "").startswith(service)]  # fmt: skip


def pods(cluster: Cluster, name: str, color: str | None = None) -> list[dict[str, Any]]:
    labels = f"turnout.dev/model-deployment={name}"
    if color:
        labels += f",turnout.dev/color={color}"
    return cluster.kube.list("v1", "Pod", cluster.namespace, labels=labels)


# --- scenarios -----------------------------------------------------------------------------


def test_first_deploy_then_a_blue_green_switch(cluster: Cluster) -> None:
    status = deploy(cluster, "switch", "1", strategy={"blueGreen": {"scaleDownDelaySeconds": 5}})
    assert (status["activeColor"], conditions(status)) == ("blue", HEALTHY_CONDITIONS)
    (pod,) = pods(cluster, "switch", "blue")
    assert pod["status"]["phase"] == "Running"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"  # the real controllers
    first = cluster.predict("switch")
    assert first.status_code == 200, first.text

    bump(cluster, "switch", "2")
    status = cluster.wait_phase("switch", "Healthy", timeout=180, activeVersion="2",
                                activeColor="green")  # fmt: skip
    assert conditions(status) == HEALTHY_CONDITIONS
    assert (cluster.selector("switch"), cluster.selector("switch-preview")) == ("green", "green")
    second = cluster.predict("switch")
    assert second.status_code == 200, second.text
    assert second.json() != first.json()  # version 2 is another model
    assert history(status)[:2] == [("2", "green", "Promoted"), ("1", "blue", "Promoted")]
    # the smoke test (on by default) went through the service proxy, as the operator
    assert smoke_tests(cluster, "switch-preview") == [200, 200]  # version 1's, then 2's
    # the old color is scaled down after 5 s and its pods stop
    cluster.wait_replicas("switch-blue", 0, timeout=60)
    wait_until(lambda: not pods(cluster, "switch", "blue"), timeout=90, interval=0.5,
               what="blue's pods gone")  # fmt: skip
    cluster.wait_tag("Diabetes", "1", "switch", "retired")


def test_abort_keeps_the_active_color_serving(cluster: Cluster) -> None:
    strategy = {"blueGreen": {"autoPromotionEnabled": False, "abortScaleDownDelaySeconds": 1}}
    deploy(cluster, "abort", "1", strategy=strategy)
    bump(cluster, "abort", "2")
    status = cluster.wait_phase("abort", "Paused", timeout=180, previewVersion="2",
                                previewColor="green")  # fmt: skip
    assert conditions(status)["Progressing"] == ("True", "WaitingForPromotion")
    assert cluster.predict("abort-preview").status_code == 200  # the preview serves version 2

    cluster.annotate("abort", ABORT)
    status = cluster.wait_phase("abort", "Degraded", activeVersion="1", activeColor="blue")
    assert status["rejectedVersions"] == ["2"]
    assert conditions(status)["Degraded"] == ("True", "AbortedByUser")
    assert (cluster.selector("abort"), cluster.selector("abort-preview")) == ("blue", "blue")
    cluster.wait_annotation_handled("abort", ABORT)
    cluster.wait_replicas("abort-green", 0)
    wait_until(lambda: not pods(cluster, "abort", "green"), timeout=90, interval=0.5,
               what="green's pods gone")  # fmt: skip
    assert cluster.predict("abort").status_code == 200


def test_the_rollback_annotation_switches_back_to_the_warm_color(cluster: Cluster) -> None:
    deploy(cluster, "rollback", "1", strategy={"blueGreen": {"scaleDownDelaySeconds": 300}})
    bump(cluster, "rollback", "2")
    cluster.wait_phase("rollback", "Healthy", timeout=180, activeVersion="2", activeColor="green")
    (blue,) = pods(cluster, "rollback", "blue")

    cluster.annotate("rollback", ROLLBACK)
    status = cluster.wait_phase("rollback", "Degraded", activeVersion="1", activeColor="blue")
    assert conditions(status)["Degraded"] == ("True", "RolledBack")
    assert (cluster.selector("rollback"), cluster.selector("rollback-preview")) == ("blue", "blue")
    cluster.wait_annotation_handled("rollback", ROLLBACK)
    # the same pod, never restarted: the switch back went to warm pods
    (still,) = pods(cluster, "rollback", "blue")
    assert still["metadata"]["uid"] == blue["metadata"]["uid"]
    assert still["status"]["containerStatuses"][0]["restartCount"] == 0
    assert cluster.predict("rollback").status_code == 200


def test_a_warm_color_given_a_newer_version_is_ready_only_once_its_old_pods_are_gone(
    cluster: Cluster, mlflow_registry: Registry
) -> None:
    """Version 3 goes to blue while blue still runs version 1 warm: the Deployment controller
    starts the new pod before it stops the old one (maxUnavailable 0), so counting available
    pods alone would call blue ready, smoke-test and switch to version 1's pod."""
    client = MlflowClient(mlflow_registry.uri)
    for source in ("1", "2", "1"):
        client.copy_model_version(f"models:/Diabetes/{source}", "Warm")
    cluster.apply("warm", {"name": "Warm", "version": "1"}, replicas=1,
                  strategy={"blueGreen": {"scaleDownDelaySeconds": 600}})  # fmt: skip
    cluster.wait_phase("warm", "Healthy", timeout=180, activeVersion="1", activeColor="blue")
    cluster.patch_spec("warm", {"model": {"name": "Warm", "version": "2"}})
    cluster.wait_phase("warm", "Healthy", timeout=180, activeVersion="2", activeColor="green")
    assert [p["metadata"]["labels"][VERSION] for p in pods(cluster, "warm", "blue")] == ["1"]

    cluster.patch_spec("warm", {"model": {"name": "Warm", "version": "3"}})

    def blue_when_ready() -> list[str] | None:
        """Blue's serving pods' versions at the first status that calls version 3 ready."""
        status = cluster.status("warm")
        rollout = status.get("rollout") or {}
        if not (rollout.get("version") == "3" and rollout.get("readyAt")) and (
            status.get("activeVersion") != "3"
        ):
            return None
        return [p["metadata"]["labels"][VERSION] for p in pods(cluster, "warm", "blue")
                if not p["metadata"].get("deletionTimestamp")]  # fmt: skip

    assert wait_until(blue_when_ready, timeout=180, interval=0.1) == ["3"]
    cluster.wait_phase("warm", "Healthy", timeout=180, activeVersion="3", activeColor="blue")


def crash(pod: dict[str, Any]) -> None:
    """Kill a pod's server process (SIGKILL), as a crash would: the node agent restarts it
    after a back-off, and reports CrashLoopBackOff meanwhile."""
    container_id = pod["status"]["containerStatuses"][0]["containerID"]
    os.kill(int(container_id.rsplit("/", 1)[1]), signal.SIGKILL)


def test_a_crash_after_the_switch_rolls_back_to_the_warm_color(cluster: Cluster) -> None:
    strategy = {"blueGreen": {"scaleDownDelaySeconds": 300, "abortScaleDownDelaySeconds": 1}}
    deploy(cluster, "crash", "1", strategy=strategy)
    bump(cluster, "crash", "2")
    cluster.wait_phase("crash", "Healthy", timeout=180, activeVersion="2", activeColor="green")

    for _ in range(3):  # crash until the node agent reports the back-off and the operator acts
        if cluster.selector("crash") == "blue":
            break
        running = pods(cluster, "crash", "green")
        if not running:  # rolled back since, and green scaled down (abortScaleDownDelaySeconds)
            break
        (green,) = running
        container = green["status"]["containerStatuses"][0]
        if "running" in container["state"]:
            crash(green)
        wait_until(lambda r=container["restartCount"]: back_or_restarted(cluster, r), timeout=60,
                   interval=0.2, what="a rollback, or green's server running again")  # fmt: skip
    status = cluster.wait_phase("crash", "Degraded", timeout=120, activeVersion="1",
                                activeColor="blue")  # fmt: skip
    assert conditions(status)["Degraded"] == ("True", "AutoRolledBack")
    # the node agent restarts a crashed container at once (the kubelet's first back-off is 0):
    # the operator saw green with no pod available before any CrashLoopBackOff
    assert status["message"] == (
        "version 2 (green) failed after promotion (no pod available); "
        "switched back to version 1 (blue)"
    )
    assert cluster.selector("crash") == "blue"
    assert cluster.predict("crash").status_code == 200


def back_or_restarted(cluster: Cluster, restarts: int) -> bool:
    if cluster.selector("crash") == "blue":
        return True
    green = pods(cluster, "crash", "green")
    if not green:
        return cluster.selector("crash") == "blue"
    container = green[0]["status"]["containerStatuses"][0]
    return "running" in container["state"] and container["restartCount"] > restarts


def test_the_operator_resumes_a_rollout_after_being_killed(cluster: Cluster) -> None:
    strategy = {"blueGreen": {"autoPromotionEnabled": False, "scaleDownDelaySeconds": 5}}
    deploy(cluster, "resume", "1", strategy=strategy)
    bump(cluster, "resume", "2")
    cluster.wait_rollout("resume", "2")
    cluster.restart_operator()  # SIGKILL in the rollout, before the promotion
    cluster.wait_phase("resume", "Paused", timeout=180, previewVersion="2")
    cluster.restart_operator()  # SIGKILL while waiting for the promotion
    cluster.annotate("resume", PROMOTE)
    status = cluster.wait_phase("resume", "Healthy", timeout=120, activeVersion="2",
                                activeColor="green")  # fmt: skip
    assert conditions(status) == HEALTHY_CONDITIONS
    cluster.wait_replicas("resume-blue", 0, timeout=60)
    assert cluster.reasons("resume").count("Promoted") == 2


def test_deleting_a_model_deployment_garbage_collects_everything(cluster: Cluster) -> None:
    deploy(cluster, "doomed", "1")
    owned = [("apps/v1", "Deployment", "doomed-blue"), ("apps/v1", "Deployment", "doomed-green"),
             ("v1", "Service", "doomed"), ("v1", "Service", "doomed-preview")]  # fmt: skip
    ns = cluster.namespace
    assert cluster.kube.get("apps/v1", "Deployment", ns, "doomed-blue") is not None
    assert len(cluster.kube.list("apps/v1", "ReplicaSet", ns,
                                 labels="turnout.dev/model-deployment=doomed")) == 1  # fmt: skip
    assert len(pods(cluster, "doomed")) == 1

    cluster.kube.delete(API, "ModelDeployment", ns, "doomed")
    wait_until(
        lambda: cluster.kube.get(API, "ModelDeployment", ns, "doomed") is None
        and not any(cluster.kube.get(api, kind, ns, name) for api, kind, name in owned)
        and not cluster.kube.list("apps/v1", "ReplicaSet", ns,
                                  labels="turnout.dev/model-deployment=doomed")
        and not pods(cluster, "doomed"),
        timeout=120, interval=0.5, what="doomed and everything it owns garbage-collected",
    )  # fmt: skip


def test_the_operator_was_never_refused_a_call(
    cluster: Cluster, control_plane: cp.ControlPlane
) -> None:
    """Runs last. Every call of the rollouts above, as the API server's audit log recorded it,
    was allowed by the chart's Role, and each was one the Role grants."""
    calls = [c for c in control_plane.audit(USER) if "objectRef" in c]  # not discovery
    assert calls, "no audit events of the operator"
    refused = [(c["verb"], c["requestURI"], c["responseStatus"]["code"]) for c in calls
               if c["responseStatus"]["code"] == 403]  # fmt: skip
    assert refused == []
    role = cluster.kube.get("rbac.authorization.k8s.io/v1", "Role", cluster.namespace,
                            "turnout-operator")  # fmt: skip
    granted = rules([role], "Role")
    used = {(c["objectRef"].get("apiGroup", ""), _resource(c["objectRef"]), c["verb"])
            for c in calls if c["objectRef"].get("namespace") == cluster.namespace}  # fmt: skip
    assert used - granted == set()


def _resource(ref: dict[str, Any]) -> str:
    return f"{ref['resource']}/{ref['subresource']}" if ref.get("subresource") else ref["resource"]
