"""What the chart, kustomize and example tests share: YAML documents picked by kind, the Helm
chart rendered by the real `helm`, and the Kubernetes versions every object is validated against."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

CHART = ROOT / "charts" / "turnout"
RELEASE = "turnout"
NAMESPACE = "turnout-system"
# Strict schemas (kubernetes-validate) of two Kubernetes minor versions the chart supports
# (Chart.yaml kubeVersion): the oldest we test and a recent one.
KUBERNETES_VERSIONS = ("1.31", "1.35")
# Prometheus Operator kinds: no schema offline; their tests check them structurally.
MONITORING_GROUP = "monitoring.coreos.com/"

Doc = dict[str, Any]


def documents(text: str) -> list[Doc]:
    """The objects of a multi-document YAML stream (empty documents dropped)."""
    return [document for document in yaml.safe_load_all(text) if document]


def find(docs: Iterable[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [
        d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])
    ]  # fmt: skip


def one(docs: Iterable[Doc], kind: str, name: str | None = None) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


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
            self._cache[key] = documents(done.stdout)
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
