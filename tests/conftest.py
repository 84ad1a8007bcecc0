"""Helpers every test layer shares: one polling helper with a deadline, tool look-up, free ports,
server processes, and the one MLflow registry (a real tracking server with the demo models) that
tests/integration and tests/chart both use, started once per run."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import httpx
import pytest

T = TypeVar("T")
IN_CI = os.environ.get("CI") == "true"
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOOLS = ROOT / ".tools" / "bin"  # helm and kubectl, pinned (scripts/install-k8s-tools.sh)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests of tests/real last (in their order): `make test` builds the control plane in the
    background meanwhile, when the cache lacks it."""
    real = ROOT / "tests" / "real"
    items.sort(key=lambda item: item.path.is_relative_to(real))


def load_script(name: str, folder: str = "scripts") -> ModuleType:
    """A script of scripts/ (or of `folder`) as a module (its folder on sys.path, as when it
    runs), for its tests."""
    if str(ROOT / folder) not in sys.path:
        sys.path.insert(0, str(ROOT / folder))
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def wait_until(
    probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except AssertionError:
            raise  # the probe saw something that will not get better (a process died)
        except Exception as exc:  # the thing polled is not up yet
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}: {last_error!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_tool(name: str, *candidates: str) -> str:
    """Path of an external program: the pinned one in .tools/bin (`make tools`: helm, kubectl)
    first, then PATH, then `candidates`; skips without it locally, fails in CI (nothing may
    skip)."""
    for candidate in (str(TOOLS / name), name, *candidates):
        found = shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK) else None)
        if found:
            return found
    message = f"{name} is not installed (run `make tools`)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Process:
    """A server we started; stopped (and its log shown on failure) by the fixture that made it."""

    url: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return int(self.popen.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        """True while running; a process that exited fails the caller with its log's tail."""
        if self.popen.poll() is not None:
            raise AssertionError(f"exited {self.popen.returncode}:\n{self.output()[-3000:]}")
        return True


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a server process logging to `log`, with this venv's scripts first on PATH (MLflow
    starts `uvicorn` by name)."""
    handle = log.open("wb")
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.Popen(
        argv, stdout=handle, stderr=subprocess.STDOUT,
        env={**os.environ, "PATH": path, **(env or {})}, cwd=log.parent,
    )  # fmt: skip


@dataclass
class Registry:
    """The MLflow tracking server and what the demo registrar put in it."""

    uri: str
    models: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    artifacts: Path | None = None  # where the server keeps what `mlflow-artifacts:/` names

    def artifact_path(self, uri: str) -> Path:
        """The local directory of an `mlflow-artifacts:/...` URI this server serves."""
        assert self.artifacts is not None and uri.startswith("mlflow-artifacts:/"), uri
        return self.artifacts / uri.removeprefix("mlflow-artifacts:/").lstrip("/")


def start_mlflow(
    home: Path, env: dict[str, str] | None = None, stores: list[str] | None = None
) -> Process:
    """An MLflow tracking server on a free port of 127.0.0.1 (`env` in its environment), ready;
    the caller stops it. Its stores are the `stores` flags of `mlflow server`; by default sqlite
    in `home`, and artifacts served through it (`mlflow-artifacts:/`, kept in `home/artifacts`),
    as the chart's bundled MLflow serves them: pods, which cannot read this machine's files,
    download them the same way."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    stores = stores or ["--backend-store-uri", f"sqlite:///{home}/mlflow.db",
                        "--artifacts-destination", str(home / "artifacts"), "--serve-artifacts"]  # fmt: skip
    server = Process(uri, start([
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), *stores,
        "--workers", "1",
    ], home / "server.log", {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})}),
        home / "server.log")  # fmt: skip
    try:
        wait_until(lambda: server.alive() and httpx.get(f"{uri}/health").status_code == 200,
                   timeout=120, interval=0.5, what="the MLflow tracking server")  # fmt: skip
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def mlflow_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    home = tmp_path_factory.mktemp("mlflow")
    server = start_mlflow(home)
    try:
        env = {"MLFLOW_TRACKING_URI": server.url}
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "demo_models.py"), "--tracking-uri", server.url],
            capture_output=True, text=True, timeout=600, env={**os.environ, **env}, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        models = json.loads(done.stdout.strip().splitlines()[-1])
        yield Registry(server.url, models, env, artifacts=home / "artifacts")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def flavor_models(mlflow_registry: Registry) -> dict[str, str]:
    """The models of tests/integration/flavor_models.py (XGBoost, LightGBM) in the session's
    registry, deployed on the emulator and on the real control plane: name -> version."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.flavor_models"],
        capture_output=True, text=True, timeout=600, cwd=ROOT, check=False,
        env={**os.environ, **mlflow_registry.env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture
def outside_volumes() -> Iterator[Path]:
    """A folder the pod sees as this machine's: not under /tmp, which is the pod's emptyDir."""
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="turnout-flavors-") as folder:
        yield Path(folder)


def start_prometheus(home: Path, config: str) -> Process:
    """A real Prometheus (Debian's) on a free port with `config` as its prometheus.yml, ready;
    the caller stops it."""
    binary = require_tool("prometheus", "/usr/bin/prometheus")
    port = free_port()
    (home / "prometheus.yml").write_text(config)
    proc = Process(f"http://127.0.0.1:{port}", start([
        binary, f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
    ], home / "prometheus.log"), home / "prometheus.log")  # fmt: skip
    wait_until(lambda: proc.alive() and httpx.get(f"{proc.url}/-/ready").status_code == 200,
               timeout=60, interval=0.2, what="prometheus")  # fmt: skip
    return proc
