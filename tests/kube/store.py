"""The emulated API server's storage: objects, resource versions, the watch history and deletion.

This is where API *semantics* live, independent of HTTP: `resourceVersion` is one global counter;
`metadata.generation` moves only when something outside metadata (and outside status, where status is
a subresource) changes; writes that change nothing are no-ops, as in a real API server (a watcher sees
no event, so an operator that patches what it already wrote does not loop); deletion of an object with
finalizers only stamps `deletionTimestamp`; removal cascades to dependents through ownerReferences
(background propagation), or orphans them. Every method is thread-safe (one re-entrant lock), so the
HTTP handler, the deployment controller and the test itself can all write concurrently.

Stored dicts are never mutated in place: every write stores a fresh dict, so the watch history can
keep references to old states and hand them out read-only.
"""

from __future__ import annotations

import copy
import datetime
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from kmock import KubernetesError

from tests.kube.customresources import decode_custom_resource
from tests.kube.fielderrors import forbidden, invalid_status
from tests.kube.garbage import GarbageCollector, Key
from tests.kube.names import generated_name
from tests.kube.resources import (
    BUILTINS,
    CRD_GROUP,
    Obj,
    ResourceType,
    crd_status,
    crd_types,
    default_and_validate,
    random_suffix,
    to_storage,
    view,
)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _details(rt: ResourceType, name: str) -> Obj:
    """The `details` of a Status about one object; the core group is left out, as the API does."""
    return {"name": name, **({"group": rt.group} if rt.group else {}), "kind": rt.plural}


def not_found(rt: ResourceType, name: str) -> KubernetesError:
    return KubernetesError(
        status=404, reason="NotFound", message=f'{rt.group_resource} "{name}" not found',
        details=_details(rt, name),
    )  # fmt: skip


def conflict(rt: ResourceType, name: str) -> KubernetesError:
    return KubernetesError(
        status=409, reason="Conflict",
        message=f'Operation cannot be fulfilled on {rt.group_resource} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again",
        details=_details(rt, name),
    )  # fmt: skip


def name_mismatch(rt: ResourceType, name: str, named: object) -> KubernetesError:
    return KubernetesError(
        status=400, reason="BadRequest", details={"name": name, "kind": rt.plural},
        message=f"the name of the object ({named}) does not match the name on the URL ({name})",
    )  # fmt: skip


def precondition_failed(
    rt: ResourceType, name: str, what: str, given: str, actual: str, might: str
) -> KubernetesError:
    """A delete's precondition that does not hold (`Preconditions.Check`): 409 Conflict naming
    the kind (`Event` for both Event APIs)."""
    kind = f"{rt.kind}.{rt.storage[0]}" if rt.storage[0] else rt.kind
    return KubernetesError(
        status=409, reason="Conflict", details=_details(rt, name),
        message=f'Operation cannot be fulfilled on {kind} "{name}": the {what} in the precondition '
        f"({given}) does not match the {what} in record ({actual}). The object might have been "
        f"{might}",
    )  # fmt: skip


# The garbage collector's finalizers, and the kinds it does not handle (rest.Unsupported).
GC_FINALIZERS = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}
NO_GARBAGE_COLLECTION = {("", "events")}


def gc_finalizers(rt: ResourceType, finalizers: list[str], propagation: str | None) -> list[str]:
    """deletionFinalizersForGarbageCollection: the object's finalizers with `orphan` or
    `foregroundDeletion` as the propagation policy asks (an explicit one wins, then the one
    already set; the default, Background, sets neither)."""
    if rt.storage in NO_GARBAGE_COLLECTION:
        return finalizers
    kept = [f for f in finalizers if f not in GC_FINALIZERS.values()]
    if propagation in ("Orphan", "Foreground"):
        return [*kept, GC_FINALIZERS[propagation]]
    if propagation is None:
        chosen = next((f for f in finalizers if f in GC_FINALIZERS.values()), None)
        return [*kept, chosen] if chosen else kept
    return kept


