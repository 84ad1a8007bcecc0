"""The Helm chart under test, rendered by the real `helm` binary (`make tools`).

`helm` renders charts/turnout the way `helm install` would (same release name and namespace in
every test), and caches each rendering: helm is fast, but every test reads the same few.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.kube.emulator import KubeEmulator
from tests.manifests import CHART, RELEASE, Doc, Helm, one

# chart-testing's scenarios, plus the chart's defaults alone (None).
SCENARIOS: list[str | None] = [None, *sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))]


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(require_tool("helm"))


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeEmulator]:
    """The Kubernetes API emulator, its Deployments' pods available at once (no processes)."""
    with KubeEmulator(log_dir=tmp_path / "pods") as emulator:
        emulator.controller.behave_default("available")
        yield emulator


def operator_container(docs: Iterable[Doc]) -> Doc:
    deployment = one(docs, "Deployment", f"{RELEASE}-operator")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return dict(containers[0])


def env_of(container: Doc) -> dict[str, str]:
    """name -> value; `fieldRef:PATH` for a value from the downward API."""
    return {
        e["name"]: e["value"] if "value" in e else f"fieldRef:{e['valueFrom']['fieldRef']['fieldPath']}"
        for e in container["env"]
    }  # fmt: skip
