"""Garbage collection and the deletion finalizers the API server itself handles (a Store mixin).

Background propagation: once an owner is removed, every object all of whose ownerReferences point
to removed objects is deleted, recursively. `propagationPolicy=Orphan` strips the owner from its
dependents instead; `Foreground` deletes the dependents before the owner. A deleted Namespace
deletes its content, then goes. Unlike the real collector this runs synchronously, inside the write
that made progress possible, so a test never waits for a collector's resync period.
"""

from __future__ import annotations

import copy
import threading
from typing import TYPE_CHECKING

from tests.kube.resources import Obj, ResourceType

Key = tuple[str, str, str, str]  # group, plural, namespace ("" if cluster-scoped), name
# What the garbage collector never collects (garbagecollector.DefaultIgnoredResources): Events,
# whatever their ownerReferences say.
IGNORED = {("", "events")}


class GarbageCollector:
    lock: threading.RLock
    _objects: dict[Key, Obj]
    _uids: dict[str, Key]
    _types: dict[tuple[str, str, str], ResourceType]

    if TYPE_CHECKING:  # provided by Store

        def delete(
            self, rt: ResourceType, namespace: str | None, name: str, *, propagation: str = ...
        ) -> Obj: ...

        def _next_rv(self) -> str: ...

        def _record(self, kind: str, key: Key, obj: Obj, old: Obj | None) -> None: ...

        def _remove(self, key: Key) -> Obj: ...

    def _dependents(self, owner: Obj) -> list[Key]:
        uid = owner["metadata"]["uid"]
        return [
            key
            for key, obj in self._objects.items()
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", []))
        ]

    def _owners_gone(self, obj: Obj) -> bool:
        refs = obj["metadata"].get("ownerReferences", [])
        return bool(refs) and not any(ref.get("uid") in self._uids for ref in refs)

    def may_collect(self, obj: Obj) -> bool:
        """Whether the collector could act on a new object `obj`: an owner of it is gone or being
        deleted (a foreground deletion takes new dependents too). Otherwise, a store collected
        after every earlier write has nothing to collect."""
        keys = [
            self._uids.get(ref.get("uid")) for ref in obj["metadata"].get("ownerReferences", [])
        ]
        return any(
            key is None or key not in self._objects
            or self._objects[key]["metadata"].get("deletionTimestamp")
            for key in keys
        )  # fmt: skip

    def collect_garbage(self) -> None:
        """Run the garbage collector to a fixed point: delete dependents whose owners are all gone,
        finish `orphan`/`foregroundDeletion` finalizers, and empty terminating namespaces."""
        with self.lock:
            for _ in range(1000):
                if not self._collect_once():
                    return

    def _collect_once(self) -> bool:
        for key, obj in list(self._objects.items()):
            meta = obj["metadata"]
            deleting = bool(meta.get("deletionTimestamp"))
            if not deleting and key[:2] not in IGNORED and self._owners_gone(obj):
                self._delete_key(key, "Background")
                return True
            finalizers = meta.get("finalizers", [])
            if deleting and "orphan" in finalizers:
                for dependent in self._dependents(obj):
                    self._strip_owner(dependent, meta["uid"])
                self._drop_finalizer(key, "orphan")
                return True
            if deleting and "foregroundDeletion" in finalizers:
                alive = [k for k in self._dependents(obj) if k in self._objects]
                for dependent in alive:
                    if not self._objects[dependent]["metadata"].get("deletionTimestamp"):
                        self._delete_key(dependent, "Foreground")
                        return True
                if not alive:
                    self._drop_finalizer(key, "foregroundDeletion")
                    return True
            if deleting and key[:2] == ("", "namespaces") and "kubernetes" in finalizers:
                content = [k for k in self._objects if k[2] == key[3] and k[:2] != key[:2]]
                for k in content:
                    if not self._objects[k]["metadata"].get("deletionTimestamp"):
                        self._delete_key(k, "Background")
                        return True
                if not content:
                    self._drop_finalizer(key, "kubernetes", field="spec")
                    return True
        return False

    def _delete_key(self, key: Key, propagation: str) -> None:
        rt = next(t for t in self._types.values() if (t.group, t.plural) == key[:2])
        self.delete(rt, key[2] or None, key[3], propagation=propagation)

    def _replace_stored(self, key: Key, new: Obj) -> None:
        current = self._objects[key]
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(key)  # the last finalizer gone: the object goes, the update is not stored
            return
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._objects[key] = new
        self._record("MODIFIED", key, new, current)

    def _strip_owner(self, key: Key, uid: str) -> None:
        new = copy.deepcopy(self._objects[key])
        refs = [r for r in new["metadata"].get("ownerReferences", []) if r.get("uid") != uid]
        new["metadata"]["ownerReferences"] = refs
        if not refs:
            del new["metadata"]["ownerReferences"]
        self._replace_stored(key, new)

    def _drop_finalizer(self, key: Key, finalizer: str, field: str = "metadata") -> None:
        new = copy.deepcopy(self._objects[key])
        new["metadata"]["finalizers"] = [
            f for f in new["metadata"].get("finalizers", []) if f != finalizer
        ]
        if field == "spec":
            new.setdefault("spec", {})["finalizers"] = []
        self._replace_stored(key, new)
