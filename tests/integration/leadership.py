"""Two operator replicas electing their leader with a Lease, for the emulator's suite
(test_leader_election.py) and the real control plane's (tests/real/test_leader_election.py):
the same scenario on both.

The cluster's own operator process is replica `op-a`; `Replicas` starts `op-b` beside it (same
command and settings, its own identity and /metrics port) and reads the Lease they share.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import Process, free_port, start, wait_until
from tests.integration.cluster import Cluster, conditions, history

LEASE = "turnout-operator"
# Short durations, so a takeover shows within seconds: lease 4 s, renew deadline 3 s, retry 0.5 s.
ELECTION_ENV = {
    "TURNOUT_OPERATOR_LEADER_ELECTION": "true",
    "TURNOUT_OPERATOR_LEADER_ELECTION_LEASE_SECONDS": "4",
    "TURNOUT_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "3",
    "TURNOUT_OPERATOR_LEADER_ELECTION_RETRY_SECONDS": "0.5",
    "TURNOUT_OPERATOR_POD_NAME": "op-a",
}


def election_env(lease_namespace: str) -> dict[str, str]:
    return {**ELECTION_ENV, "TURNOUT_OPERATOR_POD_NAMESPACE": lease_namespace}


def leader_gauge(metrics: str) -> float | None:
    """`turnout_operator_leader` of one replica's /metrics (None: not up yet)."""
    try:
        text = httpx.get(metrics, timeout=2).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("turnout_operator_leader "):
            return float(line.split()[1])
    return None


@dataclass
class Replicas:
    cluster: Cluster
    lease_namespace: str
    others: dict[str, tuple[Process, str]] = field(
        default_factory=dict
    )  # name -> (process, /metrics)

    def pod(self, name: str) -> None:
        """A Pod object named as replica `name` (the processes run outside the cluster), for it
        to label while it leads; bound to a node that does not exist, so nothing runs it."""
        self.cluster.kube.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": self.lease_namespace},
            "spec": {"nodeName": "no-such-node",
                     "containers": [{"name": "operator", "image": "turnout-operator"}]},
        })  # fmt: skip

    def labelled(self) -> set[str]:
        """The replicas whose pod carries turnout.dev/leader=true."""
        pods = self.cluster.kube.list("v1", "Pod", self.lease_namespace)
        return {p["metadata"]["name"] for p in pods
                if (p["metadata"].get("labels") or {}).get("turnout.dev/leader") == "true"}  # fmt: skip

    def start(self, name: str, **env_overrides: str) -> None:
        """Another replica, as the cluster's operator was started but for its identity and port
        (and `env_overrides`), with a pod of its name to label."""
        self.pod(name)
        port = free_port()
        env = {**self.cluster.env, "TURNOUT_OPERATOR_POD_NAME": name,
               "TURNOUT_OPERATOR_METRICS_PORT": str(port), **env_overrides}  # fmt: skip
        log = self.cluster.operator.log.with_name(f"operator.{name}.{len(self.others)}.log")
        url = f"http://127.0.0.1:{port}"
        self.others[name] = (
            Process(url, start(self.cluster.argv, log, env), log),
            f"{url}/metrics",
        )

    def process(self, name: str) -> Process:
        return self.cluster.operator if name == "op-a" else self.others[name][0]

    def metrics(self, name: str) -> str:
        return self.cluster.metrics if name == "op-a" else self.others[name][1]

    def lease(self) -> dict[str, Any]:
        found = self.cluster.kube.get(
            "coordination.k8s.io/v1", "Lease", self.lease_namespace, LEASE
        )
        return {} if found is None else dict(found["spec"])

    def wait_leader(self, name: str, timeout: float = 30) -> None:
        wait_until(lambda: self.process(name).alive() and leader_gauge(self.metrics(name)) == 1.0,
                   timeout=timeout, interval=0.2, what=f"{name} leading")  # fmt: skip

    def wait_standby(self, name: str, timeout: float = 30) -> None:
        wait_until(lambda: self.process(name).alive() and leader_gauge(self.metrics(name)) == 0.0,
                   timeout=timeout, interval=0.2, what=f"{name} up as a standby")  # fmt: skip

    def stop(self) -> None:
        for process, _ in self.others.values():
            process.stop()


