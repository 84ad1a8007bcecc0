"""A model whose flavor's package the serving image lacks, on the real control plane under the
chart's RBAC: the node agent runs the pods, keeps each run's termination message as the kubelet
does, and the ModelDeployment's status names the missing package (the emulator's scenario of
tests/integration/test_missing_package.py, run here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.cluster import Cluster
from tests.integration.test_missing_package import the_missing_package_is_the_rollouts_abort_reason

pytestmark = [pytest.mark.real, pytest.mark.usefixtures("clean_model_deployments")]


def test_the_missing_package_is_the_rollouts_abort_reason(
    cluster: Cluster, flavor_models: dict[str, str], outside_volumes: Path
) -> None:
    the_missing_package_is_the_rollouts_abort_reason(cluster, flavor_models, outside_volumes, 180)
