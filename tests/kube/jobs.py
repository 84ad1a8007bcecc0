"""A stand-in for kube-controller-manager's Job controller and the kubelet, for batch/v1 Jobs.

Each Job's pod template's first container runs as a local process (`processes.py`: `plan_launch`,
`ContainerProcess`; env and envFrom from Secrets and ConfigMaps, volumes, as for the Deployment
controller's `process` pods). A Pod object is created for each attempt (owned by the Job, named
`<job>-<5 random>`, with the template's labels) and given the phase and container state a kubelet
would report. When the process exits, the Job gets the status the real Job controller ends with
(`startTime`, `completionTime`, `succeeded`/`failed`, `terminating: 0`, `ready: 0`,
`uncountedTerminatedPods: {}`, and the condition pairs SuccessCriteriaMet+Complete or
FailureTarget+Failed, worded as it words them); the intermediate steps of its pod accounting
(`uncountedTerminatedPods`, the `batch.kubernetes.io/job-tracking` finalizer) are not emulated.

restartPolicy Never: a failed pod is followed by a new one, up to `backoffLimit` failures (after
1, 2, 4, 8 s, where the real controller waits 10 s doubling to 6 min); OnFailure: the process
restarts in place (its pod's `restartCount` grows) and the Job fails once the restarts reach
`backoffLimit` (at the first one with a limit of 0). `activeDeadlineSeconds` stops the process and
deletes the pod (DeadlineExceeded). One pod at a time: `parallelism`, `completions` above 1,
Indexed completion, `suspend`, `podFailurePolicy`, `successPolicy` and `ttlSecondsAfterFinished`
are not acted on. Never writes a Job that is being deleted or has finished.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.kube.processes import ContainerProcess, StartError, plan_launch
from tests.kube.resources import Obj, ResourceType
from tests.kube.store import Store, now_iso
from tests.kube.ticking import Ticking
from tests.podspec import ConfigError, MountError

log = logging.getLogger(__name__)
RETRY = 1.0  # the first pod re-creation back-off (doubling, at most MAX_RETRY)
MAX_RETRY = 8.0
COMPLETE = ("CompletionsReached", "Reached expected number of succeeded pods")
BACKOFF_LIMIT = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE = ("DeadlineExceeded", "Job was active longer than specified deadline")


@dataclass
class Attempt:
    """One pod of the Job and its process."""

    pod: str
    process: ContainerProcess | None = None
    started_at: str = ""
    exits_seen: int = 0  # the process's exits accounted for
    waiting: tuple[str, str] = ("ContainerCreating", "")


@dataclass
class JobRun:
    """What the controller keeps about one Job between ticks."""

    uid: str
    began: float
    start_time: str
    succeeded: int = 0
    failed: int = 0
    attempt: Attempt | None = None
    retry_at: float = 0.0
    outcome: tuple[str, str, str] | None = None  # (condition type, reason, message) once over
    completion_time: str = ""
    pods: list[str] = field(default_factory=list)


def job_status(run: JobRun, now: str) -> Obj:
    """The Job's status as the real Job controller leaves it at each stage (pure)."""
    status: Obj = {"startTime": run.start_time, "terminating": 0, "uncountedTerminatedPods": {},
                   "ready": 0}  # fmt: skip
    counters = {"active": int(run.outcome is None and run.attempt is not None),
                "succeeded": run.succeeded, "failed": run.failed}  # fmt: skip
    status.update({name: value for name, value in counters.items() if value})  # omitempty
    if run.outcome is not None:
        kind, reason, message = run.outcome
        first = "SuccessCriteriaMet" if kind == "Complete" else "FailureTarget"
        status["conditions"] = [
            {"type": name, "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
             "reason": reason, "message": message} for name in (first, kind)
        ]  # fmt: skip
        if kind == "Complete":
            status["completionTime"] = run.completion_time
    return status


