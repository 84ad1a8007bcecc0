"""A real cluster for the e2e suite: kind, set up by the quickstart's own `up` (cluster, both
images built and loaded, the chart with its bundled MLflow), MLflow forwarded to 127.0.0.1, and
kubectl to drive and read ModelDeployments as a user does.

Needs Docker (a reachable engine) and kind; without them the suite skips with the reason, the
only suite allowed to (`make e2e` sets TURNOUT_E2E_REQUIRE=1, which turns the skip into a
failure). TURNOUT_E2E_CLUSTER names an existing kind cluster to use instead of a new one (kept
afterwards); TURNOUT_E2E_KEEP=1 keeps the one created here, for a look after a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT, TOOLS, free_port, require_tool, wait_until

SCRIPTS = ROOT / "scripts"
CLUSTER = os.environ.get("TURNOUT_E2E_CLUSTER", "turnout-e2e")
SYSTEM = "turnout-system"
NAMESPACE = "e2e"
NODE_PORT = 30080  # kind-config.yaml's extraPortMappings containerPort


def unavailable() -> str | None:
    """Why kind cannot run here, or None."""
    docker = shutil.which("docker")
    if docker is None:
        return "docker is not installed"
    try:
        info = subprocess.run([docker, "info"], capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 60 s"
    if info.returncode != 0:
        return "no Docker engine is reachable (`docker info` failed)"
    if shutil.which("kind") is None:
        return "kind is not installed (https://kind.sigs.k8s.io)"
    return None


def skip_without_kind() -> None:
    """Module-level skip of an e2e module, with the reason; a failure under `make e2e`."""
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("TURNOUT_E2E_REQUIRE") == "1":
        pytest.fail(f"the e2e suite was asked for, but {reason}", pytrace=False)
    pytest.skip(f"e2e needs Docker and kind: {reason}", allow_module_level=True)


@dataclass
class Kubectl:
    """kubectl against the e2e cluster's context."""

    binary: str
    context: str

    def __call__(self, *args: str, input: str | None = None, timeout: float = 120) -> str:
        done = subprocess.run([self.binary, "--context", self.context, *args], input=input,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
        if done.returncode != 0:  # not an AssertionError: wait_until retries it
            raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def get(self, kind: str, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        return dict(json.loads(self("get", kind, name, "-n", namespace, "-o", "json")))

    def apply(self, obj: dict[str, Any]) -> None:
        self("apply", "-f", "-", input=json.dumps(obj))

    def service_get(self, service: str, path: str, namespace: str = NAMESPACE) -> Any:
        """GET through the API server's service proxy: it resolves the Service's endpoints on
        every request, so it follows a blue-green switch."""
        raw = f"/api/v1/namespaces/{namespace}/services/{service}:http/proxy/{path}"
        return json.loads(self("get", "--raw", raw))

    def operator_log(self) -> str:
        try:
            # both replicas: the leader's log, and the standby's
            return self("logs", "-n", SYSTEM, "-l", "app.kubernetes.io/component=operator",
                        "--prefix", "--tail", "80")  # fmt: skip
        except RuntimeError as exc:
            return str(exc)


def run_quickstart(command: str, env: dict[str, str], log: Path, timeout: float) -> None:
    with log.open("a") as out:
        done = subprocess.run(["bash", str(SCRIPTS / "quickstart.sh"), command], env=env,
                              stdout=out, stderr=subprocess.STDOUT, timeout=timeout)  # fmt: skip
    assert done.returncode == 0, f"quickstart.sh {command} failed:\n{log.read_text()[-6000:]}"


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def kube(workdir: Path) -> Iterator[Kubectl]:
    """The cluster, set up by `quickstart.sh up` as a user's would be, deleted at the end. Its
    node port 30080 shows on a free host port, not on 30080, so that a quickstart cluster
    already running does not collide."""
    kind = require_tool("kind")
    kubectl = require_tool("kubectl")
    existing = subprocess.run([kind, "get", "clusters"], capture_output=True, text=True).stdout
    created = CLUSTER not in existing.split()
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    [mapping] = config["nodes"][0]["extraPortMappings"]
    assert mapping["containerPort"] == NODE_PORT
    mapping["hostPort"] = free_port()
    (workdir / "kind-config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "TURNOUT_CLUSTER": CLUSTER, "TURNOUT_TAG": "e2e",
           "TURNOUT_KIND_CONFIG": str(workdir / "kind-config.yaml"), "TOOLS_BIN": str(TOOLS),
           "PYTHON": sys.executable}  # fmt: skip
    log = workdir / "quickstart.log"
    try:
        run_quickstart("up", env, log, timeout=2400)
        cluster = Kubectl(kubectl, f"kind-{CLUSTER}")
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        yield cluster
    finally:
        if created and os.environ.get("TURNOUT_E2E_KEEP") != "1":
            run_quickstart("down", env, log, timeout=600)


@pytest.fixture(scope="session")
def host_port(kube: Kubectl) -> int:
    """The host port kind maps the control plane's node port 30080 to (kind-config.yaml)."""
    docker = require_tool("docker")
    node = f"{CLUSTER}-control-plane"
    done = subprocess.run([docker, "port", node, f"{NODE_PORT}/tcp"], capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    if done.returncode != 0 or not done.stdout.strip():
        pytest.fail(f"{node} maps no host port to {NODE_PORT}: create it with kind-config.yaml")
    return int(done.stdout.split()[0].rsplit(":", 1)[1])


@dataclass
class Forward:
    """`kubectl port-forward svc/mlflow`, as the quickstart does, started again if it drops
    (it ends with the connection to the pod, and the suite runs for a while)."""

    kube: Kubectl
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        uri = f"http://127.0.0.1:{self.port}"
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [self.kube.binary, "--context", self.kube.context, "-n", SYSTEM, "port-forward",
                 "svc/mlflow", f"{self.port}:5000"],
                stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            wait_until(lambda: httpx.get(f"{uri}/health", timeout=5).status_code == 200,
                       timeout=120, interval=1, what="MLflow through the port-forward")  # fmt: skip
        return uri

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture(scope="session")
def mlflow(kube: Kubectl, workdir: Path) -> Iterator[Forward]:
    """The chart's MLflow on 127.0.0.1; `mlflow.uri` (re)establishes the port-forward."""
    forward = Forward(kube, workdir / "port-forward.log")
    try:
        yield forward
    finally:
        forward.stop()


def quickstart_models(*args: str) -> str:
    """scripts/quickstart_models.py, as quickstart.sh runs it; its stdout."""
    done = subprocess.run([sys.executable, str(SCRIPTS / "quickstart_models.py"), *args],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


@dataclass(frozen=True)
class Versions:
    """Two registered versions of Diabetes: `first` (100 trees), `second` (50 trees)."""

    first: str
    second: str


@pytest.fixture(scope="session")
def diabetes(mlflow: Forward) -> Versions:
    first = quickstart_models("register-champion", "--tracking-uri", mlflow.uri, "--trees", "100")
    second = quickstart_models("register-champion", "--tracking-uri", mlflow.uri, "--trees", "50")
    return Versions(first, second)
