"""Events: one storage served by two APIs, core v1 and events.k8s.io/v1, as kube-apiserver does it.

The API server keeps one kind of Event (`pkg/apis/core` `Event`) and converts it for each API:
`pkg/apis/events/v1/conversion.go` maps `regarding` <-> `involvedObject`, `note` <-> `message`,
`deprecatedSource` <-> `source`, `deprecatedFirstTimestamp` / `deprecatedLastTimestamp` /
`deprecatedCount` <-> `firstTimestamp` / `lastTimestamp` / `count`, and `reportingController` <->
`reportingComponent` (the core v1 JSON name of the internal `ReportingController`); the other fields
are shared. An Event written through either API is read through both. Each API's JSON encoding
shows its own zero values: core v1 always has `involvedObject`, `source`, `reportingComponent` and
`reportingInstance` (no `omitempty`); events.k8s.io/v1 always has `regarding` and
`deprecatedSource`. Fields neither API knows are dropped, as decoding into the typed struct does.

Validation follows `pkg/apis/core/validation/events.go`: `legacyValidateEvent` for both APIs;
through events.k8s.io/v1 also the strict rules (`ValidateEventCreate`: object metadata, `eventTime`
required, `type` Normal or Warning, the deprecated fields unset, a valid `series`;
`ValidateEventUpdate`: most fields immutable). Errors name the internal fields (`message`,
`reportingController`, `firstTimestamp`, ...) whichever API was used. Nothing here does I/O.
"""

from __future__ import annotations

import json
from typing import Any

from tests.kube.fielderrors import FieldError, Rendered, invalid, required
from tests.kube.names import is_dns1123_subdomain, is_label_key

