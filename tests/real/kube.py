"""What the tests of the real control plane do to it that a kubelet or an operator would: register a
Node, report a Pod running and ready, get a ServiceAccount token, write an EndpointSlice. The node
agent (tests/real/node) does the first two for real; tests that need a Node without one (pods that
stay Pending, a readiness they set themselves) play its part through the same API calls.
"""

from __future__ import annotations

import datetime
from typing import Any

from kubernetes import client


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def register_node(core: client.CoreV1Api, name: str, address: str = "127.0.0.1") -> None:
    """A Node object as a kubelet registers one: capacity, and a Ready condition with a fresh
    heartbeat (the node lifecycle controller taints it after the grace period of 50 s without
    one, so a test registers its own Node rather than sharing one across the session)."""
    capacity = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    core.create_node({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
    })  # fmt: skip
    stamp = now()
    status = {"status": {
        "capacity": capacity, "allocatable": capacity,
        "addresses": [{"type": "InternalIP", "address": address}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "registered by hand", "lastHeartbeatTime": stamp,
                        "lastTransitionTime": stamp}],
    }}  # fmt: skip
    core.patch_node_status(name, status)


def report_pod(core: client.CoreV1Api, namespace: str, name: str, ip: str, *, ready: bool) -> None:
    """What a kubelet writes once a pod's containers run: phase, the pod's IP, Ready."""
    stamp = now()
    flag = "True" if ready else "False"
    core.patch_namespaced_pod_status(name, namespace, {"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": stamp,
        "conditions": [{"type": t, "status": flag if t in ("Ready", "ContainersReady") else "True",
                        "lastTransitionTime": stamp}
                       for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
    }})  # fmt: skip


def service_account_token(core: client.CoreV1Api, namespace: str, name: str) -> str:
    """A bound token for a ServiceAccount (TokenRequest), as a pod would mount."""
    request = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 3600}}
    )
    return str(request.status.token)


def endpoint_slice(
    service: str, ip: str, port: int, target: dict[str, str] | None
) -> dict[str, Any]:
    """A ready endpoint of a selector-less Service at `ip:port`; the service proxy only goes to
    it when `target` names a Pod whose status.podIPs holds `ip`."""
    endpoint: dict[str, Any] = {"addresses": [ip], "conditions": {"ready": True}}
    if target:
        endpoint["targetRef"] = target
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-1", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "endpoints": [endpoint],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }  # fmt: skip
