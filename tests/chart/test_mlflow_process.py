"""The bundled MLflow's container, run as it is rendered, with the pinned MLflow (the venv's, the
same version as the image tag): its command line must be one MLflow accepts, and its Host check
must let in the in-cluster URI the operator and the model pods use, and keep strangers out.

What differs from the pod: `mlflow` resolves in this venv's bin/ (on PATH too: MLflow starts
`uvicorn` by name); the volume mount /mlflow becomes a temporary directory and HOME a temporary
one; `--host 0.0.0.0 --port 5000` become 127.0.0.1 and a free port (only loopback here).
"""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.chart.conftest import env_of
from tests.conftest import BIN, Process, free_port, wait_until
from tests.manifests import NAMESPACE, Doc, Helm, one

SEARCH = "/api/2.0/mlflow/registered-models/search"


def localized(command: list[str], home: Path, port: int) -> list[str]:
    """The rendered command with the pod's paths and address replaced, and nothing else."""
    swapped = [a.replace("/mlflow/", f"{home}/") for a in command]
    swapped[swapped.index("--host") + 1] = "127.0.0.1"
    swapped[swapped.index("--port") + 1] = str(port)
    return [str(BIN / swapped[0]), *swapped[1:]]


@pytest.mark.slow
def test_rendered_mlflow_serves_the_in_cluster_host(helm: Helm, tmp_path: Path) -> None:
    docs = helm.template("with-mlflow-values.yaml")
    pod: Doc = one(docs, "Deployment", "turnout-mlflow")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"].endswith(f":v{importlib.metadata.version('mlflow')}")
    port = free_port()
    argv = localized(container["command"], tmp_path, port)
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path}/mlflow.db"
    env = {**env_of(container), "HOME": str(tmp_path), "PATH": str(BIN)}
    log = tmp_path / "mlflow.log"
    server = Process(f"http://127.0.0.1:{port}", subprocess.Popen(
        argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
    ), log)  # fmt: skip
    try:
        probe = container["readinessProbe"]["httpGet"]["path"]
        wait_until(lambda: server.alive() and httpx.get(server.url + probe).status_code == 200,
                   timeout=120, interval=0.5, what="the bundled MLflow's readiness")  # fmt: skip

        def search(host: str) -> int:
            return httpx.get(server.url + SEARCH, headers={"Host": host}, timeout=10).status_code

        # the operator's default tracking URI (http://mlflow.turnout-system.svc:5000), short
        # forms, the extra host of the values, a port-forward; then anything else
        assert search(f"mlflow.{NAMESPACE}.svc:5000") == 200
        assert search(f"mlflow.{NAMESPACE}.svc.cluster.local:5000") == 200
        assert search("mlflow:5000") == 200
        assert search("mlflow.example.com") == 200
        assert search("localhost:5000") == 200
        assert search("attacker.example:5000") == 403
        assert search(f"mlflow.{NAMESPACE}.attacker.example") == 403
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nMLflow log:\n{server.output()[-4000:]}") from None
    finally:
        server.stop()
