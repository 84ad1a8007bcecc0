"""Events served by two APIs from one storage, as kube-apiserver serves them
(pkg/apis/events/v1/conversion.go, pkg/apis/core/validation/events.go,
pkg/registry/core/event/strategy.go `ToSelectableFields`). tests/real/test_emulator_parity.py
checks the same against a real API server; these run in a second, without one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client import ApiClient, ApiException

from tests.kube.emulator import KubeEmulator
from tests.kube.test_emulator import raw

CORE = "/api/v1/namespaces/default/events"
EVENTS = "/apis/events.k8s.io/v1/namespaces/default/events"
MICRO = "2026-01-01T00:00:00.000000Z"
REGARDING = {"apiVersion": "v1", "kind": "ConfigMap", "name": "settings", "namespace": "default"}


def without_meta(obj: dict[str, Any]) -> dict[str, Any]:
    """The Event's own fields; a real server also prints unset times as `null` (Go's encoding
    of a zero time), the emulator leaves them out, as a client reads no value either way."""
    return {k: v for k, v in obj.items() if k != "metadata" and v is not None}


def test_an_event_written_through_either_api_is_read_through_both(
    api: ApiClient, kube: KubeEmulator
) -> None:
    raw(api, "POST", EVENTS, {
        "metadata": {"name": "new-style"}, "regarding": REGARDING, "note": "made",
        "reason": "Created", "type": "Normal", "eventTime": MICRO, "action": "Create",
        "reportingController": "example.com/app", "reportingInstance": "app-1",
    })  # fmt: skip
    raw(api, "POST", CORE, {
        "metadata": {"name": "old-style"}, "involvedObject": REGARDING, "message": "made",
        "reason": "Created", "type": "Normal", "count": 2, "source": {"component": "app"},
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:05Z",
    })  # fmt: skip
    assert without_meta(raw(api, "GET", f"{CORE}/new-style")) == {
        "apiVersion": "v1", "kind": "Event", "involvedObject": REGARDING, "message": "made",
        "reason": "Created", "type": "Normal", "eventTime": MICRO, "action": "Create",
        "reportingComponent": "example.com/app", "reportingInstance": "app-1", "source": {},
    }  # fmt: skip
    assert without_meta(raw(api, "GET", f"{EVENTS}/old-style")) == {
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "regarding": REGARDING, "note": "made",
        "reason": "Created", "type": "Normal", "deprecatedCount": 2,
        "deprecatedSource": {"component": "app"},
        "deprecatedFirstTimestamp": "2026-01-01T00:00:00Z",
        "deprecatedLastTimestamp": "2026-01-01T00:00:05Z",
    }  # fmt: skip
    # one storage: each Event once, whichever API lists it or wrote it
    assert [e["metadata"]["name"] for e in kube.events("default", "settings")] == [
        "new-style", "old-style"]  # fmt: skip
    listed = raw(api, "GET", EVENTS)["items"]
    assert [(e["metadata"]["name"], e["note"]) for e in listed] == [
        ("new-style", "made"), ("old-style", "made")]  # fmt: skip
    raw(api, "DELETE", f"{EVENTS}/old-style")
    assert [e["metadata"]["name"] for e in kube.events("default")] == ["new-style"]


def test_field_selectors_name_the_fields_as_each_api_does(api: ApiClient) -> None:
    raw(api, "POST", CORE, {"metadata": {"name": "a"}, "involvedObject": REGARDING,
                            "reason": "Created", "source": {"component": "app"}})  # fmt: skip
    raw(api, "POST", EVENTS, {
        "metadata": {"name": "b"}, "regarding": {**REGARDING, "name": "other"}, "reason": "Moved",
        "type": "Normal", "eventTime": MICRO, "action": "Move",
        "reportingController": "example.com/app", "reportingInstance": "app-1",
    })  # fmt: skip

    def names(path: str, selector: str) -> list[str]:
        found = raw(api, "GET", f"{path}?fieldSelector={selector}")["items"]
        return [e["metadata"]["name"] for e in found]

    assert names(CORE, "involvedObject.name=settings") == ["a"]
    assert names(EVENTS, "regarding.name=other") == ["b"]
    assert names(CORE, "reportingComponent=example.com/app") == ["b"]
    # `source` falls back to the reporting controller for Events that have no source
    assert names(CORE, "source=example.com/app") == ["b"]
    assert names(CORE, "source=app") == ["a"]
    for selector in ("involvedObject.name=settings", "source=app"):
        with pytest.raises(ApiException) as refused:
            raw(api, "GET", f"{EVENTS}?fieldSelector={selector}")
        assert json.loads(refused.value.body)["message"] == (
            f"field label not supported: {selector.partition('=')[0]}"
        )


def test_events_k8s_io_validates_strictly_and_core_v1_does_not(api: ApiClient) -> None:
    loose = {"metadata": {"name": "Not_A_DNS_Name"}, "involvedObject": {"namespace": "default"}}
    assert raw(api, "POST", CORE, loose)["metadata"]["name"] == "Not_A_DNS_Name"
    with pytest.raises(ApiException) as strict:
        raw(api, "POST", EVENTS, {"metadata": {"name": "e"}, "regarding": {"namespace": "default"},
                                  "deprecatedCount": 3})  # fmt: skip
    body = json.loads(strict.value.body)
    assert (strict.value.status, body["reason"]) == (422, "Invalid")
    assert [(c["field"], c["message"]) for c in body["details"]["causes"]] == [
        ("eventTime", "Required value"),
        ("type", 'Invalid value: "": has invalid value: '),
        ("count", 'Invalid value: "": needs to be unset'),
    ]
    created = raw(api, "POST", EVENTS, {
        "metadata": {"name": "kept"}, "regarding": REGARDING, "note": "first", "reason": "R",
        "type": "Normal", "eventTime": MICRO, "action": "A",
        "reportingController": "example.com/app", "reportingInstance": "app-1",
    })  # fmt: skip
    with pytest.raises(ApiException) as immutable:
        raw(api, "PUT", f"{EVENTS}/kept", {**created, "note": "second"})
    assert json.loads(immutable.value.body)["message"] == (
        'Event "kept" is invalid: message: Invalid value: "second": field is immutable'
    )
    through_core = raw(api, "GET", f"{CORE}/kept")  # core v1 writes are not held to it
    assert raw(api, "PUT", f"{CORE}/kept", {**through_core, "message": "second"})["message"] == (
        "second"
    )
