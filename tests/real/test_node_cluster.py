"""The node as the cluster sees it: a Ready Node with the kubelet's labels, addresses, capacity and
version, and a Lease it renews; and `make cluster` / `make cluster-down` end to end (the command
line of tests/real/cluster.py): a Ready node for kubectl, pods that run, an agent that a restart
replaces cleanly, and nothing left behind."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from tests.conftest import ROOT, require_tool, wait_until
from tests.real import controlplane as cp
from tests.real import netns
from tests.real.conftest import RunningNode

pytestmark = pytest.mark.real


def test_the_node_is_ready_as_a_kubelet_registers_it_and_renews_its_lease(
    api: client.ApiClient, core: client.CoreV1Api, node_agent: RunningNode,
    control_plane: cp.ControlPlane,
) -> None:  # fmt: skip
    node = core.read_node(node_agent.name)
    labels = node.metadata.labels
    assert {k: labels[k] for k in ("kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch")} == {
        "kubernetes.io/hostname": node_agent.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}  # fmt: skip
    assert [(a.type, a.address) for a in node.status.addresses] == [
        ("InternalIP", node_agent.host_ip), ("Hostname", node_agent.name)]  # fmt: skip
    assert {c.type: (c.status, c.reason) for c in node.status.conditions} == {
        "MemoryPressure": ("False", "KubeletHasSufficientMemory"),
        "DiskPressure": ("False", "KubeletHasNoDiskPressure"),
        "PIDPressure": ("False", "KubeletHasSufficientPID"),
        "Ready": ("True", "KubeletReady"),
    }
    assert (node.status.capacity["cpu"], node.status.capacity["pods"]) == (
        str(os.cpu_count()),
        "110",
    )
    assert node.status.allocatable == node.status.capacity
    with control_plane.http() as admin:
        version = admin.get("/version").json()["gitVersion"]
    info = node.status.node_info
    assert (info.kubelet_version, info.operating_system, info.architecture) == (
        version,
        "linux",
        "amd64",
    )
    assert not node.spec.taints  # the node lifecycle controller sees it healthy
    leases = client.CoordinationV1Api(api)
    lease = leases.read_namespaced_lease(node_agent.name, "kube-node-lease")
    assert (lease.spec.holder_identity, lease.spec.lease_duration_seconds) == (node_agent.name, 40)
    assert [(o.kind, o.name, o.uid) for o in lease.metadata.owner_references] == [
        ("Node", node_agent.name, node.metadata.uid)]  # fmt: skip
    renewed = lease.spec.renew_time
    wait_until(lambda: leases.read_namespaced_lease(node_agent.name, "kube-node-lease").spec.renew_time > renewed,
               timeout=30, interval=0.5, what="the Lease renewed")  # fmt: skip


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_make_cluster_gives_a_ready_node_that_runs_pods_and_down_leaves_nothing(
    tmp_path: Path, binaries: Path, control_plane: cp.ControlPlane
) -> None:
    kubectl = require_tool("kubectl")
    state = tmp_path / "cluster"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tests.real.cluster", *args, "--state", str(state)],
                              capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)  # fmt: skip

    def ctl(*args: str) -> str:
        done = subprocess.run([kubectl, "--kubeconfig", str(state / "kubeconfig"), *args],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def pod_pid() -> int | None:
        found = json.loads(ctl("get", "pod", "web", "-o", "json"))
        statuses = found["status"].get("containerStatuses") or [{}]
        running = "running" in statuses[0].get("state", {})
        return int(statuses[0]["containerID"].split("://")[1]) if running else None

    up = run("up")
    try:
        assert up.returncode == 0, up.stderr[-3000:] + up.stdout
        assert f"kubectl --kubeconfig {state / 'kubeconfig'} get nodes" in up.stdout
        name, ready, _, _, version = ctl("get", "nodes", "--no-headers").split()
        assert (name, ready, version) == (
            "turnout-node",
            "Ready",
            "v1.37.2",  # the API server's version (controlplane/go.mod)
        )
        status = run("status")
        assert status.returncode == 0
        agent = json.loads((state / "node" / "node.json").read_text())
        assert status.stdout.splitlines()[-1].split() == ["node-agent", str(agent["pid"])]
        # a second cluster on this machine (the session's runs too): a service range of its own
        service_range = ipaddress.ip_network(
            json.loads((state / "cluster.json").read_text())["serviceCIDR"]
        )
        assert not service_range.overlaps(ipaddress.ip_network(control_plane.service_cidr))
        ctl("create", "service", "clusterip", "web", "--tcp=80:8080")
        cluster_ip = ipaddress.ip_address(
            ctl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
        )
        assert cluster_ip in service_range
        wait_until(lambda: cluster_ip in {a.ip for a in netns.host_addresses()}, timeout=30,
                   interval=0.2, what=f"{cluster_ip} on the node's bridge")  # fmt: skip
        ctl("run", "web", "--image=busybox", "--command", "--", "sleep", "3600")
        first = wait_until(pod_pid, timeout=60, what="pod web running")
        first_netns = {
            n for n in netns.owned_names()[0] if n.startswith(f"{netns.PREFIX}{agent['pid']:x}-")
        }
        assert len(first_netns) == 1

        # an agent killed outright; `up` starts a new agent, which stops what the dead one left
        # (its containers, its namespaces) and runs the pod again
        os.kill(agent["pid"], signal.SIGKILL)
        again = run("up")
        assert again.returncode == 0, again.stderr[-3000:]
        second = wait_until(lambda: (pid := pod_pid()) != first and pid, timeout=60,
                            what="pod web running under the new agent")  # fmt: skip
        wait_until(lambda: not alive(first), timeout=30, what="the old container stopped")
        assert not first_netns & set(netns.owned_names()[0])
        agent = json.loads((state / "node" / "node.json").read_text())
    finally:
        down = run("down")
    assert down.returncode == 0, down.stderr
    assert not alive(second) and not alive(agent["pid"])
    namespaces, links = netns.owned_names()
    tag = f"{netns.PREFIX}{agent['pid']:x}"
    assert not [n for n in [*namespaces, *links] if n.startswith(tag)]
    assert not [a for a in netns.host_addresses() if a.ip in service_range]
    assert service_range.with_prefixlen not in netns.ip("route", "show")
    assert not state.exists()
    assert run("status").returncode == 1
