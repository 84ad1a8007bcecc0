"""Node agent benchmark: how long the node agent of tests/real takes to be Ready, to run a pod
and to stop one.

Why it exists: docs/development.md gives these figures, and a change to the agent (its tick, its
probes, its status writes) shows here first. It starts a control plane and a node agent in a
temporary directory (as `make cluster` does), then, a few rounds each: creates the echo server of
tests/real/echo.py as a pod (readiness probe `httpGet` every second) and times, from the create
call, the watch events that show it bound, Running and Ready; deletes it and times until it is
gone (it stops on SIGTERM); and deletes a pod that ignores SIGTERM (grace period 2 s). It prints
figures and asserts nothing.

What it must never do: send traffic anywhere but 127.0.0.1 and the pod network it makes, loop
without a bound, or leave a process behind (both are stopped in a `finally`; a killed run's
programs die with it).

    .venv/bin/python bench/node.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests.real lives in the repo

from tests.real import cluster
from tests.real.conftest import ECHO
from tests.real.controlplane import ControlPlane


def timed(
    core: client.CoreV1Api,
    name: str,
    start: Callable[[], Any],
    marks: dict[str, Callable[[dict[str, Any], str], bool]],
) -> dict[str, float]:
    """Call `start`, then stamp the first watch event of pod `name` that meets each mark."""
    began = time.perf_counter()
    start()
    stamps: dict[str, float] = {}
    selector = f"metadata.name={name}"
    stream = watch.Watch().stream(
        core.list_namespaced_pod, "default", field_selector=selector, timeout_seconds=120
    )
    for event in stream:
        for mark, met in marks.items():
            if mark not in stamps and met(event["raw_object"], event["type"]):
                stamps[mark] = time.perf_counter() - began
        if len(stamps) == len(marks):
            break
    return stamps


def running(pod: dict[str, Any], _: str) -> bool:
    statuses = pod["status"].get("containerStatuses") or []
    return any("running" in s.get("state", {}) for s in statuses)


def ready(pod: dict[str, Any], _: str) -> bool:
    conditions = pod["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def gone(_: dict[str, Any], kind: str) -> bool:
    return kind == "DELETED"


def pod(name: str, command: list[str], grace: int, **container: Any) -> dict[str, Any]:
    spec = {"name": name, "image": name, "command": command, **container}
    return {
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": grace, "containers": [spec]},
    }


def rounds_of(core: client.CoreV1Api, rounds: int) -> dict[str, list[float]]:
    echo = pod(
        "echo",
        [sys.executable, str(ECHO), "$(IP)", "8080"],
        30,
        env=[{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        readinessProbe={"httpGet": {"port": 8080, "path": "/"}, "periodSeconds": 1},
    )
    # Ready once its trap is set (a SIGTERM before that would end the shell at once)
    stubborn = pod(
        "stubborn",
        ["sh", "-c", "trap '' TERM; touch /run/trapped; while true; do sleep 0.1; done"],
        2,
        readinessProbe={"exec": {"command": ["test", "-e", "/run/trapped"]}, "periodSeconds": 1},
    )
    figures: dict[str, list[float]] = {}

    def add(key: str, seconds: float) -> None:
        figures.setdefault(key, []).append(seconds)

    for _ in range(rounds):
        create = timed(
            core, "echo", lambda: core.create_namespaced_pod("default", echo),
            {"Running": running, "Ready": ready},
        )  # fmt: skip
        add("echo server: create -> Running", create["Running"])
        add("echo server: create -> Ready (probe every 1 s)", create["Ready"])
        delete = timed(core, "echo", lambda: core.delete_namespaced_pod("echo", "default"),
                       {"gone": gone})  # fmt: skip
        add("echo server: delete -> gone (exits on SIGTERM)", delete["gone"])
        timed(core, "stubborn", lambda: core.create_namespaced_pod("default", stubborn),
              {"Ready": ready})  # fmt: skip
        delete = timed(core, "stubborn", lambda: core.delete_namespaced_pod("stubborn", "default"),
                       {"gone": gone})  # fmt: skip
        add("SIGTERM ignored: delete -> gone (grace 2 s)", delete["gone"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory(prefix="turnout-bench-node-") as tmp:
        plane = ControlPlane(Path(tmp) / "cluster")
        agent = None
        try:
            print(f"control plane ready in {plane.start():.1f} s")
            agent = cluster.node_agent(plane)
            print(f"node agent started; Node Ready (and untainted) in {agent.start():.2f} s")
            api = config.new_client_from_config(config_file=str(plane.kubeconfig))
            for key, values in rounds_of(client.CoreV1Api(api), rounds).items():
                print(
                    f"{key:48} median {statistics.median(values):5.2f} s, min {min(values):5.2f}, "
                    f"max {max(values):5.2f} ({len(values)} rounds)"
                )
        finally:
            if agent is not None:
                agent.stop()
            plane.stop()


if __name__ == "__main__":
    main()