Obj = dict[str, Any]
# (core v1 JSON name, events.k8s.io/v1 JSON name)
RENAMED = (
    ("involvedObject", "regarding"), ("message", "note"), ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"), ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"), ("reportingComponent", "reportingController"),
)  # fmt: skip
SHARED = ("eventTime", "series", "action", "reason", "related", "type", "reportingInstance")
CORE_FIELDS = frozenset(core for core, _ in RENAMED) | frozenset(SHARED)
# What each encoding prints even when empty (no `omitempty`, or a struct that is never empty).
CORE_ALWAYS = {
    "involvedObject": {},
    "source": {},
    "reportingComponent": "",
    "reportingInstance": "",
}
V1_ALWAYS = {"regarding": {}, "deprecatedSource": {}}
# events.k8s.io/v1 field selectors, as core's (pkg/apis/events/v1 AddFieldLabelConversionsForEvent;
# `source` is not one of them on Kubernetes 1.37)
FIELD_LABELS = {
    **{f"regarding.{part}": f"involvedObject.{part}" for part in (
        "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
    "reportingController": "reportingComponent", "reason": "reason", "type": "type",
    "metadata.namespace": "metadata.namespace", "metadata.name": "metadata.name",
}  # fmt: skip
CORE_FIELD_LABELS = frozenset({*FIELD_LABELS.values(), "source"})
LIMIT = 128  # ReportingInstanceLengthLimit, ActionLengthLimit, ReasonLengthLimit
NOTE_LIMIT = 1024


def _encode(fields: Obj, always: Obj) -> Obj:
    """Go's JSON encoding: `omitempty` members left out when empty, the others always there."""
    kept = {k: v for k, v in fields.items() if v not in ("", 0, None) or k in always}
    return {**always, **kept}


def to_core(obj: Obj) -> Obj:
    """An Event as stored (and as core v1 shows it), from a core v1 body."""
    fields = {k: v for k, v in obj.items() if k in CORE_FIELDS}
    return {"apiVersion": "v1", "kind": "Event", "metadata": obj.get("metadata") or {},
            **_encode(fields, CORE_ALWAYS)}  # fmt: skip


def from_events_v1(obj: Obj) -> Obj:
    """Convert_v1_Event_To_core_Event: an events.k8s.io/v1 body as stored."""
    v1_names = {v1: core for core, v1 in RENAMED}
    fields = {v1_names.get(k, k): v for k, v in obj.items() if k in v1_names or k in SHARED}
    return to_core({"metadata": obj.get("metadata") or {}, **fields})


def to_events_v1(obj: Obj) -> Obj:
    """Convert_core_Event_To_v1_Event: a stored Event as events.k8s.io/v1 shows it."""
    core_names = dict(RENAMED)
    fields = {core_names.get(k, k): v for k, v in obj.items() if k in CORE_FIELDS}
    return {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": obj["metadata"],
            **_encode(fields, V1_ALWAYS)}  # fmt: skip


def selectable_field(event: Obj, label: str) -> str:
    """`ToSelectableFields` of pkg/registry/core/event/strategy.go, for a stored Event."""
    if label == "source":  # the source's component, else the reporting controller
        source = (event.get("source") or {}).get("component") or ""
        return str(source or event.get("reportingComponent") or "")
    value: Any = event
    for part in label.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def legacy_errors(event: Obj, *, strict: bool) -> list[FieldError]:
    """legacyValidateEvent: an Event written through either API (the reporting controller is
    named as the API that was used names it)."""
    reporting = "reportingController" if strict else "reportingComponent"
    errs: list[FieldError] = []
    namespace = event["metadata"].get("namespace") or ""
    involved = (event.get("involvedObject") or {}).get("namespace") or ""
    mismatch = invalid("involvedObject.namespace", involved, "does not match event.namespace")
    if not event.get("eventTime"):
        if (not involved and namespace not in ("", "default")) or (
            involved and namespace != involved
        ):
            errs.append(mismatch)
    else:
        if not involved and namespace not in ("default", "kube-system"):
            errs.append(mismatch)
        controller = event.get("reportingComponent") or ""
        if not controller:
            errs.append(required(reporting))
        errs += [invalid(reporting, controller, m) for m in is_label_key(controller)]
        for field, limit in (("reportingInstance", LIMIT), ("action", LIMIT), ("reason", LIMIT)):
            value = event.get(field) or ""
            if not value:
                errs.append(required(field))
            if len(value) > limit:
                errs.append(invalid(field, "", f"can have at most {limit} characters"))
        if len(event.get("message") or "") > NOTE_LIMIT:
            errs.append(invalid("message", "", f"can have at most {NOTE_LIMIT} characters"))
    errs += [invalid("namespace", namespace, m) for m in is_dns1123_subdomain(namespace)]
    return errs


def _series_errors(event: Obj) -> list[FieldError]:
    series = event.get("series")
    if series is None:
        return []
    errs = []
    if int(series.get("count") or 0) < 2:
        errs.append(invalid("series.count", "", "should be at least 2"))
    if not series.get("lastObservedTime"):
        errs.append(required("series.lastObservedTime"))
    return errs


def strict_create_errors(event: Obj) -> list[FieldError]:
    """ValidateEventCreate's rules for events.k8s.io/v1 beyond the legacy ones and the object
    metadata (checked by the caller, between the two)."""
    errs = _series_errors(event)
    if not event.get("eventTime"):
        errs.append(required("eventTime"))
    kind = event.get("type") or ""
    if kind not in ("Normal", "Warning"):
        errs.append(invalid("type", "", f"has invalid value: {kind}"))
    for field in ("firstTimestamp", "lastTimestamp", "count"):
        if event.get(field):
            errs.append(invalid(field, "", "needs to be unset"))
    if any((event.get("source") or {}).get(part) for part in ("component", "host")):
        errs.append(invalid("source", "", "needs to be unset"))
    return errs


IMMUTABLE = ("involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp",
             "count", "reason", "type", "eventTime", "action", "related", "reportingComponent",
             "reportingInstance")  # fmt: skip
ERROR_NAMES = {"reportingComponent": "reportingController"}  # internal field names
# Internal structs have no JSON tags: Go prints their fields by their Go names, in order.
GO_FIELDS = {
    "involvedObject": ("Kind", "Namespace", "Name", "UID", "APIVersion", "ResourceVersion", "FieldPath"),
    "related": ("Kind", "Namespace", "Name", "UID", "APIVersion", "ResourceVersion", "FieldPath"),
    "source": ("Component", "Host"),
}  # fmt: skip


def _go_struct(field: str, value: Any) -> Any:
    names = GO_FIELDS.get(field)
    if names is None or not isinstance(value, dict):
        return value
    json_names = {"UID": "uid", "APIVersion": "apiVersion"}
    shown = {n: value.get(json_names.get(n, n[0].lower() + n[1:]), "") for n in names}
    return Rendered(json.dumps(shown, separators=(",", ":")))


def strict_update_errors(event: Obj, old: Obj) -> list[FieldError]:
    """ValidateEventUpdate's rules for events.k8s.io/v1 beyond the legacy ones."""
    errs = _series_errors(event) if event.get("series") != old.get("series") else []
    for field in IMMUTABLE:
        if event.get(field) != old.get(field):
            shown = _go_struct(field, event.get(field))
            errs.append(invalid(ERROR_NAMES.get(field, field), shown, "field is immutable"))
    return errs
