"""`turnout-operator run` as a user starts it, with no cluster to talk to, or with leader election
it cannot do: it says what it looked for or what to set, and exits 2, instead of a traceback."""

from __future__ import annotations

import json
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


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({}, "leader election needs the Lease's namespace: set TURNOUT_OPERATOR_POD_NAMESPACE "
             "(the chart sets it from the pod) or TURNOUT_OPERATOR_LEADER_ELECTION_NAMESPACE"),
        ({"TURNOUT_OPERATOR_POD_NAMESPACE": "ops",
          "TURNOUT_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "20"},
         "leader election needs 0 < retry < renew deadline < lease duration, got 2 < 20 < 15"),
    ],
    ids=["no-namespace", "deadline-past-the-lease"],
)  # fmt: skip
def test_leader_election_it_cannot_do_is_refused_with_exit_2(
    tmp_path: Path, settings: dict[str, str], said: str
) -> None:
    """Before any call: a kubeconfig is read (never contacted) and the settings are refused."""
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))  # fmt: skip
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KUBERNETES_", "TURNOUT_OPERATOR_"))}  # fmt: skip
    env |= {"KUBECONFIG": str(kubeconfig), "TURNOUT_OPERATOR_LEADER_ELECTION": "true", **settings}
    done = subprocess.run(
        [str(BIN / "turnout-operator"), "run", "--namespace", "default", "--metrics-port", "0"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert said in done.stderr
