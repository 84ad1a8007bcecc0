"""Custom resources go through their CRD's structural schema as in k8s.io/apiextensions-apiserver:
pruning, nulls, defaults (on create, update, status writes and reads), OpenAPI validation and CEL
rules, with the API server's 422 messages. The ModelDeployment CRD is the project's own; `GIZMOS` is a
small CRD for what that one does not use (nullable, maxLength, maxItems, formats, a root CEL rule)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kmock import KubernetesError
from kubernetes.client import ApiClient, ApiException
from kubernetes.client import CustomObjectsApi as Custom

from tests.kube.conftest import GROUP
from tests.kube.emulator import KubeEmulator
from turnout_operator.crd import build_crd

Obj = dict[str, Any]
MD = "turnout.dev/v1alpha1"
MODEL = {"name": "m", "alias": "champion"}
PHASES = '"Pending", "Progressing", "Paused", "Healthy", "Degraded"'
GIZMO_SCHEMA = {
    "type": "object",
    "x-kubernetes-validations": [{"rule": "self.metadata.name.size() <= 10",
                                  "message": "gizmo names have at most 10 characters"}],
    "properties": {
        "spec": {"type": "object", "properties": {
            "note": {"type": "string", "nullable": True},
            "code": {"type": "string", "maxLength": 3},
            "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
            "since": {"type": "string", "format": "date-time"},
            "size": {"type": "integer", "minimum": 1},
        }},
    },
}  # fmt: skip
GIZMOS = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"gizmos.{GROUP}"},
    "spec": {"group": GROUP, "scope": "Namespaced",
             "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": GIZMO_SCHEMA}}]},
}  # fmt: skip


@pytest.fixture
def md(kube: KubeEmulator) -> KubeEmulator:
    kube.apply_crd(build_crd())
    return kube


def model_deployment(name: str = "web", **spec: Any) -> Obj:
    return {"apiVersion": MD, "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": "default"}, "spec": {"model": MODEL, **spec}}  # fmt: skip


def gizmo(name: str = "g", **spec: Any) -> Obj:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Gizmo",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}  # fmt: skip


def refusal(call: Any, *args: Any) -> str:
    with pytest.raises(KubernetesError) as refused:
        call(*args)
    assert (refused.value.status, refused.value.reason) == (422, "Invalid")
    return refused.value.message or ""


def test_unknown_fields_are_pruned_unless_preserved(md: KubeEmulator) -> None:
    """pruning/algorithm.go prune: undeclared fields go, x-kubernetes-preserve-unknown-fields keeps
    them; the root's apiVersion/kind/metadata are never pruned."""
    created = md.create(model_deployment(
        colour="blue", template={"resources": {"limits": {"cpu": "1"}}, "sidecars": []}))  # fmt: skip
    assert "colour" not in created["spec"] and "sidecars" not in created["spec"]["template"]
    assert created["spec"]["template"]["resources"] == {"limits": {"cpu": "1"}}
    status = md.patch(MD, "ModelDeployment", "default", "web",
                      {"status": {"phase": "Healthy", "mood": "happy"}}, subresource="status")  # fmt: skip
    assert "mood" not in status["status"]


