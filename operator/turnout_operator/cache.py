"""What the operator reads of its objects: kopf's indexes, with its own writes on top.

kopf watches the ModelDeployments and the Deployments, Services, Pods, HorizontalPodAutoscalers and
PodDisruptionBudgets the operator makes, and keeps each kind in an index (handlers.py) that kopf
fills from its first listing before any daemon starts. A reconcile reads them here instead of
asking the API server for each object: the requests left are the writes.

A watch runs a little behind the API server: an object the operator has just written can still
show its previous version in the index. So the answer to each write is kept here until the index
catches up, and a read returns whichever of the two is newer by `resourceVersion`. Those compare
as integers within one resource type (Kubernetes 1.35 made that part of conformance, KEP-5504:
informers use it for the same purpose); a version that does not parse leaves the index to say.
A deletion is kept the same way: the object reads as gone until the index shows a newer version
of it (being deleted, or made again) or no object at all. An object missing from the index is
gone, whatever was written, when it is a ModelDeployment (the operator never creates one: the
index had it when it was read) or when the write is older than `UNSEEN_SECONDS` (a watch that
has not shown a creation by then never will: the object was deleted meanwhile).

The indexes hold only what the operator reads of each object (`slim`): a Deployment's template,
for one, is rebuilt from the spec at every write and never read back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

Kind = Literal[
    "modeldeployments", "deployments", "services", "pods", "horizontalpodautoscalers",
    "poddisruptionbudgets",
]  # fmt: skip
KINDS: tuple[Kind, ...] = get_args(Kind)
Body = dict[str, Any]
UNSEEN_SECONDS = 30.0
COPY_ATTEMPTS = 100  # copies of one key's values tried while kopf changes them on its loop


def slim_deployment(body: Mapping[str, Any]) -> Body:
    """What the operator reads of a Deployment: its identity, replicas, version label, rollout
    status and annotations (the template hash, and what others set, kept on a replace)."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    template = (spec.get("template") or {}).get("metadata") or {}
    return {
        "metadata": _meta(meta, "generation"),
        "spec": {"replicas": spec.get("replicas", 1),
                 "template": {"metadata": {"labels": dict(template.get("labels") or {})}}},
        "status": dict(body.get("status") or {}),
    }  # fmt: skip


def slim_pod(body: Mapping[str, Any]) -> Body:
    """A pod's identity, address, readiness and why its containers wait or last ended."""
    status = body.get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    containers = [
        {"state": c.get("state") or {}, "lastState": c.get("lastState") or {}}
        for c in status.get("containerStatuses") or []
    ]
    return {
        "metadata": _meta(body.get("metadata") or {}),
        "status": {"podIP": status.get("podIP"), "conditions": ready,
                   "containerStatuses": containers},
    }  # fmt: skip


def whole(body: Mapping[str, Any]) -> Body:
    """Small objects are kept as they are (Services, autoscalers, budgets, ModelDeployments)."""
    return dict(body)


def _meta(meta: Mapping[str, Any], *extra: str) -> Body:
    keys = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations", *extra)
    return {key: meta[key] for key in keys if key in meta}


SLIM: dict[Kind, Callable[[Mapping[str, Any]], Body]] = {
    "modeldeployments": whole, "deployments": slim_deployment, "services": whole,
    "pods": slim_pod, "horizontalpodautoscalers": whole, "poddisruptionbudgets": whole,
}  # fmt: skip


def version_of(body: Mapping[str, Any] | None) -> int | None:
    if body is None:
        return None
    try:
        return int(str((body.get("metadata") or {}).get("resourceVersion")))
    except ValueError:
        return None


@dataclass(frozen=True)
class Written:
    """The operator's last write of one object: its answer (None: deleted) and version."""

    body: Body | None
    version: int
    at: float  # when it was written (the cache's clock)


class Cache:
    """kopf's indexes of the operator's kinds, keyed by (namespace, name) (pods: by the
    ModelDeployment's name), read from the reconcile threads, with the writes not yet seen.

    kopf updates an index on its event loop, one value at a time: a reader in another thread sees
    whole values, but a copy of one key's values can meet a value being added or dropped (the
    GIL can pass to the loop mid-copy, on a garbage collection): it is copied again."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._indexes: dict[Kind, Mapping[Any, Iterable[Body]]] = {}
        self._written: dict[tuple[Kind, str, str], Written] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def attach(self, indexes: Mapping[Kind, Mapping[Any, Iterable[Body]]]) -> None:
        """Read from these indexes from now on (kopf hands them to the startup handler)."""
        self._indexes = dict(indexes)

    @property
    def attached(self) -> bool:
        return bool(self._indexes)

    def get(self, kind: Kind, namespace: str, name: str) -> Body | None:
        """The newest of what the index holds and what the operator last wrote; None: none."""
        found = self._values(kind, (namespace, name))
        watched = found[0] if found else None
        key = (kind, namespace, name)
        with self._lock:
            written = self._written.get(key)
            if written is None:
                return watched
            seen = version_of(watched)
            if watched is None and (
                written.body is None
                or kind == "modeldeployments"
                or self._clock() - written.at > UNSEEN_SECONDS
            ):
                del self._written[key]  # gone, and the index agrees
                return None
            if (
                seen is not None
                and seen >= written.version
                and (written.body is not None or seen > written.version)
            ):
                del self._written[key]  # the index has caught up
                return watched
            return written.body

    def pods(self, namespace: str, owner: str) -> list[Body]:
        """The pods of one ModelDeployment (any color), as last watched."""
        return self._values("pods", (namespace, owner))

    def wrote(self, kind: Kind, body: Mapping[str, Any]) -> None:
        """Remember the API server's answer to a write of `body` until the index shows it
        (nothing to remember while no index is attached: reads go to the API server)."""
        version = version_of(body)
        meta = body.get("metadata") or {}
        if version is None or not self.attached:
            return
        with self._lock:
            written = Written(SLIM[kind](body), version, self._clock())
            self._written[(kind, meta["namespace"], meta["name"])] = written

    def deleted(self, kind: Kind, namespace: str, name: str) -> None:
        """The object reads as gone from now on (until the index shows a newer version)."""
        if not self.attached:
            return
        version = version_of(self.get(kind, namespace, name))
        if version is None:
            return
        with self._lock:
            self._written[(kind, namespace, name)] = Written(None, version, self._clock())

    def _values(self, kind: Kind, key: tuple[str, str]) -> list[Body]:
        index = self._indexes.get(kind)
        if index is None:
            raise LookupError(f"the operator's index of {kind} is not attached")
        store = index.get(key)
        if store is None:
            return []
        for _ in range(COPY_ATTEMPTS):
            try:
                return list(store)
            except RuntimeError:  # kopf added or dropped a value meanwhile: copy again
                continue
        return list(store)
