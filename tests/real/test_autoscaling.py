"""Scaling with load on the real control plane: Kubernetes' own HorizontalPodAutoscaler
controller (kube-controller-manager runs it) scales the active color, a switch during that
scale-up hands the autoscaler to the new color at the active color's count, a rollback hands it
back; `kubectl scale` of a ModelDeployment goes through the CRD's scale subresource.

No metrics API runs here, so the autoscaler reads no metric: it keeps its target within
minReplicas..maxReplicas, which is how the tests raise the load (minReplicas up), as a rise in
in-flight requests would through the custom metrics API.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import require_tool, wait_until
from tests.integration.cluster import Cluster

pytestmark = [pytest.mark.real, pytest.mark.usefixtures("clean_model_deployments")]

HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")
PROMOTE, ROLLBACK = "turnout.dev/promote", "turnout.dev/rollback"


def autoscaler_target(cluster: Cluster, name: str) -> str | None:
    hpa = cluster.kube.get(*HPA, cluster.namespace, name)
    return None if hpa is None else str(hpa["spec"]["scaleTargetRef"]["name"])


def wait_target(cluster: Cluster, name: str, deployment: str) -> None:
    wait_until(lambda: autoscaler_target(cluster, name) == deployment, timeout=30, interval=0.2,
               what=f"the autoscaler of {name} on {deployment}")  # fmt: skip


def test_a_switch_during_a_scale_up_hands_the_autoscaler_over_and_a_rollback_takes_it_back(
    cluster: Cluster,
) -> None:
    strategy = {"blueGreen": {"autoPromotionEnabled": False, "scaleDownDelaySeconds": 600}}
    cluster.apply("scaled", {"name": "Diabetes", "version": "1"}, strategy=strategy,
                  autoscaling={"minReplicas": 1, "maxReplicas": 3})  # fmt: skip
    cluster.wait_phase("scaled", "Healthy", timeout=180, activeVersion="1", activeColor="blue")
    wait_target(cluster, "scaled", "scaled-blue")

    cluster.patch_spec("scaled", {"model": {"name": "Diabetes", "version": "2"}})
    cluster.wait_phase("scaled", "Paused", timeout=180, previewVersion="2", previewColor="green")
    assert cluster.replicas("scaled-green") == 1  # previewReplicaCount
    # The load rises: Kubernetes' autoscaler takes blue to 2 while version 2 waits in preview.
    cluster.patch_spec("scaled", {"autoscaling": {"minReplicas": 2}})
    cluster.wait_replicas("scaled-blue", 2, timeout=90)
    wait_until(lambda: cluster.status("scaled").get("replicas") == 2, timeout=120, interval=0.5,
               what="blue's second pod available")  # fmt: skip
    assert cluster.replicas("scaled-green") == 1

    cluster.annotate("scaled", PROMOTE)
    status = cluster.wait_phase("scaled", "Healthy", timeout=180, activeVersion="2",
                                activeColor="green")  # fmt: skip
    # the new color took the traffic at the count the old one ran, and took the autoscaler
    assert (cluster.replicas("scaled-green"), status["replicas"]) == (2, 2)
    wait_target(cluster, "scaled", "scaled-green")
    assert cluster.replicas("scaled-blue") == 2  # warm, as it was

    cluster.annotate("scaled", ROLLBACK)
    status = cluster.wait_phase("scaled", "Degraded", timeout=60, activeVersion="1",
                                activeColor="blue")  # fmt: skip
    wait_target(cluster, "scaled", "scaled-blue")
    assert (cluster.replicas("scaled-blue"), cluster.selector("scaled")) == (2, "blue")


def test_kubectl_scale_scales_the_active_color_through_the_scale_subresource(
    cluster: Cluster,
) -> None:
    cluster.apply("sized", {"name": "Diabetes", "version": "1"})
    cluster.wait_phase("sized", "Healthy", timeout=180, activeVersion="1", activeColor="blue")
    kubeconfig = str(cluster.kube.plane.kubeconfig)
    kubectl = [require_tool("kubectl"), "--kubeconfig", kubeconfig, "-n", cluster.namespace]
    subprocess.run([*kubectl, "scale", "mdep/sized", "--replicas=2"], check=True,
                   capture_output=True, timeout=30)  # fmt: skip
    assert cluster.md("sized")["spec"]["replicas"] == 2
    cluster.wait_replicas("sized-blue", 2, timeout=60)
    wait_until(lambda: cluster.status("sized").get("replicas") == 2, timeout=120, interval=0.5,
               what="the second pod available")  # fmt: skip
    scale = json.loads(subprocess.run(
        [*kubectl, "get", "mdep/sized", "--subresource=scale", "-o", "json"],
        check=True, capture_output=True, timeout=30).stdout)  # fmt: skip
    assert (scale["kind"], scale["spec"]["replicas"], scale["status"]["replicas"]) == (
        "Scale",
        2,
        2,
    )
    assert (
        scale["status"]["selector"] == "turnout.dev/model-deployment=sized,turnout.dev/color=blue"
    )