def test_nulls_and_defaults(md: KubeEmulator, api: ApiClient) -> None:
    """defaulting/prunenulls.go PruneNonNullableNullsWithoutDefaults drops a null that is neither
    nullable nor defaulted; defaulting/algorithm.go Default gives absent members, and nulls of
    non-nullable ones, their default, on create, update and status writes."""
    created = md.create(
        model_deployment(replicas=None, registry={"trackingUri": None}, paused=None)
    )
    spec = created["spec"]
    assert (spec["replicas"], spec["registry"], spec["paused"]) == (
        2,
        {"pollIntervalSeconds": 60},
        False,
    )
    assert spec["strategy"]["blueGreen"] == {
        "autoPromotionEnabled": True, "autoPromotionSeconds": 0, "previewReplicaCount": 1,
        "scaleDownDelaySeconds": 30, "abortScaleDownDelaySeconds": 30,
        "progressDeadlineSeconds": 600, "smokeTest": True}  # fmt: skip
    updated = md.patch(MD, "ModelDeployment", "default", "web", {"spec": {"strategy": None}})
    assert updated["spec"]["strategy"] == spec["strategy"]  # removed, defaulted again
    # what the operator writes: explicit nulls inside list items are pruned by the merge patch
    # (evanphx/json-patch), and the status gets its defaults
    patch = {"status": {"phase": "Healthy", "history": [
        {"version": "1", "color": "blue", "outcome": "Promoted", "retiredAt": None}]}}  # fmt: skip
    Custom(api).patch_namespaced_custom_object_status(
        "turnout.dev", "v1alpha1", "default", "modeldeployments", "web", patch
    )
    status = md.get(MD, "ModelDeployment", "default", "web")["status"]  # type: ignore[index]
    assert status == {"phase": "Healthy", "message": "", "rejectedVersions": [], "endpoints": {},
                      "conditions": [], "scaleDowns": [], "routes": [], "history": [
                          {"version": "1", "color": "blue", "outcome": "Promoted", "reason": ""}]}  # fmt: skip
    md.apply_crd(GIZMOS)
    assert md.create(gizmo(note=None))["spec"] == {"note": None}  # nullable: kept
    message = refusal(md.create, gizmo("h", tags=["a", None]))  # null list items are not pruned
    assert message == ('Gizmo.example.dev "h" is invalid: [spec.tags[1]: Invalid value: "null": '
                       'spec.tags[1] in body must be of type string: "null", <nil>: Invalid value: '
                       "null: some validation rules were not checked because the object was invalid; "
                       "correct the existing errors to complete validation]")  # fmt: skip


def test_defaults_apply_on_read_from_storage(md: KubeEmulator) -> None:
    """customresource_handler.go: the storage codec decodes with unstructuredDefaulter too, so a
    default added to the schema shows on objects stored before it."""
    md.apply_crd(GIZMOS)
    md.create(gizmo())
    crd = copy.deepcopy(GIZMOS)
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "size"
    ]["default"] = 3
    md.apply_crd(crd)
    assert md.get(f"{GROUP}/v1", "Gizmo", "default", "g")["spec"] == {"size": 3}  # type: ignore[index]


def test_openapi_validation_messages(md: KubeEmulator) -> None:
    """kube-openapi validate.SchemaValidator + validation.go kubeOpenAPIResultToFieldErrors:
    type -> TypeInvalid, enum -> NotSupported, required -> Required, maxLength -> TooLong, maxItems
    -> TooMany, the rest -> Invalid with kube-openapi's own sentence."""
    name = 'ModelDeployment.turnout.dev "web" is invalid'
    assert refusal(md.create, model_deployment(replicas=0, model={"name": "m", "version": "v1"})) == (
        f"{name}: [spec.model.version: Invalid value: \"v1\": spec.model.version in body should match "
        "'^[0-9]+$', spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or "
        "equal to 1]")  # fmt: skip
    assert refusal(md.create, model_deployment(replicas="two")) == (
        f'{name}: [spec.replicas: Invalid value: "string": spec.replicas in body must be of type '
        'integer: "string", <nil>: Invalid value: null: some validation rules were not checked '
        "because the object was invalid; correct the existing errors to complete validation]")  # fmt: skip
    no_model = model_deployment()
    no_model["spec"] = {"replicas": 1}
    assert refusal(md.create, no_model).startswith(f"{name}: [spec.model: Required value, <nil>:")
    md.apply_crd(GIZMOS)
    assert refusal(md.create, gizmo(code="abcd", tags=["a", "b", "c"], since="yesterday", size=0)) == (
        'Gizmo.example.dev "g" is invalid: [spec.code: Too long: may not be more than 3 bytes, '
        "spec.since: Invalid value: \"yesterday\": spec.since in body must be of type date-time: "
        '"yesterday", spec.size: Invalid value: 0: spec.size in body should be greater than or equal '
        "to 1, spec.tags: Too many: 3: must have at most 2 items, <nil>: Invalid value: null: some "
        "validation rules were not checked because the object was invalid; correct the existing "
        "errors to complete validation]")  # fmt: skip
    md.create(gizmo(code="abc", tags=["a", "b"], since="2026-01-02T03:04:05Z", size=1))


