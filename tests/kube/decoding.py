"""What kube-apiserver refuses before validation: a body it cannot decode into the object's type.

A built-in kind's body is decoded into its Go struct (`sigs.k8s.io/json`, a fork of
`encoding/json`), so a value of the wrong JSON type is a 400 `BadRequest` worded as
`<Kind> in version "<v>" cannot be handled as a <Kind>: json: cannot unmarshal number into Go
struct field ConfigMap.data of type string`, and a `[]byte` field (Secret `data`, ConfigMap
`binaryData`) must be standard base64 (`illegal base64 data at input byte 3`, where Go's decoder
stops). `apiVersion`/`kind`, when given, must name the resource's own (a Secret sent to configmaps
is not converted). A custom resource's body must carry both, with its resource's `apiVersion`
(`unstructured` decoding); a wrong `kind` is a 422 from the custom resource validator.

Only the typed fields the emulator's kinds are written with are known here (`TYPES`): object
metadata, ConfigMap, Secret, the Deployment and Service fields an operator sets, Events. Nothing
here does I/O.
"""

from __future__ import annotations

from typing import Any

from kmock import KubernetesError

from tests.kube.fielderrors import invalid, invalid_status

Obj = dict[str, Any]
STRING, INT32, BOOL, BYTES = "string", "int32", "bool", "[]uint8"
# A struct: Go type name and its fields' types; a field type is a scalar name, a nested struct,
# ("map", value type) or ("list", item type).
Struct = tuple[str, dict[str, Any]]
META: Struct = ("ObjectMeta", {
    "name": STRING, "generateName": STRING, "namespace": STRING, "uid": STRING,
    "resourceVersion": STRING, "labels": ("map", STRING), "annotations": ("map", STRING),
    "finalizers": ("list", STRING),
})  # fmt: skip
REFERENCE: Struct = (
    "ObjectReference",
    {f: STRING for f in ("kind", "namespace", "name", "uid", "apiVersion")},
)
CONTAINER: Struct = ("Container", {"name": STRING, "image": STRING})
TYPES: dict[tuple[str, str], Struct] = {
    ("", "configmaps"): ("ConfigMap", {"data": ("map", STRING), "binaryData": ("map", BYTES),
                                       "immutable": BOOL}),
    ("", "secrets"): ("Secret", {"data": ("map", BYTES), "stringData": ("map", STRING),
                                 "type": STRING, "immutable": BOOL}),
    ("", "services"): ("Service", {"spec": ("ServiceSpec", {
        "type": STRING, "selector": ("map", STRING),
        "ports": ("list", ("ServicePort", {"name": STRING, "port": INT32}))})}),
    ("apps", "deployments"): ("Deployment", {"spec": ("DeploymentSpec", {
        "replicas": INT32, "paused": BOOL, "minReadySeconds": INT32,
        "template": ("PodTemplateSpec", {"spec": ("PodSpec", {
            "containers": ("list", CONTAINER)})})})}),
    ("", "events"): ("Event", {"involvedObject": REFERENCE, "reason": STRING, "message": STRING,
                               "type": STRING, "count": INT32}),
    ("events.k8s.io", "events"): ("Event", {"regarding": REFERENCE, "reason": STRING,
                                            "note": STRING, "type": STRING, "deprecatedCount": INT32}),
}  # fmt: skip


class CannotDecode(Exception):
    """The body does not fit the Go type; the message is what Go says."""


