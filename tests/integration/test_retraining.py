"""Retraining end to end: the real operator against the Kubernetes API emulator, real
turnout-serve pods, a real MLflow server, and the example trainer (examples/retraining/train.py)
run by the emulator's Job controller as a process, exactly as its image would run it. The
scenarios (tests/integration/retraining.py) run on the real control plane too
(tests/real/test_retraining.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Registry, start_mlflow
from tests.integration import retraining as scenarios
from tests.integration.cluster import Cluster, running_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return scenarios.write_worlds(tmp_path_factory.mktemp("retraining-data"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    home = tmp_path_factory.mktemp("mlflow-retraining")
    server = start_mlflow(home)
    try:
        yield Registry(server.url, {}, {"MLFLOW_TRACKING_URI": server.url}, home / "artifacts")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from running_cluster(
        registry, tmp_path_factory.mktemp("retraining"),
        extra_env={"TURNOUT_OPERATOR_LIVE_QUALITY_INTERVAL_SECONDS": scenarios.READ_EVERY},
    )  # fmt: skip


@pytest.fixture(autouse=True)
def clean_up(cluster: Cluster) -> Iterator[None]:
    yield
    cluster.delete_model_deployments()


def test_drift_sustained_retrains_and_the_new_version_rolls_out_with_drift_back_to_normal(
    cluster: Cluster, registry: Registry, data: dict[str, Path]
) -> None:
    scenarios.drift_retrains_and_the_new_version_rolls_out(cluster, registry, data)


def test_a_failing_job_is_reported_and_not_retried_in_the_cooldown_and_few_rows_never_trigger(
    cluster: Cluster, registry: Registry, data: dict[str, Path]
) -> None:
    scenarios.a_failing_job_is_bounded(cluster, registry, data)


def test_promote_alias_lets_the_operator_move_the_alias_to_a_better_version(
    cluster: Cluster, registry: Registry, data: dict[str, Path]
) -> None:
    scenarios.the_operator_promotes_a_better_version(cluster, registry, data)
