"""Real components for the integration tests: `turnout-serve` / `mlflow models serve` as real
processes, next to the MLflow registry of tests/conftest.py (re-exported here with `Process`,
`start`, `Registry`, `ROOT` and `BIN` for the modules that import them from this one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BIN, ROOT, Process, Registry, free_port, start, wait_until
from tests.integration.parity_pair import SEED, Models, Pair


@pytest.fixture(scope="session")
def serve_factory(
    mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Process]]:
    """Start `turnout-serve` on a model URI; each server stops when the session ends."""
    started: list[Process] = []
    cache = tmp_path_factory.mktemp("cache")

    def serve(model_uri: str, *flags: str, env: dict[str, str] | None = None,
              ready: bool = True, home: Path | None = None) -> Process:  # fmt: skip
        """`home` is the working directory (a fresh one if not given). A port found free may
        be taken (by any outgoing connection of the machine) before the server binds it: the
        server then exits at once, and is started again on another port."""
        home = home or tmp_path_factory.mktemp("serve")
        for _ in range(3):
            port = free_port()
            argv = [str(BIN / "turnout-serve"), "-m", model_uri, "-p", str(port),
                    "--cache-dir", str(cache), *flags]  # fmt: skip
            proc = Process(f"http://127.0.0.1:{port}",
                           start(argv, home / f"serve-{port}.log",
                                 {**mlflow_registry.env, **(env or {})}),
                           home / f"serve-{port}.log")  # fmt: skip
            started.append(proc)
            if not ready:
                return proc
            if ready_or_exited(proc):
                return proc
            if "address already in use" not in proc.output():
                raise AssertionError(f"turnout-serve exited:\n{proc.output()[-4000:]}")
        raise AssertionError(f"turnout-serve lost its port three times:\n{proc.output()[-2000:]}")

    yield serve
    for proc in started:
        proc.stop()


def ready_or_exited(proc: Process, timeout: float = 120) -> bool:
    """Wait until the server is ready (True) or has exited (False)."""

    def settled() -> bool:
        return not proc.alive() or httpx.get(f"{proc.url}/v2/health/ready").status_code == 200

    wait_until(settled, timeout=timeout, interval=0.2, what=f"{proc.url} to be ready")
    return proc.alive()


def wait_for_ready(proc: Process, timeout: float = 120) -> None:
    wait_until(
        lambda: proc.alive() and httpx.get(f"{proc.url}/v2/health/ready").status_code == 200,
        timeout=timeout, interval=0.2, what=f"{proc.url} to be ready",
    )  # fmt: skip


@pytest.fixture(scope="module")
def mlflow_serve(
    mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Process]]:
    """`mlflow models serve` on a model URI, as MLflow users run it (local env manager); one
    server per URI, flags, environment and working directory, reused until stopped."""
    running: dict[tuple[object, ...], Process] = {}

    def serve(uri: str, *flags: str, env: dict[str, str] | None = None, ready: bool = True,
              home: Path | None = None) -> Process:  # fmt: skip
        key = (uri, flags, tuple(sorted((env or {}).items())), home)
        if key not in running or running[key].popen.poll() is not None:
            port = free_port()
            cwd = home or tmp_path_factory.mktemp("mlflow-serve")
            argv = [str(BIN / "mlflow"), "models", "serve", "-m", uri, "-p", str(port),
                    "-h", "127.0.0.1", "--env-manager", "local", *flags]  # fmt: skip
            log = cwd / f"mlflow-serve-{port}.log"
            proc = Process(f"http://127.0.0.1:{port}",
                           start(argv, log, {**mlflow_registry.env, **(env or {})}), log)  # fmt: skip
            running[key] = proc
            if ready:
                wait_until(lambda: proc.alive() and httpx.get(f"{proc.url}/ping").status_code == 200,
                           timeout=180, interval=0.3, what=f"mlflow models serve {uri}")  # fmt: skip
        return running[key]

    yield serve
    for proc in running.values():
        proc.stop()


@pytest.fixture(scope="module")
def protocol_models(mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Models:
    """The models of protocol_models.py, logged to the test registry (or saved beside it)."""
    home = tmp_path_factory.mktemp("protocol-models")
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.protocol_models", str(home)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, check=False,
        env={**os.environ, **mlflow_registry.env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return Models(home, json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def pair(protocol_models: Models, mlflow_serve, serve_factory) -> Callable[..., Any]:  # type: ignore[no-untyped-def]
    """`pair(KEY, *flags)`: both servers on one of `protocol_models`, stopped on leaving."""

    @contextmanager
    def serving(key: str, *flags: str, home: Path | None = None) -> Iterator[Pair]:
        uri = protocol_models.uris[key]
        both = Pair(mlflow_serve(uri, *flags, env=SEED, home=home),
                    serve_factory(uri, *flags, env=SEED, home=home))  # fmt: skip
        try:
            yield both
        finally:  # one pair at a time: two servers per model would not fit in memory
            both.mlflow.stop()
            both.turnout.stop()

    return serving
