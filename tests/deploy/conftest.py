"""What the deploy tests read: the two Dockerfiles parsed, the kustomizations and the Helm chart
rendered by the real kubectl and helm (the pinned ones in .tools/bin, from `make tools`)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"
KUSTOMIZATIONS = ("base", "overlays/namespaced", "overlays/with-monitoring")
DOCKERFILES = {"serving": ROOT / "serving" / "Dockerfile", "operator": ROOT / "operator" / "Dockerfile"}  # fmt: skip


def tool(name: str) -> str:
    """The pinned tool from .tools/bin first (a kubectl on PATH may bundle another kustomize)."""
    pinned = TOOLS / name
    return str(pinned) if os.access(pinned, os.X_OK) else require_tool(name)


def documents(text: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(text) if document]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def the(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = of_kind(objects, kind)
    return found


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Each kustomization under manifests/ as `kubectl kustomize` renders it."""
    kubectl = tool("kubectl")
    out = {}
    for name in KUSTOMIZATIONS:
        done = subprocess.run([kubectl, "kustomize", str(ROOT / "manifests" / name)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, f"kubectl kustomize manifests/{name}:\n{done.stderr}"
        out[name] = documents(done.stdout)
    return out


def helm_template(*values: str) -> list[dict[str, Any]]:
    """charts/turnout rendered as release `turnout` in turnout-system, with `--set` values."""
    assert (ROOT / "charts" / "turnout" / "Chart.yaml").exists(), "charts/turnout is missing"
    argv = [tool("helm"), "template", "turnout", str(ROOT / "charts" / "turnout"),
            "--namespace", "turnout-system", "--kube-version", "1.33.0"]  # fmt: skip
    for value in values:
        argv += ["--set", value]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"helm template:\n{done.stderr}"
    return documents(done.stdout)


@pytest.fixture(scope="session")
def chart() -> list[dict[str, Any]]:
    """The chart with its defaults plus both Prometheus Operator monitors."""
    return helm_template("serviceMonitor.enabled=true", "podMonitor.enabled=true")


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
