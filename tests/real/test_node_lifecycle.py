"""A container's life on the node agent as on a kubelet: readiness takes a pod out of its
Service's endpoints and back; a failed liveness probe restarts the container; a crashing one
backs off (CrashLoopBackOff, 10 s then doubling); restartPolicy decides what restarts and the
pod's final phase; a finished container reports its termination message (the file, or its
output's end with FallbackToLogsOnError); deletion runs preStop, sends SIGTERM, and SIGKILL once
the grace period is over."""

from __future__ import annotations

import datetime
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch

from tests.conftest import wait_until
from tests.real.conftest import ECHO, RunningNode

pytestmark = pytest.mark.real

FLAGS = {"name": "flags", "emptyDir": {}}


def container(name: str, command: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": command, **extra}


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 2, **spec, "containers": list(containers)}}  # fmt: skip


def status(core: client.CoreV1Api, namespace: str, name: str) -> client.V1ContainerStatus | None:
    statuses = core.read_namespaced_pod(name, namespace).status.container_statuses
    return statuses[0] if statuses else None


def finished(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod:
    """The pod once its phase is final (Succeeded or Failed)."""
    return wait_until(lambda: (p := core.read_namespaced_pod(name, namespace)).status.phase
                      in ("Succeeded", "Failed") and p, timeout=60, what=f"{name}: a final phase")  # fmt: skip


def flag(
    node: RunningNode, core: client.CoreV1Api, namespace: str, name: str, file: str, on: bool
) -> None:
    """Create or remove a file in the pod's `flags` emptyDir (what its probes test for)."""
    path = node.pod_dir(core.read_namespaced_pod(name, namespace)) / "volumes" / "flags" / file
    if on:
        path.write_text("")
    else:
        path.unlink()


def test_readiness_moves_the_pod_out_of_its_endpoints_and_back(
    api: client.ApiClient, core: client.CoreV1Api, namespace: str, node_agent: RunningNode
) -> None:
    discovery = client.DiscoveryV1Api(api)
    core.create_namespaced_service(namespace, {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})  # fmt: skip
    server = container(
        "web", [sys.executable, str(ECHO), "$(IP)", "8080"],
        env=[{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        volumeMounts=[{"name": "flags", "mountPath": "/flags"}],
        readinessProbe={"exec": {"command": ["test", "!", "-e", "/flags/unready"]},
                        "periodSeconds": 1, "failureThreshold": 2, "successThreshold": 2},
    )  # fmt: skip
    core.create_namespaced_pod(namespace, pod("web", server, volumes=[FLAGS]))

    def endpoint() -> list[tuple[bool, bool]]:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=web").items  # fmt: skip
        return [
            (e.conditions.ready, e.conditions.serving) for s in slices for e in s.endpoints or []
        ]

    def ready() -> bool | None:
        found = status(core, namespace, "web")
        return found.ready if found and found.state.running else None

    wait_until(lambda: ready() is True and endpoint() == [(True, True)], timeout=60,
               what="the pod Ready and its endpoint ready")  # fmt: skip
    flag(node_agent, core, namespace, "web", "unready", True)
    wait_until(lambda: ready() is False and endpoint() == [(False, False)], timeout=60,
               what="the pod unready and its endpoint not ready")  # fmt: skip
    conditions = {
        c.type: (c.status, c.reason, c.message)
        for c in core.read_namespaced_pod("web", namespace).status.conditions
    }
    assert conditions["Ready"] == (
        "False",
        "ContainersNotReady",
        "containers with unready status: [web]",
    )
    assert status(core, namespace, "web").restart_count == 0  # readiness never restarts
    flag(node_agent, core, namespace, "web", "unready", False)
    wait_until(lambda: ready() is True and endpoint() == [(True, True)], timeout=60,
               what="the pod Ready again and its endpoint ready")  # fmt: skip


def test_a_failed_liveness_probe_restarts_the_container(
    core: client.CoreV1Api, namespace: str, node_agent: RunningNode
) -> None:
    sleeper = container(
        "sleeper", ["sh", "-c", "rm -f /flags/dead; touch /flags/started; exec sleep 3600"],
        volumeMounts=[{"name": "flags", "mountPath": "/flags"}],
        livenessProbe={"exec": {"command": ["test", "!", "-e", "/flags/dead"]}, "periodSeconds": 1,
                       "failureThreshold": 2},
    )  # fmt: skip
    core.create_namespaced_pod(namespace, pod("live", sleeper, volumes=[FLAGS]))
    first = wait_until(lambda: (s := status(core, namespace, "live")) and s.state.running and s,
                       timeout=60, what="the container running")  # fmt: skip
    # running is reported once the process starts; its command clears the flag a moment later
    started = (
        node_agent.pod_dir(core.read_namespaced_pod("live", namespace)) / "volumes/flags/started"
    )
    wait_until(started.exists, timeout=30, what="the container's command under way")
    flag(node_agent, core, namespace, "live", "dead", True)
    restarted = wait_until(
        lambda: (s := status(core, namespace, "live")) and s.restart_count == 1 and s.state.running and s,
        timeout=60, what="the container restarted once",
    )  # fmt: skip
    last = restarted.last_state.terminated
    # sleep stops on the SIGTERM of the kill (grace 2 s)
    assert (last.exit_code, last.signal, last.reason, last.container_id) == (
        143,
        15,
        "Error",
        first.container_id,
    )
    assert restarted.container_id != first.container_id
    assert core.read_namespaced_pod("live", namespace).status.phase == "Running"
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=live").items
    assert "Container sleeper failed liveness probe, will be restarted" in {
        e.message for e in events
    }


def test_a_crashing_container_backs_off_ten_seconds_then_twice_as_long(
    core: client.CoreV1Api, namespace: str, node_agent: RunningNode
) -> None:
    created = core.create_namespaced_pod(
        namespace, pod("crash", container("crash", ["sh", "-c", "exit 3"]))
    )
    where = f"pod=crash_{namespace}({created.metadata.uid})"

    def backing_off(restarts: int, seconds: int) -> client.V1ContainerStatus | None:
        found = status(core, namespace, "crash")
        waiting = found and found.state.waiting
        if (
            found
            and found.restart_count == restarts
            and waiting
            and waiting.reason == "CrashLoopBackOff"
        ):
            assert (
                waiting.message == f"back-off {seconds}s restarting failed container=crash {where}"
            )
            return found
        return None

    # the first restart is at once; the second waits 10 s, the third 20 s (the session's maximum)
    first = wait_until(lambda: backing_off(1, 10), timeout=60, interval=0.2, what="a 10 s back-off")
    second = wait_until(
        lambda: backing_off(2, 20), timeout=60, interval=0.2, what="a 20 s back-off"
    )
    for found in (first, second):
        last = found.last_state.terminated
        assert (last.exit_code, last.reason, last.signal) == (3, "Error", None)
    assert (
        second.last_state.terminated.started_at
        >= first.last_state.terminated.finished_at + datetime.timedelta(seconds=10)
    )
    pod_now = core.read_namespaced_pod("crash", namespace)
    assert pod_now.status.phase == "Running"  # restartPolicy Always: a crash-looping pod runs
    assert {c.type: c.status for c in pod_now.status.conditions}["Ready"] == "False"


@pytest.mark.parametrize(
    ("policy", "script", "phase", "code", "reason"),
    [
        ("Never", "exit 7", "Failed", 7, "Error"),
        ("OnFailure", "exit 0", "Succeeded", 0, "Completed"),
        # `$$$$`: the kubelet's expansion makes `$$` of `$$`, the shell its own pid
        ("Never", "kill -9 $$$$", "Failed", 137, "Error"),
    ],
)
def test_restart_policy_decides_the_final_phase(
    core: client.CoreV1Api, namespace: str, node_agent: RunningNode, policy: str, script: str,
    phase: str, code: int, reason: str,
) -> None:  # fmt: skip
    core.create_namespaced_pod(
        namespace, pod("once", container("once", ["sh", "-c", script]), restartPolicy=policy)
    )
    done = finished(core, namespace, "once")
    (found,) = done.status.container_statuses
    terminated = found.state.terminated
    assert (done.status.phase, terminated.exit_code, terminated.reason, found.restart_count) == (
        phase,
        code,
        reason,
        0,
    )
    conditions = {c.type: (c.status, c.reason) for c in done.status.conditions}
    expected = "PodCompleted" if phase == "Succeeded" else "ContainersNotReady"
    assert conditions["Ready"] == conditions["ContainersReady"] == ("False", expected)


LINES = "".join(f"line {i}\n" for i in range(1, 101))


@pytest.mark.parametrize(
    ("extra", "script", "message"),
    [
        ({}, "printf 'the model is gone' > /dev/termination-log; echo noise; exit 3",
         "the model is gone"),
        ({"terminationMessagePath": "/tmp/why"}, "printf why > /tmp/why; exit 1", "why"),
        # nothing in the file: the last 80 lines of a failed run's output
        ({"terminationMessagePolicy": "FallbackToLogsOnError"},
         "seq 1 100 | sed 's/^/line /'; exit 2", LINES.split("\n", 20)[-1]),
        ({"terminationMessagePolicy": "FallbackToLogsOnError"}, "echo all good; exit 0", None),
        ({}, "echo not read from the log; exit 2", None),
    ],
)  # fmt: skip
def test_a_finished_container_reports_its_termination_message(
    core: client.CoreV1Api, namespace: str, node_agent: RunningNode, extra: dict[str, str],
    script: str, message: str | None,
) -> None:  # fmt: skip
    core.create_namespaced_pod(namespace, pod(
        "said", container("said", ["sh", "-c", script], **extra), restartPolicy="Never"))  # fmt: skip
    done = finished(core, namespace, "said")
    (found,) = done.status.container_statuses
    assert found.state.terminated.message == message


def final_status(core: client.CoreV1Api, namespace: str, name: str) -> Iterator[list[Any]]:
    """Collects, in a thread, every version of the pod until it is deleted; yields the list."""
    seen: list[Any] = []
    done = threading.Event()

    def follow() -> None:
        for event in watch.Watch().stream(core.list_namespaced_pod, namespace,
                                          field_selector=f"metadata.name={name}", timeout_seconds=90):  # fmt: skip
            seen.append(event["object"])
            if event["type"] == "DELETED":
                break
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    yield seen
    done.wait(90)


def test_deletion_runs_pre_stop_then_sigterm_and_sigkills_what_ignores_it(
    core: client.CoreV1Api, namespace: str, node_agent: RunningNode
) -> None:
    # ready once the trap is set: a SIGTERM before would end the shell at once
    trapped = {"exec": {"command": ["test", "-e", "/run/trapped"]}, "periodSeconds": 1}
    polite = container("polite", ["sh", "-c", "trap 'exit 0' TERM; touch /run/trapped; while true; do sleep 0.1; done"],
                       lifecycle={"preStop": {"sleep": {"seconds": 2}}}, readinessProbe=trapped)  # fmt: skip
    stubborn = container("stubborn", ["sh", "-c", "trap '' TERM; touch /run/trapped; while true; do sleep 0.1; done"],
                         readinessProbe=trapped)  # fmt: skip
    core.create_namespaced_pod(namespace, pod("polite", polite, terminationGracePeriodSeconds=30))
    core.create_namespaced_pod(
        namespace, pod("stubborn", stubborn, terminationGracePeriodSeconds=3)
    )
    for name in ("polite", "stubborn"):
        wait_until(lambda n=name: (s := status(core, namespace, n)) and s.ready, timeout=60,
                   what=f"{name} ready")  # fmt: skip
    follows = {name: final_status(core, namespace, name) for name in ("polite", "stubborn")}
    seen = {name: next(follow) for name, follow in follows.items()}
    asked = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    for name in ("polite", "stubborn"):
        core.delete_namespaced_pod(name, namespace)
    for follow in follows.values():
        next(follow, None)
    ends = {}
    for name, versions in seen.items():
        assert versions and versions[-1].metadata.deletion_timestamp is not None, name
        last = versions[-1]
        (found,) = last.status.container_statuses
        # the deletion's own deadline (the node's confirmation with grace 0 moves it to its time)
        deadline = next(
            v.metadata.deletion_timestamp for v in versions if v.metadata.deletion_timestamp
        )
        ends[name] = (last.status.phase, found.state.terminated, deadline)
    phase, terminated, _ = ends["polite"]
    # preStop's 2 s sleep first, then SIGTERM, on which it exits 0
    assert (phase, terminated.exit_code, terminated.reason) == ("Succeeded", 0, "Completed")
    assert terminated.finished_at >= asked + datetime.timedelta(seconds=2)
    phase, terminated, deadline = ends["stubborn"]
    # SIGTERM ignored: SIGKILL once the 3 s since the deletion are over
    assert (phase, terminated.exit_code, terminated.signal, terminated.reason) == (
        "Failed",
        137,
        9,
        "Error",
    )
    assert terminated.finished_at >= deadline
    assert not core.list_namespaced_pod(namespace).items


def test_readiness_and_liveness_wait_for_the_startup_probe_whose_failure_restarts(
    core: client.CoreV1Api, namespace: str, node_agent: RunningNode
) -> None:
    started = {"exec": {"command": ["test", "-e", "/run/started"]}, "periodSeconds": 1}
    slow = container(
        "slow", ["sh", "-c", "sleep 3; touch /run/started; exec sleep 3600"],
        startupProbe={**started, "failureThreshold": 30},
        # would restart the container at once if it ran before the startup probe succeeded
        livenessProbe={**started, "failureThreshold": 1},
        readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1},
    )  # fmt: skip
    never = container("never", ["sleep", "3600"], startupProbe={**started, "failureThreshold": 2})
    core.create_namespaced_pod(namespace, pod("slow", slow))
    core.create_namespaced_pod(namespace, pod("never", never))
    early = wait_until(lambda: (s := status(core, namespace, "slow")) and s.state.running and s,
                       timeout=60, interval=0.1, what="the slow container running")  # fmt: skip
    assert (early.started, early.ready) == (False, False)
    late = wait_until(lambda: (s := status(core, namespace, "slow")) and s.ready and s, timeout=60,
                      what="the slow container started and ready")  # fmt: skip
    assert (late.started, late.restart_count, late.container_id) == (True, 0, early.container_id)
    # a startup probe that never succeeds: killed after 2 failures, restarted
    restarted = wait_until(lambda: (s := status(core, namespace, "never")) and s.restart_count >= 1 and s,
                           timeout=60, what="the never-starting container restarted")  # fmt: skip
    assert restarted.last_state.terminated.exit_code == 143
    assert (restarted.started, restarted.ready) == (False, False)
