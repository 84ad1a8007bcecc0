"""A model whose flavor's package the serving image lacks, deployed by the real operator on the
Kubernetes API emulator with real turnout-serve pods: the pods end with the one line naming the
package (their termination message, kept by the emulator as the kubelet keeps it), and the
ModelDeployment's status says it, so `kubectl get mdep` tells what to build into the image."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Registry
from tests.integration.cluster import Cluster, condition, history, running_cluster
from tests.integration.flavor_models import XGBOOST
from tests.integration.test_flavors import without

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(
    mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    yield from running_cluster(mlflow_registry, tmp_path_factory.mktemp("missing-package"))


def test_the_missing_package_is_the_rollouts_abort_reason(
    cluster: Cluster, flavor_models: dict[str, str], outside_volumes: Path
) -> None:
    the_missing_package_is_the_rollouts_abort_reason(cluster, flavor_models, outside_volumes)


def the_missing_package_is_the_rollouts_abort_reason(
    cluster: Cluster, flavor_models: dict[str, str], outside_volumes: Path, timeout: float = 120
) -> None:
    """The scenario, on the emulator or on the real control plane (tests/real)."""
    version = flavor_models[XGBOOST]
    blocked = [{"name": k, "value": v} for k, v in without(outside_volumes, "xgboost").items()]
    cluster.apply("boosted", {"name": XGBOOST, "version": version}, template={"env": blocked})
    status = cluster.wait_phase("boosted", "Degraded", timeout=timeout)
    reason = (f"the model needs package 'xgboost' (xgboost=={importlib.metadata.version('xgboost')}"
              " in its requirements.txt), which this image does not have")  # fmt: skip
    message = f"version {version} (blue) pods are failing: CrashLoopBackOff: {reason}"
    degraded = condition(status, "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == (
        "True", "PreviewCrashLooping", message)  # fmt: skip
    assert history(status)[-1] == (version, "blue", "Aborted")
    [pod] = cluster.kube.list(
        "v1", "Pod", cluster.namespace, labels="turnout.dev/model-deployment=boosted"
    )
    [container] = pod["status"]["containerStatuses"]
    assert container["lastState"]["terminated"]["message"] == reason
