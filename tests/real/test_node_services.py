"""Services from inside pods, as kube-proxy and cluster DNS give them in a cluster: a client pod
reaches a Service by its names (/etc/hosts, kept by the node agent) and by its ClusterIP (the
agent's Service proxy), each connection going to the next ready endpoint; an endpoint that turns
unready leaves the rotation; a Service made after the client started resolves and answers (with
Python's resolver and aiohttp's default one), and a deleted one stops answering."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import wait_until
from tests.real import controlplane as cp
from tests.real import netns
from tests.real.conftest import ECHO, RunningNode

pytestmark = pytest.mark.real

LABELS = {"app": "echo"}
# What the client pod runs, through `nsenter` into its network, mount and UTS namespaces: each
# URL fetched on a connection of its own, answered {status, server, path} or {error}
FETCH = """
import json, sys, urllib.request
out = []
for url in sys.argv[2:]:
    try:
        with urllib.request.urlopen(url, timeout=float(sys.argv[1])) as answer:
            body = json.loads(answer.read())
            out.append({"status": answer.status, "server": body["server"], "path": body["path"]})
    except OSError as exc:
        out.append({"error": str(getattr(exc, "reason", exc))})
print(json.dumps(out))
"""
RESOLVE = """
import json, socket, sys
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = sorted({a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET)})
    except socket.gaierror as exc:
        out[name] = exc.strerror
print(json.dumps(out))
"""
AIOHTTP = """
import asyncio, json, sys
import aiohttp
async def main():
    async with aiohttp.ClientSession() as session, session.get(sys.argv[1]) as answer:
        body = await answer.json()
        print(json.dumps({"status": answer.status, "server": body["server"], "path": body["path"]}))
asyncio.run(main())
"""


def echo_deployment() -> dict[str, Any]:
    """Two echo servers, each Ready until a file `unready` appears in its `flags` volume."""
    container = {
        "name": "echo", "image": "echo:dev",
        "command": [sys.executable, str(ECHO)], "args": ["$(POD_IP)", "8080"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "volumeMounts": [{"name": "flags", "mountPath": "/flags"}],
        "readinessProbe": {"exec": {"command": ["test", "!", "-e", "/flags/unready"]},
                           "periodSeconds": 1, "failureThreshold": 1},
    }  # fmt: skip
    return {
        "metadata": {"name": "echo"},
        "spec": {"replicas": 2, "selector": {"matchLabels": LABELS},
                 "template": {"metadata": {"labels": LABELS},
                              "spec": {"terminationGracePeriodSeconds": 2, "containers": [container],
                                       "volumes": [{"name": "flags", "emptyDir": {}}]}}},
    }  # fmt: skip


def client_pod() -> dict[str, Any]:
    return {
        "metadata": {"name": "client"},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "client", "image": "python:3",
            "command": [sys.executable, "-c", "import time; time.sleep(3600)"]}]},
    }  # fmt: skip


def service(name: str, port: int) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {
        "selector": LABELS, "ports": [{"name": "http", "port": port, "targetPort": "http"}]}}  # fmt: skip


def running(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod | None:
    pod = core.read_namespaced_pod(name, namespace)
    statuses = pod.status.container_statuses or []
    return pod if statuses and statuses[0].state.running else None


def ready_endpoints(
    discovery: client.DiscoveryV1Api, namespace: str, service_name: str
) -> dict[str, bool]:
    """The Service's endpoints as its EndpointSlices say: address -> ready."""
    slices = discovery.list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service_name}"
    ).items
    return {e.addresses[0]: bool(e.conditions.ready) for s in slices for e in s.endpoints or []}


