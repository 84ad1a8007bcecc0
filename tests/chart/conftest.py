"""The Helm chart under test, rendered by the real `helm` binary (`make tools`).

`helm` renders charts/turnout the way `helm install` would (same release name and namespace in
every test), and caches each rendering: helm is fast, but every test reads the same few.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, require_tool
from tests.kube.emulator import KubeEmulator

CHART = ROOT / "charts" / "turnout"
RELEASE = "turnout"
NAMESPACE = "turnout-system"
# chart-testing's scenarios, plus the chart's defaults alone (None).
SCENARIOS: list[str | None] = [None, *sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))]

Doc = dict[str, Any]


@dataclass
class Helm:
    binary: str
    _cache: dict[tuple[Any, ...], list[Doc]] = field(default_factory=dict)

    def run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
        )

    def template(
        self, scenario: str | None = None, *sets: str, include_crds: bool = False
    ) -> list[Doc]:
        """The chart's objects for `ci/<scenario>` plus `--set` items (fresh copies, cached)."""
        key = (scenario, sets, include_crds)
        if key not in self._cache:
            done = self.run(*self._template_args(scenario, sets, include_crds))
            assert done.returncode == 0, done.stderr
            self._cache[key] = [d for d in yaml.safe_load_all(done.stdout) if d]
        return yaml.safe_load(yaml.safe_dump(self._cache[key]))  # a deep copy

    def template_error(self, *sets: str) -> str:
        """helm's error for values it must refuse."""
        done = self.run(*self._template_args(None, sets, False))
        assert done.returncode != 0, f"helm accepted {sets}"
        return done.stderr

    @staticmethod
    def _template_args(scenario: str | None, sets: Iterable[str], include_crds: bool) -> list[str]:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        if scenario:
            args += ["--values", str(CHART / "ci" / scenario)]
        for item in sets:
            args += ["--set", item]
        return [*args, "--include-crds"] if include_crds else args


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(require_tool("helm", str(ROOT / ".tools" / "bin" / "helm")))


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeEmulator]:
    """The Kubernetes API emulator, its Deployments' pods available at once (no processes)."""
    with KubeEmulator(log_dir=tmp_path / "pods") as emulator:
        emulator.controller.behave_default("available")
        yield emulator


def find(docs: Iterable[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [
        d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])
    ]  # fmt: skip


def one(docs: Iterable[Doc], kind: str, name: str | None = None) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def operator_container(docs: Iterable[Doc]) -> Doc:
    deployment = one(docs, "Deployment", f"{RELEASE}-operator")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return dict(containers[0])


def env_of(container: Doc) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}
