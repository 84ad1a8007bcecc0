"""`turnout-operator run` as a user starts it, with no cluster to talk to: it says what it looked
for and how to point it at a cluster, and exits 2, instead of a traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN


def run_without_cluster(home: Path, kubeconfig: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k != "KUBECONFIG" and not k.startswith("KUBERNETES_")}  # fmt: skip
    env["HOME"] = str(home)  # no ~/.kube/config there
    if kubeconfig is not None:
        env["KUBECONFIG"] = kubeconfig
    return subprocess.run(
        [str(BIN / "turnout-operator"), "run", "--namespace", "default", "--metrics-port", "0"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("kubeconfig", [None, "missing"], ids=["no-KUBECONFIG", "missing-file"])
def test_without_a_cluster_it_says_where_it_looked_and_exits_2(
    tmp_path: Path, kubeconfig: str | None
) -> None:
    path = None if kubeconfig is None else str(tmp_path / "nowhere" / "config")
    done = run_without_cluster(tmp_path, path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.splitlines()
    assert lines[0] == "turnout-operator: no Kubernetes cluster to talk to. It looked for:"
    assert lines[1].startswith(
        "  - an in-cluster service account (KUBERNETES_SERVICE_HOST and "
        "/var/run/secrets/kubernetes.io/serviceaccount/token): "
    )
    where = path or "~/.kube/config (KUBECONFIG is not set)"
    assert lines[2].startswith(f"  - a kubeconfig: {where}: ")
    assert "set KUBECONFIG to a kubeconfig" in done.stderr
