"""The control plane itself: the pinned release answers, the admin kubeconfig works with kubectl,
`make cluster` / `make cluster-down` (the module's command line) start and stop it, and a control
plane started by a test dies with the test process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_tool, wait_until
from tests.real import controlplane as cp

pytestmark = pytest.mark.real

GO_MOD = (ROOT / "controlplane" / "go.mod").read_text()
KUBERNETES = re.search(r"^\tk8s\.io/kubernetes (v\S+)$", GO_MOD, re.M).group(1)  # type: ignore[union-attr]
SYSTEM_NAMESPACES = {"default", "kube-node-lease", "kube-public", "kube-system"}


def test_the_api_server_is_the_pinned_release(control_plane: cp.ControlPlane) -> None:
    with control_plane.http() as api:
        version = api.get("/version").json()
    major, minor, _ = KUBERNETES.removeprefix("v").split(".")
    assert (version["gitVersion"], version["major"], version["minor"]) == (KUBERNETES, major, minor)


def test_kubectl_works_with_the_admin_kubeconfig(control_plane: cp.ControlPlane) -> None:
    kubectl = require_tool("kubectl")
    done = subprocess.run(
        [kubectl, "--kubeconfig", str(control_plane.kubeconfig), "get", "ns", "-o", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = {item["metadata"]["name"] for item in json.loads(done.stdout)["items"]}
    assert names >= SYSTEM_NAMESPACES
    whoami = subprocess.run(
        [kubectl, "--kubeconfig", str(control_plane.kubeconfig), "auth", "whoami", "-o", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert whoami.returncode == 0, whoami.stderr
    user = json.loads(whoami.stdout)["status"]["userInfo"]
    assert (user["username"], user["groups"]) == (
        "admin",
        ["system:masters", "system:authenticated"],
    )


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return None


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_up_status_and_down_from_the_command_line(tmp_path: Path, binaries: Path) -> None:
    """What `make cluster`, `make cluster-down` run: the programs outlive `up`; `down` stops
    every one of them and removes the state dir."""
    state = tmp_path / "cluster"

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tests.real.controlplane", command, "--state", str(state)],
            capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
        )  # fmt: skip

    up = run("up")
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        assert f"kubectl --kubeconfig {state / 'kubeconfig'} get ns" in up.stdout
        pids = cp.ControlPlane(state).running()
        assert sorted(pids) == sorted(cp.PROGRAMS)
        # each runs under its own name (the multi-call binary's symlinks); comm keeps 15 chars
        assert {name: _comm(pid) for name, pid in pids.items()} == {
            name: name[:15] for name in cp.PROGRAMS
        }
        status = run("status")
        assert status.returncode == 0
        assert [line.split() for line in status.stdout.splitlines()] == [
            [name, str(pids[name])] for name in cp.PROGRAMS
        ]
        assert run("up").stdout.startswith("already running: https://127.0.0.1:")
    finally:
        down = run("down")
    assert down.returncode == 0, down.stderr
    assert all(_gone(pid) for pid in pids.values())
    assert not state.exists()
    assert run("status").returncode == 1


KILLED_OWNER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from tests.real.controlplane import ControlPlane
    plane = ControlPlane(Path(sys.argv[1]), Path(sys.argv[2]))
    plane.start()
    print(json.dumps(plane.running()), flush=True)
    sys.stdin.read()  # until killed
""")


def test_a_control_plane_dies_with_the_test_process_that_started_it(
    tmp_path: Path, binaries: Path
) -> None:
    """A pytest killed mid-run (SIGKILL: no finalizer runs) leaves no control plane behind."""
    owner = subprocess.Popen(
        [sys.executable, "-c", KILLED_OWNER, str(tmp_path / "plane"), str(binaries)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert owner.stdout is not None
    pids: dict[str, int] = json.loads(owner.stdout.readline())
    assert sorted(pids) == sorted(cp.PROGRAMS)
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    wait_until(lambda: all(_gone(pid) for pid in pids.values()), timeout=30,
               what="the orphaned control plane to exit")  # fmt: skip