def pod_status(attempt: Attempt, restarts: int, exit_code: int | None, finished_at: str) -> Obj:
    """What the kubelet reports about a Job's pod: waiting, running, or terminated (pure)."""
    if exit_code is not None:
        state: Obj = {"terminated": {
            "exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": attempt.started_at, "finishedAt": finished_at}}  # fmt: skip
        if attempt.process is not None and attempt.process.last_message:
            state["terminated"]["message"] = attempt.process.last_message
        phase = "Succeeded" if exit_code == 0 else "Failed"
    elif attempt.process is not None and attempt.process.running:
        state, phase = {"running": {"startedAt": attempt.started_at}}, "Running"
    else:
        reason, message = attempt.waiting
        state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        phase = "Running" if restarts else "Pending"
    return {"phase": phase, "containerStatuses": [
        {"name": "", "ready": False, "restartCount": restarts, "state": state}]}  # fmt: skip


class JobController(Ticking):
    thread_name = "kube-jobs"

    def __init__(self, store: Store, log_dir: Path, *, tick: float = 0.1) -> None:
        super().__init__(store, log_dir, tick=tick)
        self._runs: dict[str, JobRun] = {}  # by the Job's uid
        self._jobs = store.find("batch/v1", "jobs")
        self._pods = store.find("v1", "pods")

    def log_path(self, namespace: str, pod: str) -> Path:
        """Where a Job pod's process writes its output."""
        return self.log_dir / f"{namespace}.{pod}.log"

    def _stop_all(self, now: float) -> None:
        for run in self._runs.values():
            self._stop_process(run)

    def _reconcile_all(self, now: float) -> None:
        jobs, _ = self.store.list_objects(self._jobs, None)
        alive = set()
        for job in jobs:
            alive.add(job["metadata"]["uid"])
            self._reconcile(job, now)
        for uid in set(self._runs) - alive:  # deleted: its pods go with it (garbage collection)
            self._stop_process(self._runs.pop(uid))

    def _reconcile(self, job: Obj, now: float) -> None:
        meta, spec = job["metadata"], job["spec"]
        run = self._runs.get(meta["uid"])
        if meta.get("deletionTimestamp") or _finished(job):
            if run is not None:
                self._stop_process(run)
            return
        if run is None:
            run = self._runs[meta["uid"]] = JobRun(meta["uid"], now, now_iso())
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and now - run.began >= float(deadline):
            if run.attempt is not None:
                run.failed += 1
                self._stop_process(run)
                self._delete_pod(meta["namespace"], run.attempt.pod)
                run.attempt = None
            run.outcome = ("Failed", *DEADLINE)
        elif run.attempt is None and now >= run.retry_at:
            run.attempt = self._new_attempt(job, run)
        if run.attempt is not None and run.outcome is None:
            self._drive(job, run, run.attempt, now)
        self._write_status(self._jobs, job, job_status(run, now_iso()))

    def _new_attempt(self, job: Obj, run: JobRun) -> Attempt:
        meta = job["metadata"]
        template = job["spec"]["template"]
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"],
                 "controller": True, "blockOwnerDeletion": True}  # fmt: skip
        pod = self.store.create(self._pods, meta["namespace"], {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": f"{meta['name']}-",
                         "labels": (template.get("metadata") or {}).get("labels") or {},
                         "annotations": (template.get("metadata") or {}).get("annotations") or {},
                         "ownerReferences": [owner]},
            "spec": template["spec"],
        })  # fmt: skip
        run.pods.append(pod["metadata"]["name"])
        return Attempt(pod["metadata"]["name"])

    def _drive(self, job: Obj, run: JobRun, attempt: Attempt, now: float) -> None:
        namespace = job["metadata"]["namespace"]
        template = job["spec"]["template"]
        on_failure = template["spec"].get("restartPolicy") == "OnFailure"
        if attempt.process is None:
            try:
                launch = plan_launch(template, namespace, attempt.pod, self._lookup, {},
                                     self.log_dir / f"{namespace}.{attempt.pod}")  # fmt: skip
            except (MountError, ConfigError, StartError) as exc:  # the kubelet keeps trying
                reason = {MountError: "ContainerCreating", ConfigError: "CreateContainerConfigError",
                          StartError: "RunContainerError"}[type(exc)]  # fmt: skip
                attempt.waiting = (reason, "" if isinstance(exc, MountError) else str(exc))
                self._pod_status(namespace, attempt, 0, None)
                return
            restarts = 1_000_000 if on_failure else 0
            attempt.process = ContainerProcess(launch, self.log_path(namespace, attempt.pod),
                                               max_restarts=restarts)  # fmt: skip
        process = attempt.process
        was_running = process.running
        process.tick(now)
        if process.running and not was_running:
            attempt.started_at = now_iso()
        if process.restarts == attempt.exits_seen:
            self._pod_status(namespace, attempt, process.restarts, None)
            return
        attempt.exits_seen = process.restarts  # it exited
        code = process.last_exit_code
        limit = int(job["spec"].get("backoffLimit", 6))
        if code == 0:
            run.succeeded, run.outcome, run.completion_time = 1, ("Complete", *COMPLETE), now_iso()
        elif on_failure and process.restarts < max(limit, 1):
            self._pod_status(namespace, attempt, process.restarts, None)  # restarts in place
            return
        else:
            run.failed += 1
            if run.failed > limit or on_failure:
                run.outcome = ("Failed", *BACKOFF_LIMIT)
            else:
                run.retry_at = now + min(MAX_RETRY, RETRY * 2 ** (run.failed - 1))
        restarts = process.restarts - 1 if on_failure else 0  # the exits before this one
        process.detach()
        self._pod_status(namespace, attempt, restarts, code)
        run.attempt = None

    def _pod_status(
        self, namespace: str, attempt: Attempt, restarts: int, code: int | None
    ) -> None:
        pod = self.store.get(self._pods, namespace, attempt.pod)
        if pod is None:
            return
        status = pod_status(attempt, restarts, code, now_iso())
        status["containerStatuses"][0]["name"] = pod["spec"]["containers"][0]["name"]
        status["containerStatuses"][0]["image"] = pod["spec"]["containers"][0].get("image", "")
        self._write_status(self._pods, pod, {**pod.get("status", {}), **status})

    def _write_status(self, rt: ResourceType, obj: Obj, status: Obj) -> None:
        if _same(obj.get("status") or {}, status):
            return
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        try:
            self.store.update(rt, namespace, name, lambda o: {**o, "status": status},
                              subresource="status")  # fmt: skip
        except Exception as exc:  # deleted meanwhile
            log.debug("status of %s/%s not written: %s", namespace, name, exc)

    def _delete_pod(self, namespace: str, name: str) -> None:
        try:
            self.store.delete(self._pods, namespace, name)
        except Exception as exc:
            log.debug("pod %s/%s not deleted: %s", namespace, name, exc)

    def _lookup(self, plural: str, namespace: str, name: str) -> Obj | None:
        return self.store.get(self.store.find("v1", plural), namespace, name)

    def _stop_process(self, run: JobRun) -> None:
        if run.attempt is not None and run.attempt.process is not None:
            self._reaper.terminate(run.attempt.process.detach(), time.monotonic())
            run.attempt.process = None


def _finished(job: Obj) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])  # fmt: skip


def _same(current: Obj, new: Obj) -> bool:
    """Equal but for condition probe/transition times (rewritten each pass otherwise)."""

    def strip(status: Obj) -> Obj:
        conditions = [{k: v for k, v in c.items() if not k.startswith("last")}
                      for c in status.get("conditions") or []]  # fmt: skip
        return {**status, "conditions": conditions}

    return strip(current) == strip(new)
