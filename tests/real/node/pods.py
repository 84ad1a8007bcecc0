"""One thread per pod bound to the node (the kubelet's pod worker): makes the pod's sandbox (its
network namespace) and volumes, runs its init containers in order and then its containers, probes
them, restarts them as the pod's restartPolicy and the back-off say, writes the status when it
changes, and stops everything when the pod is deleted (grace period, preStop), gone from the API
(at once) or the agent stops.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tests.podspec import termination_message
from tests.real.node import plan, runtime
from tests.real.node.lifecycle import BackOff, ProbeSpec, ProbeState, should_restart
from tests.real.node.status import OWNED, PodView, Record, Terminated, phase, pod_status

Obj = dict[str, Any]
log = logging.getLogger(__name__)
TICK = 0.2
DEFAULT_GRACE = 30.0


class Node(Protocol):
    """What a pod worker needs of its agent."""

    name: str
    host_ip: str
    state: Path
    base_env: dict[str, str]
    max_backoff: float

    def add_sandbox(self, key: str) -> str: ...  # -> the pod's IP
    # the pod's /etc/hosts and /etc/resolv.conf, written and kept up to date until remove_sandbox
    def name_files(self, key: str, pod: Obj, pod_ip: str, directory: Path) -> dict[str, Path]: ...
    def remove_sandbox(self, key: str) -> None: ...
    def netns(self, key: str) -> str: ...
    def lookup(self, kind: str, namespace: str, name: str) -> Obj | None: ...
    def token(self, pod: Obj, audience: str | None, expiration: int) -> str: ...
    def write_status(self, pod: Obj, status: Obj) -> bool: ...
    def confirm_deletion(self, pod: Obj) -> None: ...
    def event(self, pod: Obj, reason: str, message: str, warning: bool = False) -> None: ...


@dataclass
class Slot:
    """A container of the pod and what the worker keeps for it between ticks."""

    spec: Obj
    record: Record
    init: bool
    backoff: BackOff
    run: runtime.Run | None = None
    retry_at: float | None = 0.0  # when to (re)start it; None: never again
    runs: int = 0
    log_start: int = 0  # where this run's output begins in the container's log


class PodWorker(threading.Thread):
    def __init__(self, node: Node, pod: Obj) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.node = node
        self.uid: str = meta["uid"]
        self.key = self.uid[:8]
        self.directory = node.state / "pods" / f"{meta['namespace']}_{meta['name']}_{self.uid}"
        self._pod = pod
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._gone = threading.Event()
        self._shutdown: float | None = None  # the agent stops: at most this grace period
        self.pod_ip = ""
        self.name_files: dict[str, Path] = {}  # mountPath -> the file the node keeps there
        self.start_time = ""
        self.volumes_ready = False
        self.volumes_retry_at = 0.0
        self.terminal = False
        self.written: Obj | None = None
        spec = pod["spec"]
        init = [c["name"] for c in spec.get("initContainers") or []]
        first = "PodInitializing" if init else "ContainerCreating"
        self.slots = [Slot(c, Record(c["name"], c.get("image", ""), (first, "")), True,
                           BackOff(node.max_backoff)) for c in spec.get("initContainers") or []]  # fmt: skip
        self.slots += [Slot(c, Record(c["name"], c.get("image", ""), (first, "")), False,
                            BackOff(node.max_backoff)) for c in spec["containers"]]  # fmt: skip

    # --- what the agent tells it ------------------------------------------------------------
    @property
    def pod(self) -> Obj:
        with self._lock:
            return self._pod

    def update(self, pod: Obj) -> None:
        with self._lock:
            self._pod = pod
        self._wake.set()

    def gone(self) -> None:
        self._gone.set()
        self._wake.set()

    def shutdown(self, grace: float) -> None:
        self._shutdown = grace
        self._wake.set()

    # --- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._live()
        except Exception:  # a bug must not leave processes behind
            log.exception("pod worker %s failed", self.name)
            self._kill_all()
            self._clean_up()

    def _live(self) -> None:
        if self.pod["metadata"].get("deletionTimestamp"):  # deleted before it ever ran here
            self.node.confirm_deletion(self.pod)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pod_ip = self.node.add_sandbox(self.key)
        self.name_files = self.node.name_files(self.key, self.pod, self.pod_ip, self.directory)
        self.start_time = runtime.now_iso()
        while True:
            pod = self.pod
            if self._gone.is_set():
                self._kill_all()
                self._clean_up()
                return
            if self._shutdown is not None:
                self._stop_all(min(self._grace(pod), self._shutdown))
                self._clean_up()
                return
            if pod["metadata"].get("deletionTimestamp"):
                self._stop_all(float(pod["metadata"].get("deletionGracePeriodSeconds") or 0))
                self.terminal = True
                self._write_status(pod)
                self._clean_up()
                self.node.confirm_deletion(pod)
                return
            self._sync(pod, time.monotonic())
            self._write_status(pod)
            self._wake.wait(TICK)
            self._wake.clear()

    def _sync(self, pod: Obj, now: float) -> None:
        if self.terminal:
            return
        if not self.volumes_ready:
            if now < self.volumes_retry_at:
                return
            try:
                self._set_up_volumes(pod)
            except plan.MountError as exc:
                self.node.event(pod, "FailedMount", str(exc), warning=True)
                self.volumes_retry_at = now + 2.0  # the kubelet retries with a back-off of its own
                return
            self.volumes_ready = True
        for slot in self.slots:
            self._drive(pod, slot, now)
            if slot.init and not (slot.record.terminated and slot.record.terminated.exit_code == 0):
                break  # the next init container, or the containers, wait for this one
        if phase(self._view()) in ("Succeeded", "Failed"):
            self.terminal = True

    def _view(self) -> PodView:
        return PodView(self.pod["spec"].get("restartPolicy", "Always"),
                     [s.record for s in self.slots if s.init],
                     [s.record for s in self.slots if not s.init], bool(self.pod_ip),
                     self.terminal)  # fmt: skip

    # --- one container -----------------------------------------------------------------------
    def _drive(self, pod: Obj, slot: Slot, now: float) -> None:
        run = slot.run
        if run is not None:
            result = run.exit()
            if result is None:
                if not slot.init and run.stopping is None:
                    self._probe(pod, slot, run, now)
                return
            self._exited(pod, slot, run, result, now)
        if slot.retry_at is None or now < slot.retry_at:
            return
        self._start(pod, slot, now)

    def _exited(
        self, pod: Obj, slot: Slot, run: runtime.Run, result: tuple[int, int], now: float
    ) -> None:
        code, signal_number = result
        slot.run = None
        ended = Terminated(code, run.started_at, runtime.now_iso(), signal_number, run.container_id,
                           self._termination_message(slot, code))  # fmt: skip
        slot.record.end(ended)
        policy = pod["spec"].get("restartPolicy", "Always")
        restart = code != 0 and policy != "Never" if slot.init else should_restart(policy, code)
        if not restart:
            slot.retry_at = None
            return
        delay = slot.backoff.delay(run.began, now)
        slot.retry_at = now + delay
        if delay:
            slot.record.last = ended
            meta = pod["metadata"]
            slot.record.wait("CrashLoopBackOff", f"back-off {delay:g}s restarting failed container="
                             f"{slot.record.name} pod={meta['name']}_{meta['namespace']}({self.uid})")  # fmt: skip
            self.node.event(pod, "BackOff", f"Back-off restarting failed container "
                            f"{slot.record.name} in pod {meta['name']}_{meta['namespace']}({self.uid})",
                            warning=True)  # fmt: skip

    def _termination_message(self, slot: Slot, code: int) -> str:
        name = slot.record.name
        fallback = slot.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        return termination_message(self._message_file(name).read_bytes(), code, fallback,
                                   lambda: self._log(name).read_bytes()[slot.log_start:])  # fmt: skip

    def _message_file(self, container: str) -> Path:
        return self.directory / f"{container}.termination-log"

    def _log(self, container: str) -> Path:
        return self.directory / f"{container}.log"

    def _start(self, pod: Obj, slot: Slot, now: float) -> None:
        name = slot.record.name
        fields = plan.pod_fields(pod, self.pod_ip, self.node.host_ip)
        message = self._message_file(name)
        message.write_bytes(b"")  # a fresh, empty file for each run, as the kubelet makes one
        managed = {**self.name_files,
                   slot.spec.get("terminationMessagePath") or "/dev/termination-log": message}  # fmt: skip
        try:
            launch = plan.launch(pod, slot.spec, self.node.lookup, fields, self.node.base_env,
                                 lambda volume: self.directory / "volumes" / volume, managed)  # fmt: skip
        except plan.ConfigError as exc:
            slot.record.wait("CreateContainerConfigError", str(exc))
            slot.retry_at = now + 1.0
            return
        except plan.NoCommand as exc:
            slot.record.wait("CreateContainerError", str(exc))
            slot.retry_at = None
            return
        if slot.record.terminated is not None:
            slot.record.last = slot.record.terminated
        if slot.runs:
            slot.record.restarts += 1
        slot.runs += 1
        log = self._log(name)
        slot.log_start = log.stat().st_size if log.exists() else 0
        run = runtime.start(self.node.netns(self.key), launch, self.directory, name, log)
        slot.run, slot.retry_at = run, now  # retry_at: restart once it exits, if it must
        slot.record.run(run.started_at, run.container_id)
        for kind in ("startup", "readiness", "liveness"):
            if not slot.init and slot.spec.get(f"{kind}Probe"):
                run.probes[kind] = ProbeState.begin(
                    ProbeSpec.of(kind, slot.spec[f"{kind}Probe"]), run.began
                )
        slot.record.started = not slot.init and "startup" not in run.probes

    def _probe(self, pod: Obj, slot: Slot, run: runtime.Run, now: float) -> None:
        record = slot.record
        if not record.started:
            startup = run.probes["startup"]
            if startup.due(now):
                verdict = startup.record(self._check(pod, slot, run, "startup"), now)
                if verdict is False:
                    self._kill(pod, slot, run, "startup")
                record.started = verdict is True
            if not record.started:
                return
        readiness = run.probes.get("readiness")
        if readiness is None:
            record.ready = True
        else:
            if readiness.due(now):
                readiness.record(self._check(pod, slot, run, "readiness"), now)
            record.ready = readiness.result is True
        liveness = run.probes.get("liveness")
        if liveness is None or not liveness.due(now):
            return
        if liveness.record(self._check(pod, slot, run, "liveness"), now) is False:
            self._kill(pod, slot, run, "liveness")

    def _check(self, pod: Obj, slot: Slot, run: runtime.Run, kind: str) -> bool:
        spec = slot.spec[f"{kind}Probe"]
        ok = runtime.handler(
            spec, run, slot.spec, self.pod_ip, float(spec.get("timeoutSeconds", 1))
        )
        if not ok:
            self.node.event(pod, "Unhealthy", f"{kind.title()} probe failed", warning=True)
        return ok

    def _kill(self, pod: Obj, slot: Slot, run: runtime.Run, why: str) -> None:
        """A failed liveness or startup probe: stop the container (grace, preStop); its exit then
        goes where every exit goes (restartPolicy, back-off)."""
        probe = slot.spec[f"{why}Probe"]
        grace = float(probe.get("terminationGracePeriodSeconds") or self._grace(pod))
        message = f"Container {slot.record.name} failed {why} probe, will be restarted"
        self.node.event(pod, "Killing", message)
        run.killed_by = why
        run.stopping = self._stopper(pod, slot, run, grace)
        slot.record.ready = False

    def _stopper(self, pod: Obj, slot: Slot, run: runtime.Run, grace: float) -> threading.Thread:
        pre_stop = (slot.spec.get("lifecycle") or {}).get("preStop")
        thread = threading.Thread(target=runtime.stop, args=(run, grace, pre_stop, slot.spec,
                                                             self.pod_ip), daemon=True)  # fmt: skip
        thread.start()
        return thread

    # --- the end -----------------------------------------------------------------------------
    @staticmethod
    def _grace(pod: Obj) -> float:
        value = pod["spec"].get("terminationGracePeriodSeconds")
        return DEFAULT_GRACE if value is None else float(value)

    def _stop_all(self, grace: float) -> None:
        """Every running container stopped in parallel (preStop, SIGTERM, SIGKILL after `grace`
        seconds), their exits recorded; nothing restarts."""
        self.terminal = True
        stopping = [(slot, slot.run, slot.run.stopping or self._stopper(self.pod, slot, slot.run, grace))
                    for slot in self.slots if slot.run is not None]  # fmt: skip
        for slot, run, thread in stopping:
            thread.join(grace + 15)
            if thread.is_alive():
                runtime.kill(run)
            self._exited(self.pod, slot, run, run.exit() or (137, 9), time.monotonic())

    def _kill_all(self) -> None:
        for slot in self.slots:
            if slot.run is not None:
                runtime.kill(slot.run)
                slot.run = None

    def _clean_up(self) -> None:
        if self.pod_ip:
            self.node.remove_sandbox(self.key)
        runtime.remove_tree(self.directory)

    # --- volumes and status ------------------------------------------------------------------
    def _set_up_volumes(self, pod: Obj) -> None:
        namespace = pod["metadata"]["namespace"]
        fields = plan.pod_fields(pod, self.pod_ip, self.node.host_ip)

        def token(audience: str | None, expiration: int) -> str:
            return self.node.token(pod, audience, expiration)

        for volume in pod["spec"].get("volumes") or []:
            if "hostPath" in volume:
                continue
            files = plan.volume_files(volume, namespace, self.node.lookup, token, fields)
            memory = (volume.get("emptyDir") or {}).get("medium") == "Memory"
            runtime.write_volume(self.directory / "volumes" / volume["name"], files, memory=memory)

    def _write_status(self, pod: Obj) -> None:
        before = [
            c for c in pod.get("status", {}).get("conditions") or [] if c["type"] not in OWNED
        ]
        if self.written is not None:
            before += [c for c in self.written["conditions"] if c["type"] in OWNED]
        else:
            before += [
                c for c in pod.get("status", {}).get("conditions") or [] if c["type"] in OWNED
            ]
        status = pod_status(self._view(), before, runtime.now_iso())
        if self.pod_ip:
            status.update(podIP=self.pod_ip, podIPs=[{"ip": self.pod_ip}])
        status.update(hostIP=self.node.host_ip, hostIPs=[{"ip": self.node.host_ip}],
                      startTime=self.start_time or runtime.now_iso())  # fmt: skip
        if status != self.written and self.node.write_status(pod, status):
            self.written = status
