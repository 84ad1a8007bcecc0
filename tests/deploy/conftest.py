"""What the deploy tests read: the two Dockerfiles parsed, the kustomizations and the Helm chart
rendered by the real kubectl and helm (the pinned ones in .tools/bin, from `make tools`: see
`tests.conftest.require_tool`)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, require_tool
from tests.manifests import Helm, documents

KUSTOMIZATIONS = ("base", "overlays/namespaced", "overlays/with-monitoring")
DOCKERFILES = {"serving": ROOT / "serving" / "Dockerfile", "operator": ROOT / "operator" / "Dockerfile"}  # fmt: skip


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Each kustomization under manifests/ as `kubectl kustomize` renders it."""
    kubectl = require_tool("kubectl")
    out = {}
    for name in KUSTOMIZATIONS:
        done = subprocess.run([kubectl, "kustomize", str(ROOT / "manifests" / name)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, f"kubectl kustomize manifests/{name}:\n{done.stderr}"
        out[name] = documents(done.stdout)
    return out


@pytest.fixture(scope="session")
def chart() -> list[dict[str, Any]]:
    """The chart with its defaults plus both Prometheus Operator monitors."""
    helm = Helm(require_tool("helm"))
    return helm.template(None, "serviceMonitor.enabled=true", "podMonitor.enabled=true")


# --- Dockerfiles ----------------------------------------------------------------------------------


@dataclass
class Stage:
    """One FROM ... section: its base (global ARGs expanded), its name, its instructions."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for key, rest in self.instructions if key == keyword]

    def exec_form(self, keyword: str) -> list[str] | None:
        """The last ENTRYPOINT or CMD, which must be in JSON (exec) form."""
        found = self.all(keyword)
        return json.loads(found[-1]) if found else None

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for rest in self.all("ENV"):
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                values[key] = value
        return values


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile. Comment lines go first, also inside a continued instruction,
    as Docker drops them; `${NAME}` in FROM takes the default of the ARG declared before it."""
    logical, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or not line:
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path}: the last instruction ends in a backslash"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for text in logical:
        keyword, _, rest = text.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            arg, _, default = rest.partition("=")
            args[arg] = default
        elif keyword == "FROM":
            expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], rest)
            words = expanded.split()
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=alias))
        else:
            assert stages, f"{path}: {keyword} before any FROM"
            stages[-1].instructions.append((keyword, rest))
    return stages


@pytest.fixture(scope="session")
def images() -> dict[str, list[Stage]]:
    return {name: parse_dockerfile(path) for name, path in DOCKERFILES.items()}
