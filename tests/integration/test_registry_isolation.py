"""One ModelDeployment's registry that never answers must not slow any other.

The real operator against the Kubernetes API emulator: eight ModelDeployments name tracking
servers that accept connections and never answer (their requests time out after 30 s here), and
one healthy ModelDeployment, on the real MLflow registry, gets a new version while all eight
are stuck. It must be rolled out while every one of those requests is still pending: the healthy
object's reconciles and registry questions never queue behind theirs.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Registry, wait_until
from tests.integration.cluster import Cluster, running_cluster

pytestmark = pytest.mark.slow

STUCK = 8
HANG_SECONDS = 30  # the operator's registry timeout here: a stuck request lasts this long


class Hanging:
    """A TCP server that accepts every connection and never answers, counting what the client
    opened and what it gave up on (closed)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.opened = 0
        self.closed = 0
        self._running = True
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._running = False
        self._listener.close()

    def _accept(self) -> None:
        while self._running:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.opened += 1
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(0.2)
            while self._running:
                try:
                    if not conn.recv(65536):  # the client gave up and closed
                        break
                except TimeoutError:
                    continue
        with self._lock:
            self.closed += 1


@pytest.fixture
def cluster(mlflow_registry: Registry, tmp_path: Path) -> Iterator[Cluster]:
    yield from running_cluster(
        mlflow_registry, tmp_path, pods="available",
        extra_env={"TURNOUT_OPERATOR_REGISTRY_TIMEOUT_SECONDS": str(HANG_SECONDS)},
    )  # fmt: skip


def test_a_healthy_object_moves_while_eight_registries_hang(cluster: Cluster) -> None:
    strategy = {"blueGreen": {"smokeTest": False, "scaleDownDelaySeconds": 0}}
    cluster.apply("healthy", {"name": "Diabetes", "version": "1"}, strategy=strategy)
    cluster.wait_phase("healthy", "Healthy", activeVersion="1", activeColor="blue")

    servers = [Hanging() for _ in range(STUCK)]
    try:
        for i, server in enumerate(servers):
            cluster.apply(f"stuck-{i}", {"name": "Diabetes", "version": "1"},
                          registry={"trackingUri": server.url}, strategy=strategy)  # fmt: skip
        wait_until(lambda: all(s.opened - s.closed >= 1 for s in servers), timeout=30,
                   interval=0.1, what="a request pending at every stuck registry")  # fmt: skip
        started = time.monotonic()
        cluster.patch_spec("healthy", {"model": {"name": "Diabetes", "version": "2"}})
        status = cluster.wait_phase("healthy", "Healthy", timeout=HANG_SECONDS - 5,
                                    activeVersion="2", activeColor="green")  # fmt: skip
        took = time.monotonic() - started
        gave_up = [s.closed for s in servers]
        # Each stuck object shows where it is without its answer: its daemon waits a moment for
        # the answer it asked first (handlers.ANSWER_GRACE_SECONDS), then writes its status.
        stuck = [cluster.wait_phase(f"stuck-{i}", "Pending", timeout=10) for i in range(STUCK)]
        still_pending = [s.opened - s.closed for s in servers]
    finally:
        for server in servers:
            server.stop()
    print(f"the healthy ModelDeployment moved to version 2 in {took:.2f} s")
    assert status["desiredVersion"] == "2"
    # Every stuck request was still pending: nothing the healthy object did waited for one.
    assert gave_up == [0] * STUCK
    assert [s.get("observedGeneration") for s in stuck] == [1] * STUCK
    assert all(pending >= 1 for pending in still_pending)  # the statuses came before any answer
