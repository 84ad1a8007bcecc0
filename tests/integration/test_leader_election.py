"""Two operator replicas against the Kubernetes API emulator and the real MLflow registry: one
leads (holds the Lease) and reconciles, the other waits; the leader killed mid-rollout is
replaced and the rollout completes, with nothing done twice; a clean stop hands the Lease over
at once. Their Lease calls are exactly what the published leader-election Role grants."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Registry
from tests.integration.cluster import Cluster, calls_made, granted, running_cluster
from tests.integration.leadership import (
    Replicas,
    a_clean_stop_releases_the_lease,
    election_env,
    the_leader_killed_mid_rollout_is_replaced,
)

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
    yield replicas
    replicas.stop()


def test_the_leader_killed_mid_rollout_is_replaced(cluster: Cluster, replicas: Replicas) -> None:
    cluster.kube.controller.behave("default", "ha-green", "slow", delay=3)
    the_leader_killed_mid_rollout_is_replaced(cluster, replicas)


def test_a_clean_stop_releases_the_lease_to_the_standby(replicas: Replicas) -> None:
    a_clean_stop_releases_the_lease(replicas)


def test_the_lease_calls_are_what_the_leader_election_role_grants(cluster: Cluster) -> None:
    """Runs last: created, read and renewed, released."""
    leases = {call for call in calls_made(cluster.kube) if call[1] == "leases"}
    assert leases == granted("leader-election")
