"""A stand-in for the deployment controller and the kubelet, so Deployments come alive without nodes.

It watches Deployments in the Store (in-process, no HTTP), creates and deletes their Pods and writes
the status fields operators read: the Deployment's replica counters, `observedGeneration` and its
Available/Progressing conditions; the Pods' phase, Ready condition and container statuses. How pods
behave is chosen per Deployment by the test (`behave`), before or after the Deployment exists:

- `available` (default): ready at once;  `slow(delay)`: ready after `delay` seconds;
- `crashloop`: waiting `CrashLoopBackOff`, `restartCount` growing every `restart_interval` seconds;
- `image_pull`: Pending, waiting `ErrImagePull` / `ImagePullBackOff` alternately;
- `unready_after(delay)`: ready, then unready after `delay`;  `never_ready`: Running, never Ready;
- `process`: the first container really runs on this machine (see `tests.kube.processes`).

Simplifications, on purpose: there are no ReplicaSets (pods are owned by the Deployment directly, but
carry the `pod-template-hash` label); a template change replaces all pods at once (a Recreate-like
rollout); `process` runs one process per Deployment whatever the replica count. `observedGeneration`
follows `metadata.generation` once the pods of the new template exist. Zero counters are omitted
from the status, as the real API does (`omitempty`): read them with `.get(..., 0)`.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.kube.processes import ContainerProcess, StartError, plan_launch
from tests.kube.resources import Obj, ResourceType
from tests.kube.selectors import selects
from tests.kube.store import Store, now_iso
from tests.kube.ticking import Ticking
from tests.kube.workloads import (
    MODES,
    Behaviour,
    PodClock,
    Rollout,
    deployment_status,
    pod_status,
    template_hash,
)
from tests.podspec import ConfigError, MountError

log = logging.getLogger(__name__)


class DeploymentController(Ticking):
    def __init__(self, store: Store, log_dir: Path, *, tick: float = 0.1) -> None:
        super().__init__(store, log_dir, tick=tick)
        self._default = Behaviour()
        self._behaviours: dict[tuple[str, str], Behaviour] = {}
        self._rollouts: dict[tuple[str, str], Rollout] = {}
        self._pods = store.find("v1", "pods")
        self._deployments = store.find("apps/v1", "deployments")

    # --- the test's side ----------------------------------------------------------------------------

    def behave(self, namespace: str, name: str, mode: str, **opts: Any) -> None:
        """How the pods of Deployment `namespace/name` behave from now on (see the module doc)."""
        self._behaviours[(namespace, name)] = self._behaviour_of(mode, opts)
        self._wake.set()

    def behave_default(self, mode: str, **opts: Any) -> None:
        """The behaviour of every Deployment that has none of its own."""
        self._default = self._behaviour_of(mode, opts)
        self._wake.set()

    @staticmethod
    def _behaviour_of(mode: str, opts: Mapping[str, Any]) -> Behaviour:
        if mode not in MODES:
            raise ValueError(f"unknown behaviour {mode!r}; one of {MODES}")
        return Behaviour(mode, **opts)

    def log_path(self, namespace: str, name: str) -> Path:
        """Where the `process` behaviour writes the container's output (appended across restarts)."""
        return self.log_dir / f"{namespace}.{name}.log"

    def endpoint(self, namespace: str, name: str) -> str | None:
        """`http://127.0.0.1:PORT` of the Deployment's running process (its first declared port)."""
        rollout = self._rollouts.get((namespace, name))
        process = rollout.process if rollout else None
        if process is None or not process.running or not process.launch.ports:
            return None
        return f"http://127.0.0.1:{next(iter(process.launch.ports.values()))}"

    def proxy_port(self, plural: str, namespace: str, name: str, port: str) -> int | None:
        """The local port a proxy request goes to (None if there is none): for `services`, a
        ready `process` pod the Service selects, its container port resolved from the Service
        port's `targetPort`; for `pods`, that pod's own container port (its process running,
        ready or not, as the API server proxies to any pod with an IP)."""
        if plural == "pods":
            pod = self.store.get(self._pods, namespace, name)
            return None if pod is None else self._local_port(pod, port or "80", ready=False)
        svc = self.store.get(self.store.find("v1", "services"), namespace, name)
        if svc is None:
            return None
        ports = svc["spec"].get("ports", [])
        chosen = next((p for p in ports if port in ("", p.get("name"), str(p.get("port")))), None)
        if chosen is None:
            return None
        target = chosen.get("targetPort", chosen.get("port"))
        selector = svc["spec"].get("selector")
        pods, _ = self.store.list_objects(
            self._pods, namespace, lambda pod: selects(selector, pod["metadata"].get("labels"))
        )
        for pod in pods:
            conditions = pod.get("status", {}).get("conditions", [])
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                local = self._local_port(pod, target, ready=True)
                if local is not None:
                    return local
        return None

    def _local_port(self, pod: Obj, port: int | str, ready: bool) -> int | None:
        """The local port of a `process` pod's container port (by number or name)."""
        by_uid = {t.uid: t for t in list(self._rollouts.values())}
        for ref in pod["metadata"].get("ownerReferences", []):
            rollout = by_uid.get(ref.get("uid", ""))
            process = rollout.process if rollout else None
            if process is not None and process.running and (process.ready or not ready):
                local = process.launch.local_port(port)
                if local is not None:
                    return local
        return None

    # --- lifecycle ----------------------------------------------------------------------------------

    def _stop_all(self, now: float) -> None:
        for rollout in self._rollouts.values():
            self._stop_process(rollout, now)

    # --- reconciliation -----------------------------------------------------------------------------

    def _reconcile_all(self, now: float) -> None:
        deployments, _ = self.store.list_objects(self._deployments, None, shared=True)
        pods, _ = self.store.list_objects(self._pods, None, shared=True)
        owned: dict[str, list[Obj]] = {}  # pods by owner uid: one pass, not one per Deployment
        for pod in pods:
            for ref in pod["metadata"].get("ownerReferences", []):
                owned.setdefault(ref.get("uid", ""), []).append(pod)
        seen = set()
        for dep in deployments:
            key = (dep["metadata"]["namespace"], dep["metadata"]["name"])
            seen.add(key)
            self._reconcile(key, dep, now, owned.get(dep["metadata"]["uid"], []))
        for key in set(self._rollouts) - seen:
            self._stop_process(self._rollouts.pop(key), now)

    def _reconcile(self, key: tuple[str, str], dep: Obj, now: float, owned: list[Obj]) -> None:
        meta, spec = dep["metadata"], dep["spec"]
        rollout = self._rollouts.get(key)
        if rollout is None or rollout.uid != meta["uid"]:
            if rollout is not None:
                self._stop_process(rollout, now)
            rollout = self._rollouts[key] = Rollout(uid=meta["uid"], progress_at=now)
        if meta.get("deletionTimestamp") or spec.get("paused"):
            # Being deleted (syncStatusOnly) or paused (no new ReplicaSet): the pods are left as
            # they are, only the status follows the generation.
            if meta.get("deletionTimestamp"):
                self._stop_process(rollout, now)
            status = {**(dep.get("status") or {}), "observedGeneration": meta.get("generation")}
            self._write_status(self._deployments, dep, status)
            return
        replicas = int(spec.get("replicas", 1))
        behaviour = self._behaviours.get(key, self._default)
        current_hash = template_hash(spec["template"])
        if current_hash != rollout.template_hash:  # a rollout: the old pods and process go at once
            self._stop_process(rollout, now)
            rollout.template_hash, rollout.progress_at = current_hash, now
            rollout.complete_replicas, rollout.available = None, 0
        pods = self._sync_pods(dep, owned, current_hash, replicas)
        if behaviour.mode == "process" and replicas > 0:
            self._run_process(rollout, dep, pods[0], behaviour, now)
        else:
            self._stop_process(rollout, now)
        ready = available = 0
        min_ready = float(spec.get("minReadySeconds", 0))
        for pod in pods:
            pod_name = pod["metadata"]["name"]
            clock = rollout.pods.setdefault(pod_name, PodClock(now, now_iso()))
            status, is_ready = pod_status(pod, clock, behaviour, rollout, now)
            if is_ready != clock.ready or not clock.changed_iso:
                clock.ready, clock.ready_since, clock.changed_iso = is_ready, now, now_iso()
                status = pod_status(pod, clock, behaviour, rollout, now)[0]
            self._write_status(self._pods, pod, status)
            ready += is_ready
            available += is_ready and now - clock.ready_since >= min_ready
        names = {pod["metadata"]["name"] for pod in pods}
        rollout.pods = {n: c for n, c in rollout.pods.items() if n in names}
        status = deployment_status(dep, rollout, len(pods), ready, available, now)
        self._write_status(self._deployments, dep, status)

    def _write_status(self, rt: ResourceType, obj: Obj, status: Obj) -> None:
        """Write `obj`'s status unless it already is `status`: every pass looks at every object,
        and a write of the same status would copy the object, wake every watcher, and the
        controller itself, for nothing."""
        if obj.get("status") == status:
            return
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        try:
            self.store.update(rt, namespace, name, lambda obj: {**obj, "status": status},
                              subresource="status")  # fmt: skip
        except Exception as exc:  # deleted meanwhile: the next tick sees it gone
            log.debug("status of %s/%s not written: %s", namespace, name, exc)

    def _sync_pods(self, dep: Obj, owned: list[Obj], current_hash: str, replicas: int) -> list[Obj]:
        """The Deployment's current pods, `replicas` of them; `owned` are the pods it owns."""
        meta = dep["metadata"]
        current: list[Obj] = []
        for pod in owned:
            if pod["metadata"].get("deletionTimestamp"):
                continue
            is_current = pod["metadata"].get("labels", {}).get("pod-template-hash") == current_hash
            if is_current and len(current) < replicas:
                current.append(pod)
            else:
                self.store.delete(self._pods, meta["namespace"], pod["metadata"]["name"])
        while len(current) < replicas:
            current.append(
                self.store.create(self._pods, meta["namespace"], self._pod(dep, current_hash))
            )
        return current

    @staticmethod
    def _pod(dep: Obj, current_hash: str) -> Obj:
        meta, template = dep["metadata"], copy.deepcopy(dep["spec"]["template"])
        template_meta = template.get("metadata") or {}
        owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"],
                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}  # fmt: skip
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{meta['name']}-{current_hash}-",
                "labels": {**template_meta.get("labels", {}), "pod-template-hash": current_hash},
                "annotations": template_meta.get("annotations", {}),
                "ownerReferences": [owner],
            },
            "spec": template["spec"],
        }

    def _run_process(
        self, rollout: Rollout, dep: Obj, pod: Obj, behaviour: Behaviour, now: float
    ) -> None:
        namespace, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        pod_name = pod["metadata"]["name"]
        if rollout.process is None:
            try:
                launch = plan_launch(dep["spec"]["template"], namespace, pod_name, self._lookup,
                                     behaviour.env, self.log_dir / f"{namespace}.{pod_name}")  # fmt: skip
            except MountError as exc:  # the kubelet keeps retrying, the container ContainerCreating
                rollout.launch_error = ("ContainerCreating", "")
                self._warn(pod, "FailedMount", str(exc), rollout)
                return
            except ConfigError as exc:
                rollout.launch_error = ("CreateContainerConfigError", str(exc))
                return
            except StartError as exc:
                rollout.launch_error = ("RunContainerError", str(exc))
                return
            rollout.launch_error = None
            rollout.process = ContainerProcess(
                launch, self.log_path(namespace, name), max_restarts=behaviour.max_restarts
            )
        rollout.process.tick(now)

    def _warn(self, pod: Obj, reason: str, message: str, rollout: Rollout) -> None:
        """A kubelet Warning event about the pod (once per message: the kubelet repeats it)."""
        if rollout.warned == (reason, message):
            return
        rollout.warned = (reason, message)
        meta, stamp = pod["metadata"], now_iso()
        self.store.create(self.store.find("v1", "events"), meta["namespace"], {
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": meta["namespace"],
                               "name": meta["name"], "uid": meta["uid"]},
            "reason": reason, "message": message, "type": "Warning", "count": 1,
            "source": {"component": "kubelet", "host": "kube-emulator"},
            "firstTimestamp": stamp, "lastTimestamp": stamp,
        })  # fmt: skip

    def _lookup(self, plural: str, namespace: str, name: str) -> Obj | None:
        return self.store.get(self.store.find("v1", plural), namespace, name)

    def _stop_process(self, rollout: Rollout, now: float) -> None:
        if rollout.process is not None:
            self._reaper.terminate(rollout.process.detach(), now)
            rollout.process = None
        rollout.launch_error = rollout.warned = None
