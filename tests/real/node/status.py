"""A pod's status from what the node agent knows of its containers, as the kubelet computes it
(`pkg/kubelet/kubelet_pods.go` `getPhase`, `pkg/kubelet/status/generate.go`): phase, the
conditions it owns, and each container's status. Pure: the agent hands in its records and the
previous conditions (for `lastTransitionTime`), writes the result, and only when it changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
OWNED = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    started_at: str
    finished_at: str
    signal: int = 0
    container_id: str = ""
    message: str = ""

    def as_state(self) -> Obj:
        state: Obj = {"exitCode": self.exit_code,
                      "reason": "Completed" if self.exit_code == 0 else "Error",
                      "startedAt": self.started_at, "finishedAt": self.finished_at}  # fmt: skip
        if self.signal:
            state["signal"] = self.signal
        if self.message:
            state["message"] = self.message
        if self.container_id:
            state["containerID"] = self.container_id
        return {"terminated": state}


@dataclass
class Record:
    """One container as the agent knows it: exactly one of waiting, running_since, terminated."""

    name: str
    image: str
    waiting: tuple[str, str] = ("ContainerCreating", "")  # reason, message
    running_since: str | None = None
    terminated: Terminated | None = None
    last: Terminated | None = None
    restarts: int = 0
    ready: bool = False
    started: bool = False
    container_id: str = ""

    def wait(self, reason: str, message: str = "") -> None:
        self.waiting, self.running_since, self.terminated = (reason, message), None, None
        self.ready = self.started = False

    def run(self, since: str, container_id: str) -> None:
        self.running_since, self.terminated, self.container_id = since, None, container_id
        self.ready = self.started = False

    def end(self, terminated: Terminated) -> None:
        self.running_since, self.terminated = None, terminated
        self.ready = self.started = False

    def as_status(self) -> Obj:
        if self.running_since is not None:
            state: Obj = {"running": {"startedAt": self.running_since}}
        elif self.terminated is not None:
            state = self.terminated.as_state()
        else:
            reason, message = self.waiting
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        status: Obj = {
            "name": self.name, "image": self.image, "imageID": "", "ready": self.ready,
            "started": self.started, "restartCount": self.restarts, "state": state,
            "lastState": self.last.as_state() if self.last else {},
        }  # fmt: skip
        if self.container_id:
            status["containerID"] = self.container_id
        return status


@dataclass
class PodView:
    """What the status is computed from."""

    restart_policy: str
    init: list[Record] = field(default_factory=list)
    containers: list[Record] = field(default_factory=list)
    sandbox: bool = False  # the network namespace exists
    terminal: bool = False  # the pod is being stopped for good (deleted): nothing restarts


def phase(view: PodView) -> str:
    """`getPhase` (without restartable init containers)."""
    pending_init = failed_init = 0
    for record in view.init:
        if record.running_since is not None:
            pending_init += 1
        elif record.terminated is not None:
            failed_init += record.terminated.exit_code != 0
        elif record.last is not None and record.last.exit_code != 0:
            failed_init += 1
        else:
            pending_init += record.last is None
    if failed_init and view.restart_policy == "Never":
        return "Failed"
    if pending_init or failed_init:
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for record in view.containers:
        if record.running_since is not None:
            running += 1
        elif record.terminated is not None:
            stopped += 1
            succeeded += record.terminated.exit_code == 0
        elif record.last is not None:
            stopped += 1
        else:
            waiting += 1
    if view.terminal and not running:
        return "Succeeded" if stopped and stopped == succeeded and not waiting else "Failed"
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if view.restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if view.restart_policy == "Never" else "Running"
    return "Pending"


def _names(records: list[Record]) -> str:
    return "[" + " ".join(r.name for r in records) + "]"  # Go's %s of a []string


def conditions(view: PodView, pod_phase: str) -> dict[str, tuple[str, str, str]]:
    """Each owned condition type -> (status, reason, message)."""
    done = pod_phase == "Succeeded"
    incomplete = [r for r in view.init if not (r.terminated and r.terminated.exit_code == 0)]
    if done:
        initialized = ("True", "PodCompleted", "")
    elif incomplete:
        initialized = ("False", "ContainersNotInitialized",
                       f"containers with incomplete status: {_names(incomplete)}")  # fmt: skip
    else:
        initialized = ("True", "", "")
    unready = [r for r in view.containers if not r.ready]
    if done:
        ready = ("False", "PodCompleted", "")
    elif unready:
        ready = ("False", "ContainersNotReady",
                 f"containers with unready status: {_names(unready)}")  # fmt: skip
    else:
        ready = ("True", "", "")
    return {
        "PodReadyToStartContainers": ("True" if view.sandbox else "False", "", ""),
        "Initialized": initialized,
        "ContainersReady": ready,
        "Ready": ready,
    }


def pod_status(view: PodView, previous: list[Obj], now: str) -> Obj:
    """The status fields the agent owns; `previous`: the pod's conditions as last seen, whose
    `lastTransitionTime` stays where the status did not change, and whose types the agent does not
    own (PodScheduled, DisruptionTarget, ...) are kept as they are."""
    pod_phase = phase(view)
    before = {c["type"]: c for c in previous}
    merged = [c for c in previous if c["type"] not in OWNED]
    for kind, (status, reason, message) in conditions(view, pod_phase).items():
        old = before.get(kind)
        since = old["lastTransitionTime"] if old and old.get("status") == status else now
        # None, not absent: a status patch merges conditions by type, and a key left out would
        # keep the value it had
        merged.append({"type": kind, "status": status, "lastProbeTime": None,
                       "lastTransitionTime": since, "reason": reason or None,
                       "message": message or None})  # fmt: skip
    return {
        "phase": pod_phase,
        "conditions": merged,
        "initContainerStatuses": [r.as_status() for r in view.init],
        "containerStatuses": [r.as_status() for r in view.containers],
    }
