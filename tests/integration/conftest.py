"""Real components for the integration tests: an MLflow tracking server (sqlite) on 127.0.0.1 with
the demo models registered, and `turnout-serve` / `mlflow models serve` as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


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


@pytest.fixture(scope="session")
def mlflow_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = Process(uri, start([
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{home}/mlflow.db",
        "--default-artifact-root", str(home / "artifacts"), "--workers", "1",
    ], home / "server.log", {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}),
        home / "server.log")  # fmt: skip
    try:
        wait_until(lambda: httpx.get(f"{uri}/health").status_code == 200, timeout=120,
                   interval=0.5, what="the MLflow tracking server")  # fmt: skip
        env = {"MLFLOW_TRACKING_URI": uri}
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "demo_models.py"), "--tracking-uri", uri],
            capture_output=True, text=True, timeout=600, env={**os.environ, **env}, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        yield Registry(uri, json.loads(done.stdout.strip().splitlines()[-1]), env)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def serve_factory(
    mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Process]]:
    """Start `turnout-serve` on a model URI; each server stops when the session ends."""
    started: list[Process] = []
    cache = tmp_path_factory.mktemp("cache")

    def serve(model_uri: str, *flags: str, env: dict[str, str] | None = None,
              ready: bool = True) -> Process:  # fmt: skip
        port = free_port()
        home = tmp_path_factory.mktemp("serve")
        argv = [str(BIN / "turnout-serve"), "-m", model_uri, "-p", str(port),
                "--cache-dir", str(cache), *flags]  # fmt: skip
        proc = Process(f"http://127.0.0.1:{port}",
                       start(argv, home / "serve.log", {**mlflow_registry.env, **(env or {})}),
                       home / "serve.log")  # fmt: skip
        started.append(proc)
        if ready:
            wait_for_ready(proc)
        return proc

    yield serve
    for proc in started:
        proc.stop()


def wait_for_ready(proc: Process, timeout: float = 120) -> None:
    wait_until(
        lambda: proc.alive() and httpx.get(f"{proc.url}/v2/health/ready").status_code == 200,
        timeout=timeout, interval=0.2, what=f"{proc.url} to be ready",
    )  # fmt: skip
