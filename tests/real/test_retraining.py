"""Retraining on the real control plane: the scenarios of tests/integration/retraining.py with
the operator under the chart's RBAC (jobs: get, list, watch, create, nothing more), the Job
controller of kube-controller-manager making the trainer's pod, and the node agent running it
(examples/retraining/train.py, as its image would) in a network namespace of its own, reaching
MLflow at the bridge address, as the serving pods do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.conftest import Registry
from tests.integration import retraining as scenarios
from tests.integration.cluster import Cluster
from tests.real import controlplane as cp
from tests.real.operator import operator_cluster

pytestmark = [pytest.mark.real, pytest.mark.usefixtures("clean_model_deployments")]


@pytest.fixture(scope="module")
def cluster(
    control_plane: cp.ControlPlane, core: client.CoreV1Api, crd: dict[str, object],
    mlflow_registry: Registry, pods_registry: str, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:  # fmt: skip
    yield from operator_cluster(
        control_plane, core, mlflow_registry, pods_registry,
        tmp_path_factory.mktemp("retraining"), "retraining",
        extra_env={"TURNOUT_OPERATOR_LIVE_QUALITY_INTERVAL_SECONDS": scenarios.READ_EVERY},
    )  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return scenarios.write_worlds(tmp_path_factory.mktemp("retraining-data"))


def test_drift_sustained_retrains_and_the_new_version_rolls_out_with_drift_back_to_normal(
    cluster: Cluster, mlflow_registry: Registry, data: dict[str, Path]
) -> None:
    scenarios.drift_retrains_and_the_new_version_rolls_out(cluster, mlflow_registry, data)


def test_a_failing_job_is_reported_and_not_retried_in_the_cooldown_and_few_rows_never_trigger(
    cluster: Cluster, mlflow_registry: Registry, data: dict[str, Path]
) -> None:
    scenarios.a_failing_job_is_bounded(cluster, mlflow_registry, data)
