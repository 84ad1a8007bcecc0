"""scripts/quickstart.sh without what it needs: it must stop at once, before creating or building
anything, and name every missing piece with how to get it. The tools are stand-ins that record
how they were called (a real cluster run is tests/e2e)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "quickstart.sh"
BASH = shutil.which("bash") or "/bin/bash"
HINTS = {
    "docker": "docker: not found on PATH; install it: https://docs.docker.com/get-docker/",
    "kind": "kind: not found on PATH; install it: https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    "kubectl": "kubectl: not found on PATH; install it: make tools (puts it in .tools/bin), or https://kubernetes.io/docs/tasks/tools/",
    "helm": "helm: not found on PATH; install it: make tools (puts it in .tools/bin), or https://helm.sh/docs/intro/install/",
    "engine": "docker engine: `docker info` failed, so no Docker engine is reachable; start Docker (or check DOCKER_HOST)",
}  # fmt: skip


def fake_tools(bin_dir: Path, tools: dict[str, int]) -> None:
    """Stand-ins for `tools` that log their arguments and exit with the given status."""
    bin_dir.mkdir(exist_ok=True)
    for name, status in tools.items():
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> "$CALLS"\nexit {status}\n')
        path.chmod(0o755)


def quickstart(tmp_path: Path, *args: str) -> tuple[int, str, list[str], float]:
    """Run the script with PATH = tmp_path/bin only; (status, stderr, tool calls, seconds)."""
    calls = tmp_path / "calls"
    calls.touch()
    env = {
        "PATH": str(tmp_path / "bin"),
        "TOOLS_BIN": str(tmp_path / "no-tools"),  # not the repository's .tools/bin
        "PYTHON": sys.executable,
        "CALLS": str(calls),
        "HOME": str(tmp_path),
    }
    started = time.monotonic()
    done = subprocess.run([BASH, str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=30, cwd=tmp_path)  # fmt: skip
    return done.returncode, done.stderr, calls.read_text().splitlines(), time.monotonic() - started


def missing(*keys: str) -> str:
    return "quickstart: cannot start, missing:\n" + "".join(f"  - {HINTS[k]}\n" for k in keys)


@pytest.mark.parametrize("command", [[], ["up"], ["preflight"]])
def test_with_nothing_installed_it_names_all_four_tools(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "bin").mkdir()
    status, stderr, calls, seconds = quickstart(tmp_path, *command)
    assert (status, stderr, calls) == (1, missing("docker", "kind", "kubectl", "helm"), [])
    assert seconds < 5


def test_a_docker_client_without_an_engine_is_stopped_before_anything_is_created(
    tmp_path: Path,
) -> None:
    fake_tools(tmp_path / "bin", {"docker": 1, "kind": 0, "kubectl": 0, "helm": 0})
    status, stderr, calls, seconds = quickstart(tmp_path)
    assert (status, stderr) == (1, missing("engine"))
    assert calls == ["docker info"]  # no `kind create cluster`, no `docker build`
    assert seconds < 5


def test_without_kind_it_says_so_and_creates_nothing(tmp_path: Path) -> None:
    fake_tools(tmp_path / "bin", {"docker": 0, "kubectl": 0, "helm": 0})
    status, stderr, calls, _ = quickstart(tmp_path)
    assert (status, stderr, calls) == (1, missing("kind"), ["docker info"])


def test_helm_and_kubectl_from_make_tools_count(tmp_path: Path) -> None:
    """`make tools` puts helm and kubectl in .tools/bin, not on PATH: the script finds them."""
    fake_tools(tmp_path / "bin", {"docker": 0, "kind": 0})
    fake_tools(tmp_path / "no-tools", {"kubectl": 0, "helm": 0})
    status, stderr, calls, _ = quickstart(tmp_path, "preflight")
    assert (status, stderr, calls) == (0, "", ["docker info"])


def test_cleaning_up_needs_only_kind(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    assert quickstart(tmp_path, "down")[:3] == (1, missing("kind"), [])
    fake_tools(tmp_path / "bin", {"kind": 0})
    assert quickstart(tmp_path, "down")[::2] == (0, ["kind delete cluster --name turnout"])


def test_the_script_is_executable_bash_in_strict_mode() -> None:
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(SCRIPT, os.X_OK)


def test_the_quickstart_agrees_with_the_kind_config_and_the_example_it_applies() -> None:
    """The NodePort the script gives the active Service is the one kind maps to the host, and
    the ModelDeployment it waits for is the one the example it applies creates."""
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert [node["role"] for node in config["nodes"]] == ["control-plane", "worker"]
    assert config["nodes"][0]["extraPortMappings"] == [
        {"containerPort": 30080, "hostPort": 30080, "listenAddress": "127.0.0.1", "protocol": "TCP"}
    ]
    script = SCRIPT.read_text()
    assert re.search(r"^NODE_PORT=30080\b", script, re.MULTILINE)
    assert '"$ROOT/examples/diabetes-champion.yaml"' in script
    example = yaml.safe_load((ROOT / "examples" / "diabetes-champion.yaml").read_text())
    name = example["metadata"]["name"]
    assert script.count(f"mdep/{name} ") == 2 and f"patch service {name} " in script