@dataclass(frozen=True)
class Change:
    """One entry of the watch history: what a watcher of `group/plural` would be told."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    group: str
    plural: str
    obj: Obj
    old: Obj | None


class Gone(Exception):
    """The requested resourceVersion is older than the kept history (watchers answer 410)."""


class Store(GarbageCollector):
    def __init__(self, *, history: int = 20_000) -> None:
        self.lock = threading.RLock()
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._objects: dict[Key, Obj] = {}
        self._decoded_under: dict[
            int, Obj
        ] = {}  # id(stored object) -> the schema it was decoded by
        self._uids: dict[str, Key] = {}
        self._history: deque[Change] = deque(maxlen=history)
        self._rv = 0
        self._listeners: list[Callable[[], None]] = []
        self.types_changed: list[Callable[[], None]] = []
        for rt in BUILTINS:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    # --- resource types -----------------------------------------------------------------------------

    def types(self) -> list[ResourceType]:
        with self.lock:
            return list(self._types.values())

    def resolve(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self.lock:
            return self._types.get((group, version, plural))

    def find(self, api_version: str, kind_or_plural: str) -> ResourceType:
        group, _, version = api_version.rpartition("/")
        with self.lock:
            for rt in self._types.values():
                if (rt.group, rt.version) == (group, version) and kind_or_plural in (
                    rt.kind, rt.plural, rt.singular
                ):  # fmt: skip
                    return rt
        raise KeyError(
            f"the server doesn't have a resource type {kind_or_plural!r} in {api_version}"
        )

    def _sync_crd_types(self) -> None:
        served = {(rt.group, rt.version, rt.plural): rt for rt in BUILTINS}
        for key, crd in self._objects.items():
            if key[:2] == (CRD_GROUP, "customresourcedefinitions"):
                served.update({(rt.group, rt.version, rt.plural): rt for rt in crd_types(crd)})
        if served != self._types:
            self._types = served
            for callback in self.types_changed:
                callback()

    # --- notifications and history ------------------------------------------------------------------

    def notify(self) -> None:
        """Wake every listener, as a write would."""
        with self.lock:
            for listener in list(self._listeners):
                listener()

    def subscribe(self, listener: Callable[[], None]) -> None:
        with self.lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        with self.lock:
            self._listeners.remove(listener)

    @property
    def resource_version(self) -> int:
        with self.lock:
            return self._rv

    def changes_since(self, rv: int) -> list[Change]:
        with self.lock:
            if self._history and rv < self._history[0].rv - 1:
                raise Gone(rv)
            return [change for change in self._history if change.rv > rv]

    def _record(self, kind: str, key: Key, obj: Obj, old: Obj | None) -> None:
        self._history.append(Change(self._rv, kind, key[0], key[1], obj, old))
        self.notify()

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # --- reads --------------------------------------------------------------------------------------

    @staticmethod
    def key(rt: ResourceType, namespace: str | None, name: str) -> Key:
        return (*rt.storage, namespace or "" if rt.namespaced else "", name)

    def _view(self, rt: ResourceType, obj: Obj, *, shared: bool = False) -> Obj:
        """A private copy, shown under the version it was asked for (versions share storage).
        `shared`: the stored object itself where no decoding is due (a shallow copy of its top
        level), for a reader that never changes it; stored objects are replaced on each write,
        never changed in place, so what it holds stays as it was read."""
        if shared and rt.schema is None:
            return view(rt, obj)
        result = copy.deepcopy(view(rt, obj))
        if rt.schema is not None and self._decoded_under.get(id(obj)) is not rt.schema:
            decode_custom_resource(
                rt.schema, result
            )  # the storage codec decodes (and defaults) too
        return result

    def _put(self, rt: ResourceType, key: Key, obj: Obj) -> None:
        """Store `obj` (decoded under `rt`'s schema: reads under the same schema need not decode)."""
        old = self._objects.get(key)
        if old is not None:
            self._decoded_under.pop(id(old), None)
        self._objects[key] = obj
        if rt.schema is not None:
            self._decoded_under[id(obj)] = rt.schema

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        with self.lock:
            obj = self._objects.get(self.key(rt, namespace, name))
            return None if obj is None else self._view(rt, obj)

    def list_objects(
        self,
        rt: ResourceType,
        namespace: str | None,
        match: Callable[[Obj], bool] = bool,
        *,
        shared: bool = False,
    ) -> tuple[list[Obj], int]:
        """Objects of one kind (all namespaces if `namespace` is None) and the list's version.
        `shared`: not copied (see `_view`), for the controller stand-ins, which read every
        Deployment and Pod on each pass and only write through `update`."""
        with self.lock:
            # Filter before sorting and copying: the store also holds every Event and Pod.
            kind = [
                (key, obj) for key, obj in self._objects.items()
                if key[:2] == rt.storage and namespace in (None, key[2])
            ]  # fmt: skip
            items = [self._view(rt, obj, shared=shared)
                     for _, obj in sorted(kind, key=lambda kv: kv[0]) if match(obj)]  # fmt: skip
            return items, self._rv

    # --- writes -------------------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str | None, body: Obj) -> Obj:
        obj = to_storage(rt, copy.deepcopy(body))
        meta = obj.setdefault("metadata", {})
        with self.lock:
            if rt.namespaced:
                namespace = namespace or meta.get("namespace") or "default"
                self._check_namespace(namespace)
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = generated_name(meta["generateName"], random_suffix())
            if not rt.stored_as:  # stored as the storage's own API shows it
                obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
            for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                meta.pop(field, None)
            if rt.has_generation:
                meta["generation"] = 1
            if rt.status_subresource:
                obj.pop("status", None)
            meta["uid"] = str(uuid.uuid4())  # before the strategy: a Job's selector names it
            default_and_validate(rt, obj)  # before the name is looked up, as BeforeCreate
            key = self.key(rt, namespace, meta["name"])
            if key in self._objects:
                deleting = self._objects[key]["metadata"].get("deletionTimestamp")
                raise KubernetesError(
                    status=409, reason="AlreadyExists",
                    message=("object is being deleted: " if deleting else "")
                    + f'{rt.group_resource} "{meta["name"]}" already exists',
                    details=_details(rt, meta["name"]),
                )  # fmt: skip
            meta["creationTimestamp"] = now_iso()
            if (rt.group, rt.plural) == (CRD_GROUP, "customresourcedefinitions"):
                obj["status"] = crd_status(obj, meta["creationTimestamp"])
            meta["resourceVersion"] = self._next_rv()
            self._put(rt, key, obj)
            self._uids[meta["uid"]] = key
            self._record("ADDED", key, obj, None)
            if rt.group == CRD_GROUP:
                self._sync_crd_types()
            if self.may_collect(obj):  # a scan of every object per create: quadratic in a burst
                self.collect_garbage()
            return self._view(rt, obj)

    def _check_namespace(self, namespace: str) -> None:
        ns = self._objects.get(("", "namespaces", "", namespace))
        if ns is None:
            raise KubernetesError(
                status=404, reason="NotFound", message=f'namespaces "{namespace}" not found',
                details={"name": namespace, "kind": "namespaces"},
            )  # fmt: skip
        if ns["metadata"].get("deletionTimestamp"):
            raise KubernetesError(
                status=403, reason="Forbidden", details={"name": namespace, "kind": "namespaces"},
                message=f"unable to create new content in namespace {namespace} because it is "
                "being terminated",
            )  # fmt: skip

    def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        change: Callable[[Obj], Obj],
        *,
        subresource: str | None = None,
    ) -> Obj:
        """Read-modify-write under the lock: `change` gets the current object (a copy) and returns
        the wanted one. A PUT, any PATCH and the controllers all come through here."""
        with self.lock:
            key = self.key(rt, namespace, name)
            current = self._objects.get(key)
            if current is None:
                raise not_found(rt, name)
            wanted = change(self._view(rt, current))
            if not isinstance(wanted, dict):
                raise KubernetesError(status=400, reason="BadRequest", details={},
                                      message="the patched object is not a JSON object")  # fmt: skip
            wanted_meta = wanted.get("metadata") or {}
            if wanted_meta.get("name", name) != name:  # the handler's check, before storage's
                raise name_mismatch(rt, name, wanted_meta.get("name"))
            rv = wanted_meta.get("resourceVersion")
            if rv not in (None, "", current["metadata"]["resourceVersion"]):
                raise conflict(rt, name)
            return self._write(rt, key, current, wanted, subresource)

    def _write(
        self, rt: ResourceType, key: Key, current: Obj, wanted: Obj, subresource: str | None
    ) -> Obj:
        if subresource == "status":  # status_strategy.go PrepareForUpdate: only status changes
            wanted = copy.deepcopy(wanted)
            decode_custom_resource(rt.schema, wanted)
            new = copy.deepcopy(current)
            if "status" in wanted:
                new["status"] = wanted["status"]
            else:
                new.pop("status", None)
            default_and_validate(rt, new, current, status_only=True)
        elif subresource is None:
            new = to_storage(rt, copy.deepcopy(wanted))
            old_meta, meta = current["metadata"], new.setdefault("metadata", {})
            for field in ("uid", "creationTimestamp", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "generation", "name", "namespace"):  # fmt: skip
                if field in old_meta:
                    meta[field] = old_meta[field]
                else:
                    meta.pop(field, None)
            if rt.status_subresource:
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers", [])) - set(old_meta.get("finalizers", []))
                if added:
                    listed = ", ".join(f'"{f}"' for f in sorted(added))
                    raise invalid_status(rt.kind, rt.group, key[3], [forbidden(
                        "metadata.finalizers", "no new finalizers can be added if the object is "
                        f"being deleted, found new finalizers []string{{{listed}}}")])  # fmt: skip
            default_and_validate(rt, new, current)
        else:
            raise KubernetesError(status=404, reason="NotFound", details={"kind": rt.plural},
                                  message=f"{rt.plural}/{subresource} is not served")  # fmt: skip
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if rt.has_generation and _spec_of(rt, new) != _spec_of(rt, current):
            new["metadata"]["generation"] = current["metadata"].get("generation", 0) + 1
        if new == current:
            return self._view(rt, current)  # a no-op write: no new version, no watch event
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            # The last finalizer of an object being deleted: the update is not stored, the
            # object goes (the registry's shouldDeleteDuringUpdate); the answer is the object as
            # the update left it, at the version it had.
            self._remove(key)
            return self._view(rt, new)
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._put(rt, key, new)
        self._record("MODIFIED", key, new, current)
        if rt.group == CRD_GROUP:
            self._sync_crd_types()
        if new["metadata"].get("deletionTimestamp"):
            self.collect_garbage()  # `orphan` / `foregroundDeletion` finalizers may now proceed
        return self._view(rt, new)

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        precondition_rv: str | None = None,
        precondition_uid: str | None = None,
    ) -> Obj:
        """Delete (or start deleting) an object; its last state as the API shows it."""
        obj, _ = self.delete_object(
            rt, namespace, name, propagation=propagation, precondition_rv=precondition_rv,
            precondition_uid=precondition_uid,
        )  # fmt: skip
        return obj

    def delete_object(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        precondition_rv: str | None = None,
        precondition_uid: str | None = None,
    ) -> tuple[Obj, bool]:
        """The registry's `Delete`: preconditions (uid, then resourceVersion), then the garbage
        collector's finalizers for the propagation policy (`deletionFinalizersForGarbageCollection`);
        an object with finalizers is only marked (`deletionTimestamp`), one without goes at once.
        The object's state, and whether it went at once."""
        with self.lock:
            key = self.key(rt, namespace, name)
            current = self._objects.get(key)
            if current is None:
                raise not_found(rt, name)
            meta = current["metadata"]
            if precondition_uid and precondition_uid != meta["uid"]:
                raise precondition_failed(rt, name, "UID", precondition_uid, meta["uid"],
                                          "deleted and then recreated")  # fmt: skip
            if precondition_rv and precondition_rv != meta["resourceVersion"]:
                raise precondition_failed(rt, name, "ResourceVersion", precondition_rv,
                                          meta["resourceVersion"], "modified")  # fmt: skip
            old_finalizers = list(meta.get("finalizers", []))
            finalizers = gc_finalizers(rt, old_finalizers, propagation)
            if set(finalizers) == set(old_finalizers):
                finalizers = old_finalizers
            if rt.plural == "namespaces" and not rt.group:
                finalizers = finalizers or ["kubernetes"]
            if not old_finalizers and set(finalizers) == set(old_finalizers):
                return self._view(rt, self._remove(key)), True
            new = copy.deepcopy(current)
            new_meta = new["metadata"]
            if not meta.get("deletionTimestamp"):
                new_meta.update(deletionTimestamp=now_iso(), deletionGracePeriodSeconds=0)
                if rt.has_generation:
                    new_meta["generation"] = new_meta.get("generation", 0) + 1
            new_meta["finalizers"] = finalizers
            if rt.plural == "namespaces" and not rt.group:
                new.setdefault("status", {})["phase"] = "Terminating"
            if new == current:
                return self._view(rt, current), False
            new_meta["resourceVersion"] = self._next_rv()
            self._put(rt, key, new)
            self._record("MODIFIED", key, new, current)
            self.collect_garbage()
            return self._view(rt, new), False

    def _remove(self, key: Key) -> Obj:
        """Remove an object; its last state, at the resourceVersion of its removal."""
        obj = self._objects.pop(key)
        self._decoded_under.pop(id(obj), None)
        self._uids.pop(obj["metadata"]["uid"], None)
        self._next_rv()
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._record("DELETED", key, gone, obj)
        if key[0] == CRD_GROUP:
            self._drop_custom_resources(obj)
            self._sync_crd_types()
        self.collect_garbage()
        return gone

    def _drop_custom_resources(self, crd: Obj) -> None:
        """A deleted CRD takes its objects with it (at once: their finalizers are not waited for)."""
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        for key in [k for k in self._objects if k[:2] == (group, plural)]:
            self._remove(key)


def _spec_of(rt: ResourceType, obj: Obj) -> Obj:
    """What `metadata.generation` tracks: everything but metadata (and status, if a subresource);
    a Deployment's annotations too (apps' strategy: they are copied to its ReplicaSets)."""
    skip = {"metadata", "apiVersion", "kind"} | ({"status"} if rt.status_subresource else set())
    tracked = {key: value for key, value in obj.items() if key not in skip}
    if (rt.group, rt.plural) == ("apps", "deployments"):
        tracked["annotations"] = obj["metadata"].get("annotations")
    return tracked
