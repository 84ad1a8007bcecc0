"""The Kubernetes API emulator over HTTP, proven with the official `kubernetes` client: CRUD, Status
errors, selectors, watches, the three patch flavours, status isolation, generation, conflicts,
finalizers, garbage collection, CRD discovery, namespaces, and kmock fault injection."""

from __future__ import annotations

import json
import re
from typing import Any

import kmock
import kubernetes
import pytest
from kubernetes.client import ApiClient, ApiException
from kubernetes.client import AppsV1Api as Apps
from kubernetes.client import CoreV1Api as Core
from kubernetes.client import CustomObjectsApi as Custom

from tests.kube.conftest import GROUP, WIDGETS, crd, deployment
from tests.kube.emulator import KubeEmulator

Obj = dict[str, Any]
GADGETS = crd("gadgets", "Gadget", scope="Cluster", status=False)


def configmap(
    name: str, labels: dict[str, str] | None = None, namespace: str = "default", **meta: Any
) -> Obj:
    metadata = {"name": name, "namespace": namespace, "labels": labels or {}, **meta}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}


def owner_ref(owner: Obj) -> Obj:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}  # fmt: skip


def raw(api: ApiClient, method: str, path: str, body: Any = None, content_type: str = "") -> Any:
    """A request with an explicit Content-Type, as the generated API methods cannot always send."""
    headers = {"Accept": "application/json", "Content-Type": content_type or "application/json"}
    return api.call_api(path, method, header_params=headers, body=body, response_type="object",
                        auth_settings=["BearerToken"], _return_http_data_only=True)  # fmt: skip


def status_of(error: pytest.ExceptionInfo[ApiException]) -> tuple[int, str, str]:
    body = json.loads(error.value.body)
    return error.value.status, body["reason"], body["message"]


def test_crud_conflict_and_not_found_status(api: ApiClient) -> None:
    core = Core(api)
    created = core.create_namespaced_config_map("default", configmap("settings"))
    assert created.metadata.resource_version.isdigit() and len(created.metadata.uid) == 36
    generated = core.create_namespaced_config_map("default", {"metadata": {"generateName": "gen-"}})
    assert re.fullmatch(r"gen-[a-z0-9]{5}", generated.metadata.name)
    with pytest.raises(ApiException) as duplicate:
        core.create_namespaced_config_map("default", configmap("settings"))
    assert status_of(duplicate) == (409, "AlreadyExists", 'configmaps "settings" already exists')
    core.delete_namespaced_config_map("settings", "default")
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("settings", "default")
    assert json.loads(missing.value.body) == {
        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": 404,
        "reason": "NotFound", "message": 'configmaps "settings" not found',
        "details": {"name": "settings", "kind": "configmaps"},
    }  # fmt: skip


def test_list_with_label_and_field_selectors(api: ApiClient, kube: KubeEmulator) -> None:
    for name, labels in [("a", {"app": "web", "tier": "front"}), ("b", {"app": "web"}),
                         ("c", {"app": "db", "tier": "back"}), ("d", {})]:  # fmt: skip
        kube.create(configmap(name, labels))
    core = Core(api)

    def names(**selectors: str) -> list[str]:
        return [
            i.metadata.name for i in core.list_namespaced_config_map("default", **selectors).items
        ]

    assert names(label_selector="app=web") == ["a", "b"]
    assert names(label_selector="app!=web") == ["c", "d"]
    assert names(label_selector="tier in (front, back)") == ["a", "c"]
    assert names(label_selector="tier notin (front)") == ["b", "c", "d"]
    assert names(label_selector="!tier,app") == ["b"]
    assert names(field_selector="metadata.name!=a", label_selector="app==web") == ["b"]
    listing = core.list_namespaced_config_map("default")
    assert listing.metadata.resource_version == str(kube.store.resource_version)
    with pytest.raises(ApiException) as unsupported:
        core.list_namespaced_config_map("default", field_selector="data.x=1")
    assert status_of(unsupported) == (  # a kind without field labels of its own
        400, "BadRequest",
        '"data.x" is not a known field selector: only "metadata.name", "metadata.namespace"',
    )  # fmt: skip