def json_type(value: Any) -> str:
    """The JSON type of a decoded value, as Go's json errors name it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "null")


def _go_type(kind: Any) -> str:
    if isinstance(kind, str):
        return kind
    if kind[0] == "map":
        return f"map[string]{_go_type(kind[1])}"
    if kind[0] == "list":
        return f"[]{_go_type(kind[1])}"
    return str(kind[0])


def base64_error(data: str) -> int | None:
    """Where Go's base64.StdEncoding.DecodeString stops (CorruptInputError), or None if it can
    decode `data` (a port of encoding/base64 `decodeQuantum`: newlines are skipped)."""
    alphabet = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    src, si = data.encode(), 0
    while si < len(src):
        j = 0
        while j < 4:
            if si == len(src):
                if j == 0:
                    return None
                return si - j
            char = src[si]
            si += 1
            if char in alphabet:
                j += 1
                continue
            if char in b"\r\n":
                continue
            if char != ord("=") or j < 2:
                return si - 1
            if j == 2:  # "==" expected, the first one consumed
                while si < len(src) and src[si] in b"\r\n":
                    si += 1
                if si == len(src):
                    return len(src)
                if src[si] != ord("="):
                    return si - 1
                si += 1
            while si < len(src) and src[si] in b"\r\n":
                si += 1
            return si if si < len(src) else None
    return None


def _check(value: Any, kind: Any, struct: str, path: list[str]) -> None:
    """Raise CannotDecode for the first value (in document order) Go cannot decode."""
    if value is None:
        return  # null leaves a Go field at its zero value
    expected = {STRING: str, BYTES: str, BOOL: bool, INT32: int}
    if isinstance(kind, str):
        ok = isinstance(value, expected[kind]) and (kind != INT32 or not isinstance(value, bool))
        if not ok:
            raise CannotDecode(f"json: cannot unmarshal {json_type(value)} into Go struct field "
                               f"{struct}.{'.'.join(path)} of type {_go_type(kind)}")  # fmt: skip
        if kind == BYTES and (at := base64_error(value)) is not None:
            raise CannotDecode(f"illegal base64 data at input byte {at}")
        return
    if kind[0] in ("map", "list"):
        wanted = dict if kind[0] == "map" else list
        if not isinstance(value, wanted):
            raise CannotDecode(f"json: cannot unmarshal {json_type(value)} into Go struct field "
                               f"{struct}.{'.'.join(path)} of type {_go_type(kind)}")  # fmt: skip
        for item in value.values() if isinstance(value, dict) else value:
            _check(item, kind[1], struct, path)
        return
    name, fields = kind
    if not isinstance(value, dict):
        raise CannotDecode(f"json: cannot unmarshal {json_type(value)} into Go struct field "
                           f"{struct}.{'.'.join(path)} of type {_go_type(kind)}")  # fmt: skip
    for key, item in value.items():
        if key in fields:
            _check(item, fields[key], name, [*path, key])


def check_body(
    group: str, version: str, plural: str, kind: str, body: Obj, raw: str, *, builtin: bool
) -> None:
    """Refuse a create or update body as the API server's decoder would (see the module doc)."""
    api_version = f"{group}/{version}" if group else version
    sent_version, sent_kind = body.get("apiVersion") or "", body.get("kind") or ""
    if not builtin:
        _check_custom_resource(api_version, kind, body, raw, sent_version, sent_kind)
        return
    problem = None
    if sent_kind and sent_kind != kind:
        problem = (f"converting ({version}.{sent_kind}) to ({group or 'core'}.{kind}): "
                   "unknown conversion")  # fmt: skip
    elif sent_version and sent_version != api_version:
        problem = f'no kind "{sent_kind or kind}" is registered for version "{sent_version}" in scheme "pkg/runtime/scheme.go:111"'
    else:
        struct, fields = TYPES.get((group, plural), (kind, {}))
        try:
            _check(body.get("metadata"), META, "ObjectMeta", ["metadata"])
            _check({k: v for k, v in body.items() if k != "metadata"}, (struct, fields), struct, [])
        except CannotDecode as exc:
            problem = str(exc)
    if problem is not None:
        shown = sent_version or api_version
        raise KubernetesError(
            status=400, reason="BadRequest", details={},
            message=f'{sent_kind or kind} in version "{shown.rpartition("/")[2]}" cannot be '
            f"handled as a {kind}: {problem}",
        )  # fmt: skip


def _check_custom_resource(
    api_version: str, kind: str, body: Obj, raw: str, sent_version: str, sent_kind: str
) -> None:
    if not sent_kind:
        shortened = raw if len(raw) <= 30 else raw[:30] + " ..."
        raise KubernetesError(
            status=400, reason="BadRequest", details={},
            message=f"the object provided is unrecognized (must be of type {kind}): Object 'Kind' "
            f"is missing in '{raw}' ({shortened})",
        )  # fmt: skip
    if sent_version != api_version:
        raise KubernetesError(
            status=400, reason="BadRequest", details={},
            message=f"the API version in the data ({sent_version}) does not match the expected "
            f"API version ({api_version})",
        )  # fmt: skip
    try:
        _check(body.get("metadata"), META, "ObjectMeta", [])
    except CannotDecode as exc:
        raise KubernetesError(
            status=400, reason="BadRequest", details={},
            message=f'{kind} in version "{api_version.rpartition("/")[2]}" cannot be handled as '
            f"a {kind}: {exc}",
        ) from None  # fmt: skip
    if sent_kind != kind:
        name = (body.get("metadata") or {}).get("name") or ""
        group = api_version.rpartition("/")[0]
        raise invalid_status(
            sent_kind, group, name, [invalid("kind", sent_kind, f"must be {kind}")]
        )