class ClientPod:
    """Commands run in the client pod's namespaces, root and working directory (as an exec
    would), as root."""

    def __init__(self, pod: client.V1Pod) -> None:
        self.pid = int(pod.status.container_statuses[0].container_id.split("://")[1])

    def python(self, script: str, *args: str) -> Any:
        done = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-n", "-m", "-u", "-r", "-w", "--", sys.executable,
             "-c", script, *args], capture_output=True, text=True, timeout=90, check=False,
            env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def fetch(self, *urls: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        return self.python(FETCH, str(timeout), *urls)  # type: ignore[no-any-return]

    def resolve(self, *names: str) -> dict[str, Any]:
        return self.python(RESOLVE, *names)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def cluster_services(core: client.CoreV1Api, api: client.ApiClient,
                     node_agent: RunningNode) -> Iterator[tuple[str, list[str], ClientPod]]:  # fmt: skip
    """A namespace with two Ready echo pods behind Service `echo` (port 80) and a client pod:
    (namespace, the echo pods' IPs, the client)."""
    namespace = f"services-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        wait_until(lambda: core.read_namespaced_service_account("default", namespace), timeout=60,
                   interval=0.1, what="the default ServiceAccount")  # fmt: skip
        core.create_namespaced_service(namespace, service("echo", 80))
        client.AppsV1Api(api).create_namespaced_deployment(namespace, echo_deployment())
        core.create_namespaced_pod(namespace, client_pod())
        discovery = client.DiscoveryV1Api(api)
        endpoints = wait_until(
            lambda: (found := ready_endpoints(discovery, namespace, "echo"))
            and len(found) == 2 and all(found.values()) and found,
            timeout=90, interval=0.2, what="two ready endpoints of Service echo",
        )  # fmt: skip
        pod = wait_until(lambda: running(core, namespace, "client"), timeout=60, interval=0.2,
                         what="the client pod running")  # fmt: skip
        yield namespace, sorted(endpoints), ClientPod(pod)
    finally:
        core.delete_namespace(namespace)


def bridge_addresses(node_agent: RunningNode) -> set[str]:
    listed = netns.ip("-j", "-4", "addr", "show", "dev", node_agent.agent.info["bridge"])
    return {info["local"] for link in json.loads(listed) for info in link["addr_info"]}


