"""Two operator replicas against the Kubernetes API emulator and the real MLflow registry: one
leads (holds the Lease) and reconciles, the other waits; the leader killed mid-rollout is
replaced and the rollout completes, with nothing done twice; a clean stop hands the Lease over
at once; a leader cut from the API server exits. Their Lease calls are exactly what the
published leader-election Role grants."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import Registry, wait_until
from tests.integration.cluster import Cluster, calls_made, granted, running_cluster
from tests.integration.leadership import (
    Replicas,
    a_clean_stop_releases_the_lease,
    election_env,
    the_leader_killed_mid_rollout_is_replaced,
)
from tests.integration.outage import Forwarder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(
    mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    yield from running_cluster(
        mlflow_registry, tmp_path_factory.mktemp("leader-election"), pods="available",
        extra_env=election_env("default"),
    )  # fmt: skip


@pytest.fixture(scope="module")
def replicas(cluster: Cluster) -> Iterator[Replicas]:
    replicas = Replicas(cluster, "default")
    replicas.pod("op-a")  # the cluster's own operator, running already
    yield replicas
    replicas.stop()


def test_the_leader_killed_mid_rollout_is_replaced(cluster: Cluster, replicas: Replicas) -> None:
    cluster.kube.controller.behave("default", "ha-green", "slow", delay=3)
    the_leader_killed_mid_rollout_is_replaced(cluster, replicas)


def test_a_clean_stop_releases_the_lease_to_the_standby(replicas: Replicas) -> None:
    a_clean_stop_releases_the_lease(replicas)


def test_a_leader_cut_from_the_api_server_exits_and_the_standby_takes_over(
    cluster: Cluster, replicas: Replicas, tmp_path: Path
) -> None:
    """op-d reaches the API server through a forwarder; cut, it cannot renew: it exits (status
    1) at its renew deadline rather than reconcile on without the Lease, and op-e leads."""
    with Forwarder(urlparse(cluster.kube.url).port or 0) as cut:
        kubeconfig = cluster.kube.write_kubeconfig(tmp_path / "kubeconfig")
        config = json.loads(kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = cut.url
        kubeconfig.write_text(json.dumps(config))
        replicas.start("op-d", KUBECONFIG=str(kubeconfig))
        replicas.wait_standby("op-d")
        assert replicas.process("op-c").stop(signal.SIGTERM) == 0  # released: op-d takes it
        replicas.wait_leader("op-d")
        replicas.start("op-e")
        replicas.wait_standby("op-e")
        cut.down()
        leader = replicas.process("op-d").popen
        wait_until(lambda: leader.poll() is not None, timeout=30, interval=0.1,
                   what="op-d to exit once it could not renew")  # fmt: skip
        assert leader.returncode == 1
        said = "lost the lease default/turnout-operator: could not renew the lease for 3 s"
        assert said in replicas.process("op-d").output()
        replicas.wait_leader("op-e")
        lease = replicas.lease()
        assert (lease["holderIdentity"], lease["leaseTransitions"]) == ("op-e", 4)


def test_the_lease_calls_are_what_the_leader_election_role_grants(cluster: Cluster) -> None:
    """Runs last: created, read and renewed, released; the replicas' own pods labelled."""
    made = {call for call in calls_made(cluster.kube) if call[1] in ("leases", "pods")}
    assert {call for call in made if call[1] == "leases" or call[2] == "patch"} == granted(
        "leader-election"
    )
