"""Kubernetes' own controllers at work: a Deployment becomes a ReplicaSet and Pods, the scheduler
binds them to a Node registered by hand, the garbage collector follows owner references when the
Deployment goes, and EndpointSlices follow the readiness a kubelet reports."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.conftest import wait_until
from tests.real.kube import report_pod

pytestmark = pytest.mark.real

LABELS = {"app": "web"}


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


def as_dict(api: client.ApiClient, obj: Any) -> dict[str, Any]:
    return api.sanitize_for_serialization(obj)  # type: ignore[no-any-return]


def pod_template(node: str) -> dict[str, Any]:
    """Pods for the Node registered by hand (the scheduler picks it by its label; the session's
    node agent, when one runs, would otherwise run them)."""
    return {
        "metadata": {"labels": LABELS},
        "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                 "containers": [{"name": "web", "image": "turnout-serve:dev",
                                 "ports": [{"name": "http", "containerPort": 8080}]}]},
    }  # fmt: skip


def owner(obj: Any) -> tuple[str, str] | None:
    refs = obj.metadata.owner_references or []
    return (refs[0].kind, refs[0].name) if refs else None


def kubelet_done(core: client.CoreV1Api, namespace: str) -> None:
    """What a kubelet does for pods being deleted: confirm with a zero grace period."""
    for pod in core.list_namespaced_pod(namespace).items:
        core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)


def test_a_deployment_becomes_a_replicaset_and_scheduled_pods_and_is_garbage_collected(
    api: client.ApiClient, core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str, node: str
) -> None:
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": LABELS}, "template": pod_template(node)},
    })  # fmt: skip
    try:
        replicasets = wait_until(lambda: apps.list_namespaced_replica_set(namespace).items,
                                 timeout=60, what="the deployment controller's ReplicaSet")  # fmt: skip
        assert [owner(rs) for rs in replicasets] == [("Deployment", "web")]
        replicaset = replicasets[0].metadata.name
        assert replicaset.startswith("web-")

        def scheduled() -> list[Any] | None:
            pods = core.list_namespaced_pod(namespace).items
            return pods if len(pods) == 2 and all(p.spec.node_name for p in pods) else None

        pods = wait_until(scheduled, timeout=60, what="two pods bound to the node")
        assert [(owner(p), p.spec.node_name, p.status.phase) for p in pods] == [
            (("ReplicaSet", replicaset), node, "Pending")
        ] * 2  # no kubelet: bound, never started
        conditions = {c.type: c.status for c in pods[0].status.conditions}
        assert conditions == {"PodScheduled": "True"}
        # admission filled in what the API server fills in
        spec = as_dict(api, pods[0].spec)
        assert spec["serviceAccountName"] == "default"
        assert spec["tolerations"] == [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ]

        apps.delete_namespaced_deployment("web", namespace)

        wait_until(lambda: not apps.list_namespaced_replica_set(namespace).items, timeout=60,
                   what="the garbage collector to delete the ReplicaSet")  # fmt: skip

        def terminating() -> list[Any] | None:
            pods = core.list_namespaced_pod(namespace).items
            return pods if pods and all(p.metadata.deletion_timestamp for p in pods) else None

        # bound pods wait for their kubelet to confirm (none here): terminating, grace period 30 s
        pods = wait_until(terminating, timeout=60, what="the garbage collector to delete the pods")
        assert sorted(p.metadata.deletion_grace_period_seconds for p in pods) == [30, 30]
        kubelet_done(core, namespace)
        wait_until(lambda: not core.list_namespaced_pod(namespace).items, timeout=30,
                   what="the pods to be gone")  # fmt: skip
    finally:
        kubelet_done(core, namespace)


def endpoints(
    api: client.ApiClient, discovery: client.DiscoveryV1Api, namespace: str
) -> list[dict[str, Any]]:
    slices = discovery.list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=web"
    ).items
    found = []
    for item in slices:
        for endpoint in item.endpoints or []:
            e = as_dict(api, endpoint)
            found.append({"address": e["addresses"][0], "conditions": e["conditions"], "nodeName": e.get("nodeName"),
                          "pod": e["targetRef"]["name"], "ports": as_dict(api, item.ports)})  # fmt: skip
    return sorted(found, key=lambda e: e["pod"])


def test_endpointslices_follow_the_readiness_a_kubelet_reports(
    api: client.ApiClient, core: client.CoreV1Api, namespace: str, node: str
) -> None:
    discovery = client.DiscoveryV1Api(api)
    core.create_namespaced_service(namespace, {
        "metadata": {"name": "web"},
        "spec": {"selector": LABELS, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    })  # fmt: skip
    for name in ("a", "b"):
        template = pod_template(node)
        core.create_namespaced_pod(
            namespace, {**template, "metadata": {**template["metadata"], "name": name}}
        )
    try:
        wait_until(lambda: all(core.read_namespaced_pod(n, namespace).spec.node_name == node for n in ("a", "b")),
                   timeout=60, what="both pods bound to the node")  # fmt: skip
        ips = {"a": "10.244.250.10", "b": "10.244.250.11"}
        ports = [{"name": "http", "port": 8080, "protocol": "TCP"}]

        def expected(ready: dict[str, bool]) -> list[dict[str, Any]]:
            return [{"address": ips[pod], "nodeName": node, "pod": pod, "ports": ports,
                     "conditions": {"ready": ready[pod], "serving": ready[pod], "terminating": False}}
                    for pod in ("a", "b")]  # fmt: skip

        report_pod(core, namespace, "a", ips["a"], ready=True)
        report_pod(core, namespace, "b", ips["b"], ready=False)
        want = expected({"a": True, "b": False})
        wait_until(lambda: endpoints(api, discovery, namespace) == want, timeout=60,
                   what=f"EndpointSlices to show {want}")  # fmt: skip

        report_pod(core, namespace, "a", ips["a"], ready=False)
        report_pod(core, namespace, "b", ips["b"], ready=True)
        want = expected({"a": False, "b": True})
        wait_until(lambda: endpoints(api, discovery, namespace) == want, timeout=60,
                   what=f"EndpointSlices to show {want}")  # fmt: skip
    finally:
        kubelet_done(core, namespace)