def the_leader_killed_mid_rollout_is_replaced(cluster: Cluster, replicas: Replicas) -> None:
    """op-a leads, op-b waits; op-a is SIGKILLed while a preview starts; op-b takes the Lease and
    completes the rollout, and nothing was done twice."""
    replicas.wait_leader("op-a")
    replicas.start("op-b")
    replicas.wait_standby("op-b")
    assert replicas.lease()["holderIdentity"] == "op-a"
    wait_until(lambda: replicas.labelled() == {"op-a"}, timeout=10, interval=0.2,
               what="op-a's pod labelled the leader")  # fmt: skip

    cluster.apply("ha", {"name": "Diabetes", "version": "1"},
                  strategy={"blueGreen": {"smokeTest": False, "autoPromotionEnabled": False,
                                          "scaleDownDelaySeconds": 2}})  # fmt: skip
    cluster.wait_phase("ha", "Healthy", timeout=180, activeVersion="1", activeColor="blue")
    # the standby has reconciled nothing: its ModelDeployment gauges never moved
    assert leader_gauge(replicas.metrics("op-b")) == 0.0
    standby = httpx.get(replicas.metrics("op-b")).text
    assert 'turnout_operator_modeldeployment_phase{phase="Healthy"} 0.0' in standby

    cluster.patch_spec("ha", {"model": {"name": "Diabetes", "version": "2"}})
    cluster.wait_rollout("ha", "2")
    replicas.process("op-a").stop(signal.SIGKILL)  # no release: op-b waits out the lease
    replicas.wait_leader("op-b")
    lease = replicas.lease()
    assert (lease["holderIdentity"], lease["leaseTransitions"]) == ("op-b", 1)
    # op-a's label stays on its pod until the pod restarts it (meanwhile not ready)
    wait_until(lambda: "op-b" in replicas.labelled(), timeout=10, interval=0.2,
               what="op-b's pod labelled the leader")  # fmt: skip

    cluster.operator = replicas.process("op-b")  # wait_phase checks the leader is alive
    cluster.wait_phase("ha", "Paused", timeout=180, previewVersion="2")
    cluster.annotate("ha", "turnout.dev/promote")
    status = cluster.wait_phase("ha", "Healthy", timeout=180, activeVersion="2",
                                activeColor="green")  # fmt: skip
    cluster.wait_replicas("ha-blue", 0, timeout=60)
    cluster.wait_event("ha", "ScaledDown")
    # nothing twice: one Deployment per color, each Event of the rollout once, one history
    # entry per version
    deployments = cluster.kube.list("apps/v1", "Deployment", cluster.namespace)
    assert sorted(d["metadata"]["name"] for d in deployments) == ["ha-blue", "ha-green"]
    assert cluster.reasons("ha") == [
        "RolloutStarted", "Promoted", "RolloutStarted", "PromotionRequested", "Promoted",
        "ScaledDown",
    ]  # fmt: skip
    assert history(status) == [("2", "green", "Promoted"), ("1", "blue", "Promoted")]
    assert conditions(status)["Ready"] == ("True", "Available")
    assert cluster.selector("ha") == "green"


def a_clean_stop_releases_the_lease(replicas: Replicas) -> None:
    """The leader stopped with SIGTERM leaves the Lease to nobody (holder ""), so a standby
    takes it at its next retry instead of waiting out the lease."""
    replicas.start("op-c")
    replicas.wait_standby("op-c")
    assert replicas.process("op-b").stop(signal.SIGTERM) == 0
    replicas.wait_leader("op-c")
    lease = replicas.lease()
    assert (lease["holderIdentity"], lease["leaseTransitions"]) == ("op-c", 2)
    labelled = wait_until(lambda: (found := replicas.labelled()) >= {"op-c"} and found,
                          timeout=10, interval=0.2, what="op-c's pod labelled")  # fmt: skip
    assert "op-b" not in labelled  # a clean stop takes the label off
    log = replicas.process("op-b").output()
    assert "released lease" in log, log[-2000:]