def test_a_service_answers_by_each_of_its_names_and_its_cluster_ip_over_its_ready_endpoints_in_turn(
    core: client.CoreV1Api, control_plane: cp.ControlPlane, node_agent: RunningNode,
    cluster_services: tuple[str, list[str], ClientPod],
) -> None:  # fmt: skip
    namespace, pod_ips, pod = cluster_services
    cluster_ip = core.read_namespaced_service("echo", namespace).spec.cluster_ip
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(control_plane.service_cidr)
    assert cluster_ip in bridge_addresses(node_agent)
    names = ["echo", f"echo.{namespace}", f"echo.{namespace}.svc",
             f"echo.{namespace}.svc.cluster.local"]  # fmt: skip
    assert pod.resolve(*names) == {name: [cluster_ip] for name in names}

    hosts = [*names, cluster_ip] * 2
    answers = pod.fetch(*[f"http://{host}/via/{i}?n={i}" for i, host in enumerate(hosts)])
    assert [(a.get("status"), a.get("path", a.get("error"))) for a in answers] == [
        (200, f"/via/{i}?n={i}") for i in range(len(hosts))
    ]
    servers = [a["server"] for a in answers]
    # round robin: every other connection to the same endpoint, both endpoints used
    assert sorted({servers[0], servers[1]}) == [f"{ip}:8080" for ip in pod_ips]
    assert servers == [servers[0], servers[1]] * (len(hosts) // 2)


# The proxy follows the EndpointSlice within moments. Two CI runs saw every connection time out
# here (for 10 s, then for 30 s): the pod bridge had changed its MAC address when an unrelated pod
# left it (fixed in netns.py, tested in test_netns.py); a failure here names the last answers and
# the proxy's last steps.
ROTATION_SECONDS = 15


def wait_for_rotation(
    pod: ClientPod, url: str, servers: set[str], node_agent: RunningNode, what: str
) -> None:  # fmt: skip
    """Wait until two connections to `url` are answered by exactly `servers`; failing, say what
    the last ones got and what the Service proxy last did."""
    seen: list[list[dict[str, Any]]] = []

    def answered() -> bool:
        seen[:] = [pod.fetch(url, url)]
        return {a.get("server") for a in seen[0]} == servers

    try:
        wait_until(answered, timeout=ROTATION_SECONDS, interval=0.2, what=what)
    except AssertionError as exc:
        lines = node_agent.agent.log.read_text(errors="replace").splitlines()
        proxy = [line for line in lines if " service-proxy " in line or " forwarder " in line]
        told = [str(exc), f"last answers: {seen}", "the Service proxy's last lines:", *proxy[-20:]]
        raise AssertionError("\n".join(told)) from None


def test_an_endpoint_that_turns_unready_leaves_the_rotation_and_returns_once_ready(
    api: client.ApiClient, core: client.CoreV1Api, node_agent: RunningNode,
    cluster_services: tuple[str, list[str], ClientPod],
) -> None:  # fmt: skip
    namespace, pod_ips, pod = cluster_services
    discovery = client.DiscoveryV1Api(api)
    echo_pods = {p.status.pod_ip: p for p in core.list_namespaced_pod(
        namespace, label_selector="app=echo").items}  # fmt: skip
    leaving, staying = pod_ips
    flag = node_agent.pod_dir(echo_pods[leaving]) / "volumes" / "flags" / "unready"
    flag.touch()
    try:
        wait_until(lambda: ready_endpoints(discovery, namespace, "echo") == {leaving: False, staying: True},
                   timeout=30, interval=0.2, what=f"{leaving} unready in the EndpointSlice")  # fmt: skip
        url = f"http://echo.{namespace}.svc/"
        wait_for_rotation(
            pod, url, {f"{staying}:8080"}, node_agent, f"{leaving} out of the rotation"
        )
        answers = pod.fetch(*[url] * 6)
        assert [(a["status"], a["server"]) for a in answers] == [(200, f"{staying}:8080")] * 6
    finally:
        flag.unlink()
    wait_until(lambda: ready_endpoints(discovery, namespace, "echo") == {leaving: True, staying: True},
               timeout=30, interval=0.2, what=f"{leaving} ready again")  # fmt: skip
    wait_for_rotation(pod, url, {f"{leaving}:8080", f"{staying}:8080"}, node_agent,
                      f"{leaving} back in the rotation")  # fmt: skip


def test_a_service_made_after_the_pod_started_resolves_and_answers_and_a_deleted_one_stops(
    core: client.CoreV1Api, node_agent: RunningNode,
    cluster_services: tuple[str, list[str], ClientPod],
) -> None:  # fmt: skip
    namespace, pod_ips, pod = cluster_services
    name = f"late.{namespace}.svc"
    unknown = pod.resolve(name)[name]
    assert isinstance(unknown, str)  # not resolved: the resolver's message
    core.create_namespaced_service(namespace, service("late", 8080))
    cluster_ip = core.read_namespaced_service("late", namespace).spec.cluster_ip
    wait_until(lambda: pod.resolve(name) == {name: [cluster_ip]}, timeout=15, interval=0.2,
               what=f"{name} resolved in the pod")  # fmt: skip
    servers = {f"{ip}:8080" for ip in pod_ips}
    [answer] = pod.fetch(f"http://{name}:8080/late")
    assert (answer["status"], answer["path"], answer["server"] in servers) == (200, "/late", True)
    answer = pod.python(AIOHTTP, "http://late:8080/aiohttp")
    assert (answer["status"], answer["path"], answer["server"] in servers) == (
        200, "/aiohttp", True)  # fmt: skip

    core.delete_namespaced_service("late", namespace)
    wait_until(lambda: pod.resolve(name) == {name: unknown}, timeout=15, interval=0.2,
               what=f"{name} no longer resolved")  # fmt: skip
    wait_until(lambda: cluster_ip not in bridge_addresses(node_agent), timeout=15, interval=0.2,
               what=f"{cluster_ip} gone from the bridge")  # fmt: skip
    # the service range is routed to the bridge, where nothing has that address any more: the
    # kernel answers "no route" (gVisor's netstack lets the connection time out)
    [gone] = pod.fetch(f"http://{cluster_ip}:8080/", timeout=5)
    assert gone["error"] in ("[Errno 113] No route to host", "timed out")
