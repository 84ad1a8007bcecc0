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

from tests.kube.decoding import json_type

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


# What kube-apiserver answers for any JSON patch operation that fails (patch.go wraps the
# library's error in a 422 that does not say which): a missing path, a failed `test`, an
# unknown operation.
REJECTED = "the server rejected our request due to an error in our request"


def unprocessable(message: str = REJECTED) -> KubernetesError:
    return KubernetesError(status=422, reason="Invalid", message=message, details={})


def decode_patch(content_type: str, patch: Any) -> None:
    """What patch.go refuses before applying: a body that is not the patch type's JSON shape."""
    problem = None
    if content_type == JSON and patch is not None and not isinstance(patch, list):
        problem = f"error decoding patch: json: cannot unmarshal {json_type(patch)} into Go value of type []handlers.jsonPatchOp"
    elif content_type == MERGE and patch is not None and not isinstance(patch, dict):
        problem = f"error decoding patch: json: cannot unmarshal {json_type(patch)} into Go value of type map[string]interface {{}}"
    elif content_type == STRATEGIC and patch is not None and not isinstance(patch, dict):
        problem = f"json: cannot unmarshal {json_type(patch)} into Go value of type map[string]interface {{}}"
    if problem:
        raise KubernetesError(status=400, reason="BadRequest", details={}, message=problem)


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
        raise unprocessable()
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise unprocessable()
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
    raise unprocessable()


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
        raise unprocessable()
    return doc


def _copied(doc: Any, path: str) -> Any:
    """What `copy` reads at `path`: a missing member of an object is null."""
    parts = _pointer(path)
    node, last = _parent(doc, parts, path) if parts else (None, "")
    if isinstance(node, dict) and last not in node:
        return None
    return _get(doc, path)


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 as evanphx/json-patch v4 applies it, atomically: the target is untouched when
    any operation fails. Where v4 departs from the RFC (its objects read a missing key as nil):
    `replace` of a missing member of an object sets it, `test` of a missing member passes for
    `null`, and `copy` from a missing member copies `null`."""
    doc = copy.deepcopy(target)
    for op in ops or []:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "test":
            if _copied(doc, path) != op.get("value"):  # a missing member tests as null
                raise unprocessable()
        elif kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":  # v4 sets a missing member of an object; a list item must exist
            parts = _pointer(path)
            parent = _parent(doc, parts, path)[0] if parts else None
            if not isinstance(parent, dict):
                _get(doc, path)
            if parts:
                if not isinstance(parent, dict):
                    _remove(doc, path)
                elif parts[-1] in parent:
                    del parent[parts[-1]]
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "move":
            doc = _add(doc, path, _remove(doc, op["from"]))
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_copied(doc, op.get("from", ""))))
        else:
            raise unprocessable()
    return doc


# --- strategic merge (subset) -----------------------------------------------------------------------


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":  # container ports merge on containerPort, Service ports on port
        probe = next((item for item in items if isinstance(item, dict)), {})
        return "containerPort" if "containerPort" in probe else "port"
    return MERGE_KEYS.get(field)


def _merge_list(field: str, target: list[Any], patch: list[Any]) -> list[Any]:
    if field in SET_LISTS:  # primitives: deduplicated, then ordered as a merged list is
        merged = list(dict.fromkeys([*target, *patch]))
        return _element_order(merged, patch, target, None)
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
    return _element_order(result, patch, target, key)


def _element_order(
    merged: list[Any], patch: list[Any], original: list[Any], key: str | None
) -> list[Any]:
    """normalizeElementOrder: the patch's items in the patch's order, the others in the
    original's, merged so that an item the original does not have comes before the original's
    ones still to place (`mergeSortedSlice`): a new list item goes first, not last. Items are
    told apart by their merge key, or by value (`key` None: a list of primitives)."""

    def ident(item: Any) -> Any:
        return item if key is None else item.get(key)

    patched = [ident(i) for i in patch if key is None or i.get("$patch") != "delete"]
    by_key = {ident(item): item for item in merged}
    right = [by_key[k] for k in dict.fromkeys(patched) if k in by_key]
    left = [item for item in merged if ident(item) not in patched]
    order = [ident(item) for item in original]
    result: list[Any] = []
    while left or right:
        if left and right and ident(left[0]) in order and ident(right[0]) in order:
            first_left = order.index(ident(left[0])) < order.index(ident(right[0]))
        else:
            first_left = not right
        result.append((left if first_left else right).pop(0))
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
