"""Real components for the integration tests: `turnout-serve` / `mlflow models serve` as real
processes, next to the MLflow registry of tests/conftest.py (re-exported here with `Process`,
`start`, `Registry`, `ROOT` and `BIN` for the modules that import them from this one)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import BIN, Process, Registry, free_port, start, wait_until


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
