"""The three PATCH flavours of the Kubernetes API, applied to plain dicts (never in place).

- JSON merge patch as kube-apiserver applies it: evanphx/json-patch v4 `MergePatch` (the
  `gopkg.in/evanphx/json-patch.v4` v4.13.0 that Kubernetes 1.37 links, called from
  `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go` `applyJSPatch`). That is RFC 7386
  plus one difference: a value the patch *sets* (rather than merges into an object) has its nulls
  pruned (`pruneNulls`): `null` members of objects are dropped at any depth, inside lists too, while
  `null` list items stay (`pruneAryNulls`). A patch value that replaces an existing object with a
  non-object is stored as sent (`merge` returns it unpruned).
- JSON patch (RFC 6902): all six ops; a failing `test` or a missing path is a 422 `Invalid`, which is
  what the real API server answers and what kopf's optimistic finalizer patch relies on.
- Strategic merge patch, for built-in kinds only: a documented subset of the real thing. Maps merge;
  lists whose field has a merge key in the real schema (`containers`, `env`, `ports`, `volumes`, ...)
  merge item by item on that key; `finalizers` merge as a set; every other list is replaced; the
  `$patch: replace|delete` directives and `$deleteFromPrimitiveList/<field>` work; `$setElementOrder`
  and `$retainKeys` are accepted and ignored.
"""

from __future__ import annotations

import copy
from typing import Any

from kmock import KubernetesError

MERGE = "application/merge-patch+json"
JSON = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"

# Field name -> merge key, as declared by `patchMergeKey` in the Kubernetes API schema.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "conditions": "type",
    "topologySpreadConstraints": "topologyKey",
}
SET_LISTS = frozenset({"finalizers"})


def unprocessable(message: str) -> KubernetesError:
    return KubernetesError(status=422, reason="Invalid", message=message, details={})


def merge_patch(target: Any, patch: Any) -> Any:
    """`MergePatch(target, patch)` of evanphx/json-patch v4 (merge.go `doMergePatch`), for the
    object documents the API server patches; a non-object patch is a 400, as `ErrBadJSONPatch`."""
    if not isinstance(patch, dict):
        raise KubernetesError(status=400, reason="BadRequest", details={},
                              message="Invalid JSON Patch")  # fmt: skip
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    _merge_docs(result, patch)
    return result


def _merge_docs(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    """merge.go `mergeDocs`: `null` deletes; a new (or null) member takes the pruned value."""
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
        elif doc.get(key) is None:
            doc[key] = _prune_nulls(value)
        else:
            doc[key] = _merge(doc[key], value)


def _merge(current: Any, patch: Any) -> Any:
    """merge.go `merge`: objects merge; onto a non-object the pruned patch; else the patch as is."""
    if not isinstance(current, dict):
        return _prune_nulls(patch)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    _merge_docs(current, patch)
    return current


def _prune_nulls(value: Any) -> Any:
    """merge.go `pruneNulls`: `pruneDocNulls` drops null members, `pruneAryNulls` keeps null items
    but prunes inside the others."""
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [None if item is None else _prune_nulls(item) for item in value]
    return value


# --- RFC 6902 ---------------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise unprocessable(f"invalid JSON pointer: {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise unprocessable(f"the server rejected our request: doc is missing path: {path!r}")
    return node, parts[-1]


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    node, last = _parent(doc, parts, path)
    if isinstance(node, dict) and last in node:
        return node[last]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        return node[int(last)]
    raise unprocessable(f"the server rejected our request: doc is missing path: {path!r}")


def _remove(doc: Any, path: str) -> Any:
    value = _get(doc, path)
    node, last = _parent(doc, _pointer(path), path)
    if isinstance(node, dict):
        del node[last]
    else:
        del node[int(last)]
    return value


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    node, last = _parent(doc, parts, path)
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list) and last == "-":
        node.append(value)
    elif isinstance(node, list) and last.isdigit() and int(last) <= len(node):
        node.insert(int(last), value)
    else:
        raise unprocessable(f"the server rejected our request: doc is missing path: {path!r}")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902, atomically: the target is untouched when any operation fails."""
    if not isinstance(ops, list):
        raise KubernetesError(status=400, reason="BadRequest", details={},
                              message="json patch must be a list of operations")  # fmt: skip
    doc = copy.deepcopy(target)
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "test":
            actual = _get(doc, path)
            if actual != op.get("value"):
                raise unprocessable(
                    f"the server rejected our request due to an error in our request: "
                    f"testing value {path} failed: {actual!r} != {op.get('value')!r}"
                )
        elif kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)  # must exist
            if _pointer(path):
                _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "move":
            doc = _add(doc, path, _remove(doc, op["from"]))
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
        else:
            raise unprocessable(f"unknown JSON patch operation: {kind!r}")
    return doc


# --- strategic merge (subset) -----------------------------------------------------------------------


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":  # container ports merge on containerPort, Service ports on port
        probe = next((item for item in items if isinstance(item, dict)), {})
        return "containerPort" if "containerPort" in probe else "port"
    return MERGE_KEYS.get(field)


def _merge_list(field: str, target: list[Any], patch: list[Any]) -> list[Any]:
    if field in SET_LISTS:
        return list(target) + [item for item in patch if item not in target]
    key = _merge_key(field, target + patch)
    if key is None or not all(isinstance(item, dict) for item in patch):
        return copy.deepcopy(patch)
    if any(item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if i.get("$patch") != "replace"]
    result = copy.deepcopy(target)
    for item in patch:
        index = next((i for i, old in enumerate(result) if old.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge({}, item))
        else:
            result[index] = strategic_merge(result[index], item)
    return result


def strategic_merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith(("$setElementOrder/", "$retainKeys", "$patch")):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [item for item in result.get(field, []) if item not in value]
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(key, result[key], value)
        elif isinstance(value, list):
            result[key] = _merge_list(key, [], value)
        else:
            merged = strategic_merge(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    return result
