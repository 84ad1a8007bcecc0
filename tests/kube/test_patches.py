"""JSON merge patch as kube-apiserver applies it, against a faithful model of the code it runs.

kube-apiserver applies `application/merge-patch+json` with evanphx/json-patch v4 `MergePatch`
(`staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go` `applyJSPatch`; Kubernetes 1.37
links `gopkg.in/evanphx/json-patch.v4` v4.13.0). `GoMergePatch` below models that code as it is
written, lazy nodes and all (merge.go `doMergePatch`, `mergeDocs`, `merge`, `pruneNulls`,
`pruneDocNulls`, `pruneAryNulls`; patch.go `lazyNode.intoDoc`/`intoAry`/`MarshalJSON`), so the
emulator's compact `merge_patch` is checked against it over generated documents and patches, and
against the examples of RFC 7386 Appendix A that apply to object documents.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kmock import KubernetesError

from tests.kube.patches import merge_patch


class NotA(Exception):
    """json.Unmarshal into the wrong Go type (an object into an array, ...)."""


class LazyNode:
    """patch.go `lazyNode`: raw JSON until asked to be a document or an array."""

    def __init__(self, raw: str) -> None:
        self.raw, self.which = raw, "raw"
        self.doc: dict[str, LazyNode | None] = {}
        self.ary: list[LazyNode | None] = []

    def into_doc(self) -> dict[str, LazyNode | None]:
        if self.which == "doc":
            return self.doc
        value = json.loads(self.raw)
        if not isinstance(value, dict):
            raise NotA("doc")
        self.doc, self.which = {k: node(v) for k, v in value.items()}, "doc"
        return self.doc

    def into_ary(self) -> list[LazyNode | None]:
        if self.which == "ary":
            return self.ary
        value = json.loads(self.raw)
        if not isinstance(value, list):
            raise NotA("ary")
        self.ary, self.which = [node(v) for v in value], "ary"
        return self.ary

    def marshal(self) -> Any:
        if self.which == "doc":
            return {k: None if v is None else v.marshal() for k, v in self.doc.items()}
        if self.which == "ary":
            return [None if v is None else v.marshal() for v in self.ary]
        return json.loads(self.raw)


def node(value: Any) -> LazyNode | None:
    return None if value is None else LazyNode(json.dumps(value))


def go_merge(cur: LazyNode, patch: LazyNode) -> LazyNode:
    try:
        cur_doc = cur.into_doc()
    except NotA:
        go_prune_nulls(patch)
        return patch
    try:
        patch_doc = patch.into_doc()
    except NotA:
        return patch
    go_merge_docs(cur_doc, patch_doc)
    return cur


def go_merge_docs(doc: dict[str, LazyNode | None], patch: dict[str, LazyNode | None]) -> None:
    for key, value in list(patch.items()):
        if value is None:
            doc.pop(key, None)
        else:
            cur = doc.get(key)
            if cur is None:  # `!ok || cur == nil`
                go_prune_nulls(value)
                doc[key] = value
            else:
                doc[key] = go_merge(cur, value)


def go_prune_nulls(n: LazyNode) -> None:
    try:
        go_prune_doc_nulls(n.into_doc())
    except NotA:
        with contextlib.suppress(NotA):
            go_prune_ary_nulls(n.into_ary())


def go_prune_doc_nulls(doc: dict[str, LazyNode | None]) -> None:
    for key, value in list(doc.items()):
        if value is None:
            del doc[key]
        else:
            go_prune_nulls(value)


def go_prune_ary_nulls(ary: list[LazyNode | None]) -> None:
    for value in ary:  # v4.13.0 keeps nil items (`newAry = append(newAry, v)` for every v)
        if value is not None:
            go_prune_nulls(value)


def go_merge_patch(doc: dict[str, Any], patch: Any) -> Any:
    """`MergePatch` for an object document; "Invalid JSON Patch" where it returns ErrBadJSONPatch
    (a null, scalar or array patch: the API server cannot decode the result as an object)."""
    if not isinstance(patch, dict):
        return "Invalid JSON Patch"
    top = LazyNode(json.dumps(doc))
    go_merge_docs(top.into_doc(), LazyNode(json.dumps(patch)).into_doc())
    return top.marshal()


def emulator(doc: dict[str, Any], patch: Any) -> Any:
    try:
        return merge_patch(doc, patch)
    except KubernetesError as exc:
        assert exc.status == 400
        return exc.message


KEYS = st.sampled_from(["a", "b", "c", "status", "history"])
SCALARS = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["x", "", "null"])
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
OBJECTS = st.dictionaries(KEYS, VALUES, max_size=4)


@settings(max_examples=120, deadline=None)
@given(doc=OBJECTS, patch=OBJECTS | VALUES)
def test_merge_patch_matches_the_json_patch_library_of_the_api_server(doc: Any, patch: Any) -> None:
    assert emulator(doc, patch) == go_merge_patch(doc, patch)


# RFC 7386 Appendix A, the cases with an object document (the API server patches objects only);
# evanphx/json-patch agrees with the RFC on every one of them.
RFC7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ({"a": "b"}, ["c"], "Invalid JSON Patch"),  # the RFC's result (an array) is no object
    ({"a": "foo"}, None, "Invalid JSON Patch"),
    ({"a": "foo"}, "bar", "Invalid JSON Patch"),
]
# Where the library departs from the RFC: what a patch sets has its null members pruned, in lists
# too, but null list items stay; a non-object replacing an object is stored as sent.
PRUNED = [
    ({"status": {"phase": "Healthy"}},
     {"status": {"history": [{"version": "1", "retiredAt": None}]}},
     {"status": {"phase": "Healthy", "history": [{"version": "1"}]}}),
    ({"status": {"history": [{"version": "0"}]}},
     {"status": {"history": [None, {"version": "1", "reason": None}]}},
     {"status": {"history": [None, {"version": "1"}]}}),
    ({"a": {"b": 1}}, {"a": [{"c": None}]}, {"a": [{"c": None}]}),
    ({"a": None}, {"a": {"b": None, "c": [{"d": None}]}}, {"a": {"c": [{}]}}),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "patch", "expected"), RFC7386 + PRUNED)
def test_merge_patch_examples(doc: Any, patch: Any, expected: Any) -> None:
    assert go_merge_patch(doc, patch) == expected
    assert emulator(doc, patch) == expected
