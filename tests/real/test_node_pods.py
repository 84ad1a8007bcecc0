"""The node agent runs what the scheduler binds to its Node: a Deployment's pods run as processes
in network namespaces of their own, become Ready behind their readiness probe, fill the Service's
EndpointSlice and answer through the API server's service proxy; a rollout replaces them and
stops the old ones; deleting the Deployment leaves no process and no namespace behind."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import wait_until
from tests.real import controlplane as cp
from tests.real.conftest import ECHO, RunningNode

pytestmark = pytest.mark.real

LABELS = {"app": "echo"}


def echo_deployment(replicas: int, version: str) -> dict[str, Any]:
    container = {
        "name": "echo", "image": "echo:dev",
        "command": [sys.executable, str(ECHO)], "args": ["$(POD_IP)", "8080"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "VERSION", "value": version}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
    }  # fmt: skip
    return {
        "metadata": {"name": "echo"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": LABELS},
                 "template": {"metadata": {"labels": LABELS},
                              "spec": {"terminationGracePeriodSeconds": 5, "containers": [container]}}},
    }  # fmt: skip


def pid_of(pod: client.V1Pod) -> int:
    return int(pod.status.container_statuses[0].container_id.split("://")[1])


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}


def ready_pods(core: client.CoreV1Api, namespace: str, count: int) -> list[client.V1Pod] | None:
    pods = [
        p for p in core.list_namespaced_pod(namespace).items if not p.metadata.deletion_timestamp
    ]
    ready = [p for p in pods if p.status.phase == "Running"
             and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]  # fmt: skip
    return (
        sorted(ready, key=lambda p: p.metadata.name) if len(ready) == count == len(pods) else None
    )


def test_a_deployment_runs_ready_behind_its_service_and_rolls_out_and_is_collected(
    api: client.ApiClient, core: client.CoreV1Api, namespace: str, node_agent: RunningNode,
    control_plane: cp.ControlPlane,
) -> None:  # fmt: skip
    apps, discovery = client.AppsV1Api(api), client.DiscoveryV1Api(api)
    core.create_namespaced_service(namespace, {"metadata": {"name": "echo"}, "spec": {
        "selector": LABELS, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})  # fmt: skip
    apps.create_namespaced_deployment(namespace, echo_deployment(2, "1"))
    first = wait_until(lambda: ready_pods(core, namespace, 2), timeout=90, interval=0.2,
                       what="two echo pods Running and Ready")  # fmt: skip

    subnet = ipaddress.ip_network(node_agent.agent.info["subnet"])
    for pod in first:
        assert pod.spec.node_name == node_agent.name
        assert ipaddress.ip_address(pod.status.pod_ip) in subnet
        assert [i.ip for i in pod.status.pod_i_ps] == [pod.status.pod_ip]
        assert pod.status.host_ip == node_agent.host_ip
        (status,) = pod.status.container_statuses
        assert (status.name, status.ready, status.started, status.restart_count) == (
            "echo",
            True,
            True,
            0,
        )
        assert status.state.running.started_at is not None
        assert {c.type: c.status for c in pod.status.conditions} == {
            "PodScheduled": "True", "PodReadyToStartContainers": "True", "Initialized": "True",
            "ContainersReady": "True", "Ready": "True"}  # fmt: skip
        assert alive(pid_of(pod))
        assert node_agent.netns(pod) in namespaces()

    def endpoints() -> list[tuple[str, bool, str]]:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=echo").items  # fmt: skip
        return sorted((e.addresses[0], e.conditions.ready, e.target_ref.name)
                      for s in slices for e in s.endpoints or [])  # fmt: skip

    want = sorted((p.status.pod_ip, True, p.metadata.name) for p in first)
    wait_until(lambda: endpoints() == want, timeout=60, what=f"the EndpointSlice to show {want}")
    with control_plane.http() as admin:
        answer = admin.get(f"/api/v1/namespaces/{namespace}/services/echo:80/proxy/hello?x=1")
    assert answer.status_code == 200, answer.text
    assert (answer.json()["method"], answer.json()["path"]) == ("GET", "/hello?x=1")

    # a rollout: new pods Ready, the old ones stopped (their processes and namespaces gone)
    apps.patch_namespaced_deployment("echo", namespace, echo_deployment(2, "2"))

    def rolled() -> list[client.V1Pod] | None:
        pods = ready_pods(core, namespace, 2)
        names = {p.metadata.name for p in first}
        return pods if pods and not names & {p.metadata.name for p in pods} else None

    second = wait_until(rolled, timeout=120, interval=0.2, what="the rollout's two new pods")
    assert all(
        [e.value for e in p.spec.containers[0].env if e.name == "VERSION"] == ["2"] for p in second
    )
    wait_until(lambda: not any(alive(pid_of(p)) for p in first), timeout=30,
               what="the old pods' processes to exit")  # fmt: skip
    wait_until(lambda: not {node_agent.netns(p) for p in first} & namespaces(), timeout=30,
               what="the old pods' network namespaces to go")  # fmt: skip

    apps.delete_namespaced_deployment("echo", namespace)
    wait_until(lambda: not core.list_namespaced_pod(namespace).items, timeout=90,
               what="the garbage collector and the node to delete the pods")  # fmt: skip
    assert not any(alive(pid_of(p)) for p in second)
    assert not {node_agent.netns(p) for p in second} & namespaces()
    assert not any(node_agent.pod_dir(p).exists() for p in [*first, *second])