def test_watch_replays_history_and_streams_live(api: ApiClient, kube: KubeEmulator) -> None:
    core, watch = Core(api), kubernetes.watch.Watch()
    start = int(core.list_namespaced_config_map("default").metadata.resource_version)
    kube.create(configmap("w", {"watched": "yes"}))
    kube.patch("v1", "ConfigMap", "default", "w", {"data": {"k": "v"}})
    kube.patch("v1", "ConfigMap", "default", "w", {"metadata": {"labels": {"watched": "no"}}})
    kube.delete("v1", "ConfigMap", "default", "w")

    def replay(timeout: int, stop_after: int = 0, **selectors: str) -> list[tuple[str, int]]:
        events = []
        stream = watch.stream(core.list_namespaced_config_map, "default", resource_version=str(start),
                              timeout_seconds=timeout, **selectors)  # fmt: skip
        for event in stream:
            events.append((event["type"], int(event["object"].metadata.resource_version)))
            if len(events) == stop_after:
                watch.stop()
        return events

    assert replay(10, stop_after=4) == [("ADDED", start + 1), ("MODIFIED", start + 2),
                                        ("MODIFIED", start + 3), ("DELETED", start + 4)]  # fmt: skip
    # leaving the selected set is a DELETED event; what happens outside it is not reported,
    # and timeoutSeconds ends the stream
    assert replay(1, label_selector="watched=yes") == [("ADDED", start + 1), ("MODIFIED", start + 2),
                                                       ("DELETED", start + 3)]  # fmt: skip
    kube.create(configmap("first"))
    seen = []
    for event in watch.stream(core.list_namespaced_config_map, "default", timeout_seconds=10):
        seen.append((event["type"], event["object"].metadata.name))
        if event["object"].metadata.name == "first":
            kube.create(configmap("second"))
        else:
            watch.stop()
    assert seen == [("ADDED", "first"), ("ADDED", "second")]


def test_merge_patch_and_json_patch_with_a_failing_test_op(
    api: ApiClient, kube: KubeEmulator
) -> None:
    kube.apply_crd(WIDGETS)
    custom = Custom(api)
    widget = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 1},
    }
    custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", widget)
    merged = custom.patch_namespaced_custom_object(
        GROUP, "v1", "default", "widgets", "w", {"spec": {"color": "red", "size": None}}
    )
    assert merged["spec"] == {"color": "red"}
    path, rv = (
        f"/apis/{GROUP}/v1/namespaces/default/widgets/w",
        merged["metadata"]["resourceVersion"],
    )
    test_rv = {"op": "test", "path": "/metadata/resourceVersion", "value": rv}
    add = {"op": "add", "path": "/metadata/finalizers", "value": ["example.dev/keep"]}
    patched = raw(api, "PATCH", path, [test_rv, add], "application/json-patch+json")
    assert patched["metadata"]["finalizers"] == ["example.dev/keep"]
    with pytest.raises(ApiException) as stale:  # kopf's finalizer patch relies on this 422
        raw(api, "PATCH", path, [test_rv, {"op": "remove", "path": "/metadata/finalizers"}],
            "application/json-patch+json")  # fmt: skip
    assert stale.value.status == 422 and json.loads(stale.value.body)["reason"] == "Invalid"
    kept = kube.get(f"{GROUP}/v1", "Widget", "default", "w")
    assert kept is not None and kept["metadata"]["finalizers"] == ["example.dev/keep"]


def test_strategic_merge_patch_only_for_builtin_kinds(api: ApiClient, kube: KubeEmulator) -> None:
    apps = Apps(api)
    apps.create_namespaced_deployment("default", deployment("web", env=[
        {"name": "A", "value": "1"}, {"name": "B", "value": "2"}]))  # fmt: skip
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "main", "env": [{"name": "B", "value": "3"}]}]}
            }
        }
    }
    container = apps.patch_namespaced_deployment(
        "web", "default", patch
    ).spec.template.spec.containers[0]
    assert (container.image, [(e.name, e.value) for e in container.env]) == (
        "example/app:1", [("A", "1"), ("B", "3")])  # fmt: skip
    kube.apply_crd(WIDGETS)
    kube.create(
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"},
        }
    )
    with pytest.raises(ApiException) as refused:
        raw(api, "PATCH", f"/apis/{GROUP}/v1/namespaces/default/widgets/w", {"spec": {}},
            "application/strategic-merge-patch+json")  # fmt: skip
    assert (
        refused.value.status == 415
        and json.loads(refused.value.body)["reason"] == "UnsupportedMediaType"
    )


