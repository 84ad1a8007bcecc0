"""What Pods and Deployments report, computed from a behaviour, the pods' clocks and the rollout.

Pure functions (no Store, no threads): the controller gathers the facts, these turn them into the
status dicts a real kubelet and deployment controller would write, worded as they word them.
Condition timestamps move only when a condition's status (lastTransitionTime) or wording
(lastUpdateTime) changes, so recomputing an unchanged status is a no-op write in the Store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.kube.processes import ContainerProcess
from tests.kube.resources import Obj
from tests.kube.store import now_iso

MODES = ("available", "slow", "crashloop", "image_pull", "unready_after", "never_ready", "process")
HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
Condition = tuple[str, str, str]  # status, reason, message


@dataclass(frozen=True)
class Behaviour:
    mode: str = "available"
    delay: float = 0.0  # slow, unready_after
    restart_interval: float = 1.0  # crashloop, image_pull
    max_restarts: int = 5  # process
    env: Mapping[str, str] = field(default_factory=dict)  # process: extra env, e.g. for coverage


@dataclass
class PodClock:
    created: float
    created_iso: str
    ready: bool = False
    ready_since: float = 0.0
    changed_iso: str = ""


@dataclass
class Rollout:
    """What the controller remembers about one Deployment between ticks."""

    uid: str
    template_hash: str = ""
    progress_at: float = 0.0  # the last progress: rollout start or more pods available
    available: int = 0
    complete_replicas: int | None = None  # the replica count this template fully rolled out at
    process: ContainerProcess | None = None
    launch_error: tuple[str, str] | None = None  # (waiting reason, message) for `process`
    warned: tuple[str, str] | None = None  # the last kubelet event (reason, message) for `process`
    pods: dict[str, PodClock] = field(default_factory=dict)


def template_hash(template: Obj) -> str:
    number = int(hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest(), 16)
    return "".join(HASH_ALPHABET[(number >> (5 * i)) % len(HASH_ALPHABET)] for i in range(10))


def max_unavailable(spec: Obj, replicas: int) -> int:
    strategy = spec.get("strategy") or {}
    if strategy.get("type") != "RollingUpdate" or replicas == 0:
        return 0
    value = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return replicas * int(value[:-1]) // 100
    return int(value)


def container_state(
    pod: Obj, clock: PodClock, b: Behaviour, rollout: Rollout, now: float
) -> tuple[str, bool, Obj, int, Obj]:
    """(phase, ready, state, restartCount, lastState) of the pod's containers."""
    age = now - clock.created
    running = {"running": {"startedAt": clock.created_iso}}
    container = pod["spec"]["containers"][0]
    message = f"back-off 10s restarting failed container={container['name']} pod={pod['metadata']['name']}"
    backoff = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
    if b.mode == "available":
        return "Running", True, running, 0, {}
    if b.mode in ("slow", "unready_after"):
        return "Running", (age >= b.delay) == (b.mode == "slow"), running, 0, {}
    if b.mode == "never_ready":
        return "Running", False, running, 0, {}
    if b.mode == "crashloop":
        crashed = {"terminated": {"exitCode": 1, "reason": "Error"}}
        return "Running", False, backoff, 1 + int(age / b.restart_interval), crashed
    if b.mode == "image_pull":
        reason = "ErrImagePull" if int(age / b.restart_interval) % 2 == 0 else "ImagePullBackOff"
        message = f'Back-off pulling image "{container.get("image", "")}"'
        return "Pending", False, {"waiting": {"reason": reason, "message": message}}, 0, {}
    process = rollout.process
    if rollout.launch_error is not None:
        reason, message = rollout.launch_error
        waiting = {"reason": reason, **({"message": message} if message else {})}
        return "Pending", False, {"waiting": waiting}, 0, {}
    if process is None or (not process.running and process.restarts == 0):
        return "Pending", False, {"waiting": {"reason": "ContainerCreating"}}, 0, {}
    said = {"message": process.last_message} if process.last_message else {}
    last = {"terminated": {"exitCode": process.last_exit_code, "reason": "Error", **said}}
    if not process.running:
        return "Running", False, backoff, process.restarts, last
    return "Running", process.ready, running, process.restarts, last if process.restarts else {}


def pod_status(
    pod: Obj, clock: PodClock, b: Behaviour, rollout: Rollout, now: float
) -> tuple[Obj, bool]:
    phase, ready, state, restarts, last = container_state(pod, clock, b, rollout, now)
    flag = "True" if ready else "False"
    changed = clock.changed_iso or clock.created_iso
    conditions = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": clock.created_iso},
        {"type": "Initialized", "status": "True", "lastTransitionTime": clock.created_iso},
        {"type": "ContainersReady", "status": flag, "lastTransitionTime": changed},
        {"type": "Ready", "status": flag, "lastTransitionTime": changed},
    ]
    statuses = [
        {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": ready,
         "started": "running" in state, "restartCount": restarts, "state": state,
         "lastState": last}
        for c in pod["spec"]["containers"]
    ]  # fmt: skip
    status = {"phase": phase, "conditions": conditions, "containerStatuses": statuses,
              "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": clock.created_iso,
              "qosClass": "BestEffort"}  # fmt: skip
    return status, ready


def deployment_status(
    dep: Obj, rollout: Rollout, pods: int, ready: int, available: int, now: float
) -> Obj:
    """The Deployment's status; advances the rollout's progress bookkeeping as a side effect."""
    spec = dep["spec"]
    replicas = int(spec.get("replicas", 1))
    counts = {"replicas": pods, "updatedReplicas": pods, "readyReplicas": ready,
              "availableReplicas": available, "unavailableReplicas": max(0, replicas - available)}  # fmt: skip
    status: Obj = {"observedGeneration": dep["metadata"]["generation"]}
    status.update({key: value for key, value in counts.items() if value})  # omitempty
    if available > rollout.available:
        rollout.progress_at = now
    rollout.available = available
    if pods == replicas and available == replicas:
        rollout.complete_replicas = replicas
    rs = f'ReplicaSet "{dep["metadata"]["name"]}-{rollout.template_hash}"'
    progressing: Condition
    if rollout.complete_replicas == replicas:  # stays so when pods later turn unready, as in k8s
        progressing = ("True", "NewReplicaSetAvailable", f"{rs} has successfully progressed.")
    elif now - rollout.progress_at > float(spec.get("progressDeadlineSeconds", 600)):
        progressing = ("False", "ProgressDeadlineExceeded", f"{rs} has timed out progressing.")
    else:
        progressing = ("True", "ReplicaSetUpdated", f"{rs} is progressing.")
    available_cond: Condition = (
        ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        if available >= replicas - max_unavailable(spec, replicas)
        else ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    )  # fmt: skip
    previous = {c["type"]: c for c in (dep.get("status") or {}).get("conditions", [])}
    status["conditions"] = [
        condition(previous.get(kind), kind, *values)
        for kind, values in (("Available", available_cond), ("Progressing", progressing))
    ]
    return status


def condition(previous: Obj | None, kind: str, status: str, reason: str, message: str) -> Obj:
    """A condition whose times move only when its status (transition) or wording (update) does."""
    stamp = now_iso()
    same_status = previous is not None and previous.get("status") == status
    same_words = previous is not None and (previous.get("reason"), previous.get("message")) == (
        reason, message
    )  # fmt: skip
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": previous["lastUpdateTime"]
        if previous and same_status and same_words
        else stamp,
        "lastTransitionTime": previous["lastTransitionTime"] if previous and same_status else stamp,
        "reason": reason,
        "message": message,
    }