def test_cel_rules(md: KubeEmulator) -> None:
    """cel/validation.go: a failing rule is field.Invalid at the rule's node, the value left out for
    objects; at the root `self.metadata.name` is readable (model.WithTypeAndObjectMeta)."""
    both = model_deployment(model={"name": "m", "alias": "a", "version": "3"})
    assert refusal(md.create, both) == (
        'ModelDeployment.turnout.dev "web" is invalid: spec.model: Invalid value: spec.model needs '
        "exactly one of version, alias or stage")  # fmt: skip
    md.apply_crd(GIZMOS)
    assert refusal(md.create, gizmo("eleven-char")) == (
        'Gizmo.example.dev "eleven-char" is invalid: <nil>: Invalid value: gizmo names have at most 10 '
        "characters")  # fmt: skip
    md.create(gizmo("ten-chars0"))


def test_the_list_library_s_sum_is_evaluated(md: KubeEmulator) -> None:
    """`<list>.sum()` (Kubernetes' CEL list library): the annotations' size rule of the
    ModelDeployment counts keys and values, and refuses what passes the limit."""
    md.create(model_deployment("small", template={"podAnnotations": {"a": "bc"}}))
    big = {f"k{i}": "v" * 4000 for i in range(66)}  # 66 x (2 or 3 + 4000) > 261120
    message = refusal(md.create, model_deployment("big", template={"podAnnotations": big}))
    assert message == (
        'ModelDeployment.turnout.dev "big" is invalid: spec.template.podAnnotations: Invalid value: '
        'pod annotations may total at most 261120 characters (keys and values; the API '
        "server allows 256 KiB per object, the operator adds its own)")  # fmt: skip


def test_status_writes_are_validated_against_the_status_schema(
    md: KubeEmulator, api: ApiClient
) -> None:
    """status_strategy.go ValidateUpdate: the status alone, against its schema (field paths under
    `status`, kube-openapi's sentences relative to it), with the CEL rules of the whole object."""
    md.create(model_deployment())
    custom, args = Custom(api), ("turnout.dev", "v1alpha1", "default", "modeldeployments", "web")
    with pytest.raises(ApiException) as refused:
        custom.patch_namespaced_custom_object_status(*args, {"status": {
            "phase": "Bogus", "observedGeneration": "1", "history": [{"version": "1"}]}})  # fmt: skip
    body = json.loads(refused.value.body)
    assert (refused.value.status, body["message"]) == (422, (
        'ModelDeployment.turnout.dev "web" is invalid: [status.history[0].color: Required value, '
        'status.history[0].outcome: Required value, status.observedGeneration: Invalid value: '
        '"string": observedGeneration in body must be of type integer: "string", status.phase: '
        f'Unsupported value: "Bogus": supported values: {PHASES}, <nil>: Invalid value: null: some '
        "validation rules were not checked because the object was invalid; correct the existing "
        "errors to complete validation]"))  # fmt: skip
    assert [c["field"] for c in body["details"]["causes"]][:4] == [
        "status.history[0].color",
        "status.history[0].outcome",
        "status.observedGeneration",
        "status.phase",
    ]
    assert md.get(MD, "ModelDeployment", "default", "web").get("status") is None  # type: ignore[union-attr]


def test_unchanged_invalid_values_are_ratcheted(md: KubeEmulator) -> None:
    """validation/ratcheting.go (CRDValidationRatcheting, GA in 1.33): after a schema tightens, an
    update that leaves an invalid value as it was is accepted; changing it to another invalid value
    is not."""
    md.apply_crd(GIZMOS)
    md.create(gizmo(code="abc", size=5))
    crd = copy.deepcopy(GIZMOS)
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]
    props["size"]["maximum"] = 4
    md.apply_crd(crd)
    md.patch(f"{GROUP}/v1", "Gizmo", "default", "g", {"spec": {"code": "xyz"}})  # size untouched
    assert refusal(md.patch, f"{GROUP}/v1", "Gizmo", "default", "g", {"spec": {"size": 6}}) == (
        'Gizmo.example.dev "g" is invalid: spec.size: Invalid value: 6: spec.size in body should be '
        "less than or equal to 4")  # fmt: skip