def test_status_subresource_isolation_and_generation(api: ApiClient, kube: KubeEmulator) -> None:
    kube.apply_crd(WIDGETS)
    custom = Custom(api)

    def state(obj: Obj) -> tuple[Any, Any, int]:
        return obj["spec"], obj.get("status"), obj["metadata"]["generation"]

    body = {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"size": 1}, "status": {"phase": "Forged"}}  # fmt: skip
    assert state(
        custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", body)
    ) == ({"size": 1}, None, 1)
    args = (GROUP, "v1", "default", "widgets", "w")
    main = custom.patch_namespaced_custom_object(
        *args, {"spec": {"size": 2}, "status": {"phase": "Ignored"}}
    )
    assert state(main) == ({"size": 2}, None, 2)
    assert state(
        custom.patch_namespaced_custom_object(*args, {"metadata": {"labels": {"a": "b"}}})
    ) == ({"size": 2}, None, 2)
    status = custom.patch_namespaced_custom_object_status(
        *args, {"status": {"phase": "Ready"}, "spec": {"size": 9}}
    )
    assert state(status) == ({"size": 2}, {"phase": "Ready"}, 2)
    # without a status subresource, status is part of the object and counts as a spec change
    kube.apply_crd(GADGETS)
    gadget = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gadget",
        "metadata": {"name": "g"},
        "spec": {},
        "status": {"on": True},
    }
    custom.create_cluster_custom_object(GROUP, "v1", "gadgets", gadget)
    changed = custom.patch_cluster_custom_object(
        GROUP, "v1", "gadgets", "g", {"status": {"on": False}}
    )
    assert state(changed) == ({}, {"on": False}, 2)


