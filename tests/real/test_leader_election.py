"""Two operator replicas on the real control plane, under the chart's RBAC (its namespaced Role
for what they watch, its leader-election Role for the Lease in turnout-system), with real
serving pods: the scenarios of tests/integration/leadership.py. The Lease is the API server's
own coordination.k8s.io/v1 (resourceVersion checks, MicroTime fields validated)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.conftest import Registry
from tests.integration.cluster import Cluster, rules
from tests.integration.leadership import (
    Replicas,
    a_clean_stop_releases_the_lease,
    election_env,
    the_leader_killed_mid_rollout_is_replaced,
)
from tests.manifests import NAMESPACE as OPERATOR_NAMESPACE
from tests.real import controlplane as cp
from tests.real.operator import grant_leader_election, operator_cluster

pytestmark = [pytest.mark.real]


@pytest.fixture(scope="module")
def cluster(
    control_plane: cp.ControlPlane, core: client.CoreV1Api, crd: dict[str, object],
    mlflow_registry: Registry, pods_registry: str, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:  # fmt: skip
    role = grant_leader_election(control_plane)
    assert rules([role], "Role") == {
        ("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")
    } | {("", "pods", "patch")}  # the leader labels its own pod
    yield from operator_cluster(
        control_plane, core, mlflow_registry, pods_registry,
        tmp_path_factory.mktemp("leader-election"), "leader-election",
        extra_env=election_env(OPERATOR_NAMESPACE),
    )  # fmt: skip


@pytest.fixture(scope="module")
def replicas(cluster: Cluster) -> Iterator[Replicas]:
    replicas = Replicas(cluster, OPERATOR_NAMESPACE)
    replicas.pod("op-a")  # the cluster's own operator, running already
    yield replicas
    replicas.stop()


def test_the_leader_killed_mid_rollout_is_replaced(cluster: Cluster, replicas: Replicas) -> None:
    the_leader_killed_mid_rollout_is_replaced(cluster, replicas)


def test_a_clean_stop_releases_the_lease_to_the_standby(replicas: Replicas) -> None:
    a_clean_stop_releases_the_lease(replicas)
