"""The project's CRD (crds/) on a real API server: its CEL rule, defaults and pruning are applied by
Kubernetes itself, and agree with the operator's typed spec (turnout_operator.domain.spec), from
which the CRD is generated: over generated specs, the server accepts exactly what the typed spec
accepts, and stores exactly what the typed spec fills in."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.real import controlplane as cp
from turnout_operator.domain.spec import API_VERSION, KIND, PLURAL, ModelDeploymentSpec

pytestmark = pytest.mark.real

NAMESPACE = "crd-tests"
CEL_MESSAGE = "spec.model needs exactly one of version, alias or stage"
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


def collection(namespace: str = NAMESPACE) -> str:
    return f"/apis/{API_VERSION}/namespaces/{namespace}/{PLURAL}"


def manifest(name: str, spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": spec,
        **extra,
    }


@pytest.fixture(scope="module")
def server(control_plane: cp.ControlPlane, crd: dict[str, Any]) -> Any:
    with control_plane.http() as client:
        created = client.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}})
        assert created.status_code in (201, 409), created.text
        yield client


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    """ModelDeployment specs around the schema's edges: which of version/alias/stage, patterns,
    minimums and maximums, and sections left out for defaulting to fill in."""
    sections: dict[str, Any] = {
        "model": {
            "name": draw(st.sampled_from(["iris", "", "a/b"])),
            "version": draw(optional(st.sampled_from(["1", "42", "v1", "", "1.0"]))),
            "alias": draw(optional(st.sampled_from(["champion", ""]))),
            "stage": draw(optional(st.sampled_from(["Production", ""]))),
        },
        "replicas": draw(optional(st.integers(-1, 101))),
        "registry": draw(optional(st.fixed_dictionaries({}, optional={
            "pollIntervalSeconds": st.integers(0, 10),
            "trackingUri": st.sampled_from(["http://mlflow:5000", ""]),
        }))),
        "strategy": draw(optional(st.fixed_dictionaries({}, optional={
            "blueGreen": st.fixed_dictionaries({}, optional={
                "autoPromotionEnabled": st.booleans(),
                "previewReplicaCount": st.integers(-1, 2),
                "progressDeadlineSeconds": st.integers(5, 15),
                "scaleDownDelaySeconds": st.integers(-1, 1),
            }),
        }))),
        "monitoring": draw(optional(st.fixed_dictionaries({}, optional={
            "drift": st.fixed_dictionaries({}, optional={
                "enabled": st.booleans(), "windowSize": st.integers(15, 25),
            }),
        }))),
        "template": draw(optional(st.fixed_dictionaries({}, optional={
            "image": st.just("turnout-serve:dev"),
            "podLabels": st.dictionaries(st.sampled_from(["team", "tier"]), st.just("x"), max_size=2),
        }))),
        "auth": draw(optional(st.fixed_dictionaries({}, optional={"tokenSecret": st.just("tokens")}))),
        "paused": draw(optional(st.booleans())),
    }  # fmt: skip
    sections["model"] = {k: v for k, v in sections["model"].items() if v is not None}
    return {k: v for k, v in sections.items() if v is not None}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs())
def test_the_server_accepts_and_defaults_exactly_as_the_typed_spec(
    server: httpx.Client, spec: dict[str, Any]
) -> None:
    # a server-side dry run: admission, validation (schema + CEL) and defaulting, nothing stored
    answer = server.post(collection(), params={"dryRun": "All"}, json=manifest("generated", spec))
    try:
        expected: dict[str, Any] | None = ModelDeploymentSpec.model_validate(spec).to_api()
    except ValidationError:
        expected = None
    if expected is None:
        assert answer.status_code == 422, (spec, answer.text)
        assert answer.json()["reason"] == "Invalid"
    else:
        assert answer.status_code == 201, (spec, answer.text)
        assert answer.json()["spec"] == expected


@pytest.mark.parametrize(
    ("chosen", "accepted"),
    [
        ((), False),
        (("version",), True),
        (("alias",), True),
        (("stage",), True),
        (("version", "alias"), False),
        (("version", "stage"), False),
        (("alias", "stage"), False),
        (("version", "alias", "stage"), False),
    ],
)
def test_the_cel_rule_needs_exactly_one_of_version_alias_or_stage(
    server: httpx.Client, chosen: tuple[str, ...], accepted: bool
) -> None:
    values = {"version": "3", "alias": "champion", "stage": "Production"}
    model = {"name": "iris", **{field: values[field] for field in chosen}}
    answer = server.post(
        collection(), params={"dryRun": "All"}, json=manifest("cel", {"model": model})
    )
    if accepted:
        assert answer.status_code == 201, answer.text
        return
    assert answer.status_code == 422
    assert answer.json()["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": f"Invalid value: {CEL_MESSAGE}",
            "field": "spec.model",
        }
    ]


def test_unknown_fields_are_pruned_with_a_warning_except_where_the_schema_keeps_them(
    server: httpx.Client,
) -> None:
    spec = {
        "model": {"name": "iris", "version": "1", "color": "blue"},
        "strategy": {"blueGreen": {"bogus": True}},
        "template": {
            "resources": {"limits": {"memory": "1Gi"}, "anything": {"kept": 1}},
            "env": [{"name": "A", "value": "1", "custom": "kept"}],
        },
        "unknownTopLevel": 1,
    }
    answer = server.post(collection(), json=manifest("pruned", spec, extraRoot="dropped"))
    assert answer.status_code == 201, answer.text
    try:
        stored = server.get(f"{collection()}/pruned").json()
        assert "extraRoot" not in stored
        assert stored["spec"]["model"] == {"name": "iris", "version": "1"}
        assert stored["spec"]["strategy"]["blueGreen"] == {
            "autoPromotionEnabled": True, "autoPromotionSeconds": 0, "previewReplicaCount": 1,
            "scaleDownDelaySeconds": 30, "abortScaleDownDelaySeconds": 30,
            "progressDeadlineSeconds": 600, "smokeTest": True,
        }  # fmt: skip
        assert stored["spec"]["template"] == {
            "resources": {"limits": {"memory": "1Gi"}, "anything": {"kept": 1}},
            "env": [{"name": "A", "value": "1"}],  # an EnvVar has a schema: `custom` is pruned
        }
        assert "unknownTopLevel" not in stored["spec"]
        assert sorted(answer.headers.get_list("warning")) == sorted(
            f'299 - "unknown field \\"{path}\\""'
            for path in ("extraRoot", "spec.model.color", "spec.strategy.blueGreen.bogus",
                         "spec.template.env[0].custom", "spec.unknownTopLevel")
        )  # fmt: skip
        strict = server.post(collection(), params={"fieldValidation": "Strict"},
                          json=manifest("strict", spec))  # fmt: skip
        assert strict.status_code == 400
        assert strict.json()["reason"] == "BadRequest"
    finally:
        server.delete(f"{collection()}/pruned")


def test_merge_patch_semantics_and_validation_on_update(server: httpx.Client) -> None:
    created = server.post(
        collection(),
        json=manifest("patched", {"model": {"name": "iris", "version": "1"}, "replicas": 3}),
    )
    assert created.status_code == 201, created.text
    url = f"{collection()}/patched"
    try:
        # null removes a key; the rest of the object is merged
        moved = server.patch(
            url,
            headers=MERGE_PATCH,
            json={"spec": {"model": {"version": None, "alias": "champion"}}},
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["spec"]["model"] == {"name": "iris", "alias": "champion"}
        assert moved.json()["spec"]["replicas"] == 3
        assert moved.json()["metadata"]["generation"] == 2
        # the CEL rule holds on update too
        both = server.patch(
            url, headers=MERGE_PATCH, json={"spec": {"model": {"stage": "Production"}}}
        )
        assert both.status_code == 422
        assert both.json()["details"]["causes"][0]["field"] == "spec.model"
        # a removed field with a default gets its default back
        reset = server.patch(url, headers=MERGE_PATCH, json={"spec": {"replicas": None}})
        assert reset.json()["spec"]["replicas"] == 2
        # a list is replaced whole by a merge patch
        server.patch(
            url,
            headers=MERGE_PATCH,
            json={"spec": {"template": {"env": [{"name": "A"}, {"name": "B"}]}}},
        )
        replaced = server.patch(
            url, headers=MERGE_PATCH, json={"spec": {"template": {"env": [{"name": "C"}]}}}
        )
        assert replaced.json()["spec"]["template"]["env"] == [{"name": "C"}]
        # status is a subresource: the main resource ignores it, /status writes only it
        ignored = server.patch(url, headers=MERGE_PATCH, json={"status": {"phase": "Healthy"}})
        assert ignored.status_code == 200
        assert "status" not in ignored.json()
        written = server.patch(
            f"{url}/status",
            headers=MERGE_PATCH,
            json={"status": {"phase": "Healthy"}, "spec": {"replicas": 9}},
        )
        assert written.status_code == 200, written.text
        assert (written.json()["status"]["phase"], written.json()["spec"]["replicas"]) == (
            "Healthy",
            2,
        )
        bad_phase = server.patch(
            f"{url}/status", headers=MERGE_PATCH, json={"status": {"phase": "Sleeping"}}
        )
        assert bad_phase.status_code == 422
    finally:
        server.delete(url)