def test_update_with_a_stale_resource_version_conflicts(api: ApiClient) -> None:
    core = Core(api)
    rv = core.create_namespaced_config_map("default", configmap("c")).metadata.resource_version
    body = {"metadata": {"name": "c", "resourceVersion": rv}, "data": {"v": "1"}}
    assert core.replace_namespaced_config_map("c", "default", body).data == {"v": "1"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("c", "default", body)
    assert status_of(conflict) == (
        409,
        "Conflict",
        'Operation cannot be fulfilled on configmaps "c": the object has been modified; please apply your changes to the latest version and try again',
    )


def test_finalizers_hold_deletion_until_removed(api: ApiClient) -> None:
    core = Core(api)
    core.create_namespaced_config_map("default", configmap("held", finalizers=["example.dev/hold"]))
    core.delete_namespaced_config_map("held", "default")
    held = core.read_namespaced_config_map("held", "default")
    assert held.metadata.deletion_timestamp is not None and held.metadata.finalizers == [
        "example.dev/hold"
    ]
    with pytest.raises(ApiException) as late:
        core.patch_namespaced_config_map(
            "held", "default", {"metadata": {"finalizers": ["example.dev/more"]}}
        )
    assert status_of(late) == (  # objectmeta.go ValidateNoNewFinalizers
        422, "Invalid", 'ConfigMap "held" is invalid: metadata.finalizers: Forbidden: no new '
        'finalizers can be added if the object is being deleted, found new finalizers '
        '[]string{"example.dev/more"}')  # fmt: skip
    core.patch_namespaced_config_map(
        "held", "default", [{"op": "remove", "path": "/metadata/finalizers"}]
    )
    assert core.list_namespaced_config_map("default").items == []


def test_owner_references_are_garbage_collected(api: ApiClient, kube: KubeEmulator) -> None:
    owner, other = kube.create(configmap("owner")), kube.create(configmap("other"))
    child = kube.create(configmap("child", ownerReferences=[owner_ref(owner)]))
    kube.create({"apiVersion": "v1", "kind": "Secret", "stringData": {"k": "v"},
                 "metadata": {"name": "grandchild", "namespace": "default", "ownerReferences": [owner_ref(child)]}})  # fmt: skip
    kube.create(configmap("shared", ownerReferences=[owner_ref(owner), owner_ref(other)]))
    orphan = kube.create(configmap("orphan", ownerReferences=[owner_ref(other)]))
    assert kube.get("v1", "Secret", "default", "grandchild")["data"] == {"k": "dg=="}  # type: ignore[index]
    Core(api).delete_namespaced_config_map("owner", "default")
    assert [c["metadata"]["name"] for c in kube.list("v1", "ConfigMap")] == [
        "orphan",
        "other",
        "shared",
    ]
    assert kube.list("v1", "Secret") == []
    Core(api).delete_namespaced_config_map("other", "default", propagation_policy="Orphan")
    kept = kube.get("v1", "ConfigMap", "default", "orphan")
    assert kept is not None and "ownerReferences" not in kept["metadata"]
    assert kept["metadata"]["uid"] == orphan["metadata"]["uid"]
    assert [c["metadata"]["name"] for c in kube.list("v1", "ConfigMap")] == [
        "orphan"
    ]  # `shared` lost its last owner


def test_crds_posted_through_the_api_are_discovered_and_served(api: ApiClient) -> None:
    ext = kubernetes.client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(WIDGETS)
    established = ext.read_custom_resource_definition(f"widgets.{GROUP}").status.conditions
    assert [(c.type, c.status) for c in established] == [
        ("NamesAccepted", "True"),
        ("Established", "True"),
    ]
    assert GROUP in [g.name for g in kubernetes.client.ApisApi(api).get_api_versions().groups]
    listing = raw(api, "GET", f"/apis/{GROUP}/v1")
    assert listing["groupVersion"] == f"{GROUP}/v1"
    assert sorted((r["name"], r["kind"], r["namespaced"]) for r in listing["resources"]) == [
        ("widgets", "Widget", True), ("widgets/status", "Widget", True)]  # fmt: skip
    assert "namespaces" in [r.name for r in Core(api).get_api_resources().resources]
    Custom(api).create_namespaced_custom_object(  # a custom resource's body names its kind
        GROUP, "v1", "default", "widgets",
        {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w"}},
    )  # fmt: skip
    ext.delete_custom_resource_definition(f"widgets.{GROUP}")
    with pytest.raises(ApiException) as gone:
        Custom(api).list_namespaced_custom_object(GROUP, "v1", "default", "widgets")
    assert gone.value.status == 404


def test_namespaces_are_served_and_required(api: ApiClient, kube: KubeEmulator) -> None:
    core = Core(api)
    core.create_namespace({"metadata": {"name": "team"}})
    kube.create(configmap("inside", namespace="team"))
    assert [(n.metadata.name, n.status.phase) for n in core.list_namespace().items] == [
        ("default", "Active"), ("team", "Active")]  # fmt: skip
    with pytest.raises(ApiException) as missing:
        core.create_namespaced_config_map("nope", configmap("x", namespace="nope"))
    assert status_of(missing) == (404, "NotFound", 'namespaces "nope" not found')
    core.delete_namespace("team")
    assert [n.metadata.name for n in core.list_namespace().items] == ["default"]
    assert kube.list("v1", "ConfigMap", "team") == []


def test_kmock_reactions_take_priority_for_fault_injection(
    api: ApiClient, kube: KubeEmulator
) -> None:
    kube.api["list", kmock.resource("", "v1", "configmaps")][:1] << 503
    with pytest.raises(ApiException) as injected:
        Core(api).list_namespaced_config_map("default")
    assert injected.value.status == 503
    assert Core(api).list_namespaced_config_map("default").items == []  # served again
    assert [(c.verb, c.resource, c.code) for c in kube.requests] == [
        ("list", "configmaps", 503),
        ("list", "configmaps", 200),
    ]
