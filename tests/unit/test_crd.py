"""The ModelDeployment CRD: generated from the models, structural, and agreeing with them.

What users rely on: the committed CRD and docs are what the code generates; the API server
accepts the schema (structural, pruning-safe defaults); it accepts and rejects the same
ModelDeployments as the pydantic models (field checks here with jsonschema, the exactly-one rule
with a real CEL evaluator); and the defaults it fills in are the models' own.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import celpy
import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from tests.conftest import ROOT
from turnout_operator.crd import CRD_FILE, build_crd, crd_yaml, openapi_schema, splice_reference
from turnout_operator.domain.kube_rules import (
    ENV_VAR_NAME,
    LABEL_VALUE,
    TOTAL_ANNOTATION_SIZE_LIMIT,
    anchored,
    annotations_size,
)
from turnout_operator.domain.manifests import Defaults, build_deployment
from turnout_operator.domain.spec import (
    POD_ANNOTATIONS_BUDGET,
    TUNABLE_ENV_NAMES,
    Autoscaling,
    EnvVar,
    ModelDeploymentSpec,
    ModelRef,
    PayloadLog,
)
from turnout_operator.domain.status import (
    Condition,
    HistoryEntry,
    ModelDeploymentStatus,
    Rollout,
    ScaleDown,
)
from turnout_operator.domain.validation import name_problems

CRD = build_crd()
[VERSION] = CRD["spec"]["versions"]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]
STATUS = SCHEMA["properties"]["status"]
MINIMAL = {"model": {"name": "m", "alias": "a"}}
ENV_NAME = re.compile(anchored(ENV_VAR_NAME))


# --- helpers: what the API server does with a structural schema ---------------------------------

TYPES = {"object", "array", "string", "integer", "number", "boolean"}
# The OpenAPI v3 subset a CRD schema may use (apiextensions.k8s.io/v1 JSONSchemaProps).
KEYS = {
    "type", "format", "description", "default", "enum", "nullable", "properties", "required",
    "items", "additionalProperties", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "minLength", "maxLength", "pattern", "minItems", "maxItems", "minProperties",
    "maxProperties", "title", "example", "externalDocs",
}  # fmt: skip


def structural_errors(node: dict[str, Any], path: str = "") -> list[str]:
    """Why `node` is not a structural schema with pruning-safe defaults (empty when it is)."""
    errors = [
        f"{path or '.'}: {key!r} is not allowed"
        for key in node
        if key not in KEYS and not key.startswith("x-kubernetes-")
    ]
    free = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
        "x-kubernetes-int-or-string"
    )
    if node.get("type") not in TYPES and not free:
        errors.append(f"{path or '.'}: no type")
    if node.get("additionalProperties") is False:
        errors.append(f"{path}: additionalProperties: false (unknown fields are pruned instead)")
    if "properties" in node and "additionalProperties" in node:
        errors.append(f"{path}: both properties and additionalProperties")
    if "default" in node and node["default"] is None and not node.get("nullable"):
        errors.append(f"{path}: default null without nullable")
    empty_object = node.get("type") == "object" and not {
        "properties",
        "additionalProperties",
    } & set(node)
    if empty_object and not free and path != ".metadata":
        errors.append(f"{path}: an object with no fields: everything in it would be pruned")
    for name, sub in node.get("properties", {}).items():
        errors += structural_errors(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        errors += structural_errors(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        errors += structural_errors(node["items"], f"{path}[]")
    return errors


def as_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3 CRD schema as JSON schema (2020-12), rejecting unknown fields like
    `kubectl apply` does (strict field validation) instead of pruning them."""
    out = {k: v for k, v in node.items() if k in KEYS - {"nullable"}}
    if "properties" in node:
        out["properties"] = {k: as_json_schema(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out[key] = as_json_schema(node[key])
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    for bound in ("Minimum", "Maximum"):  # OpenAPI 3.0's boolean form
        if node.get(f"exclusive{bound}") is True:
            out[f"exclusive{bound}"] = out.pop(bound.lower())
    return out


def errors(node: dict[str, Any], document: Any) -> list[tuple[str, str]]:
    found = Draft202012Validator(as_json_schema(node)).iter_errors(document)
    return sorted((e.json_path, str(e.validator)) for e in found)


def pruned(value: Any, node: dict[str, Any]) -> Any:
    """`value` as stored: unknown fields dropped, as the API server prunes them."""
    if isinstance(value, dict) and "properties" in node:
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return value
        props = node["properties"]
        return {k: pruned(v, props[k]) for k, v in value.items() if k in props}
    if isinstance(value, list) and "items" in node:
        return [pruned(item, node["items"]) for item in value]
    return value


def defaulted(value: Any, node: dict[str, Any]) -> Any:
    """`value` with the schema's defaults filled in top-down, into defaulted values too, as the
    API server does."""
    if isinstance(value, dict) and "properties" in node:
        props = node["properties"]
        filled = {
            **{k: copy.deepcopy(p["default"]) for k, p in props.items() if "default" in p},
            **value,
        }
        return {k: defaulted(v, props[k]) if k in props else v for k, v in filled.items()}
    if isinstance(value, list) and "items" in node:
        return [defaulted(item, node["items"]) for item in value]
    return value


def nodes(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        found += nodes(sub, f"{path}.{name}")
    if "items" in node:
        found += nodes(node["items"], f"{path}[]")
    return found


def full_status() -> ModelDeploymentStatus:
    return ModelDeploymentStatus(
        phase="Progressing",
        observed_generation=3,
        desired_version="4",
        active_version="3",
        active_color="blue",
        preview_version="4",
        preview_color="green",
        model_uri="models:/m/3",
        run_id="r3",
        rejected_versions=["2"],
        history=[
            HistoryEntry(
                version="3", color="blue", promoted_at="2024-01-01T00:00:00Z", outcome="Promoted"
            )
        ],
        conditions=[
            Condition(
                type="Ready",
                status="True",
                reason="Available",
                last_transition_time="2024-01-01T00:00:00Z",
                observed_generation=3,
            )
        ],
        rollout=Rollout(
            version="4",
            color="green",
            model_uri="models:/m/4",
            started_at="2024-01-02T00:00:00Z",
            smoke="Passed",
        ),
        scale_downs=[
            ScaleDown(color="green", version="2", at="2024-01-01T00:05:00Z", after="Abort")
        ],
        resolved_at="2024-01-02T00:00:00Z",
    )


def parsed_strictly(spec: dict[str, Any]) -> ModelDeploymentSpec:
    """The model's verdict as strict as the API server's: lax mode would turn "60" into 60."""
    return ModelDeploymentSpec.model_validate_json(json.dumps(spec), strict=True)


def docs_example() -> dict[str, Any]:
    text = (ROOT / "docs/crd.md").read_text()
    [manifest] = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    return yaml.safe_load(manifest)


# --- generated files ------------------------------------------------------------------------------


def test_committed_crd_is_the_generated_one() -> None:
    committed = (ROOT / CRD_FILE).read_text()
    assert committed == crd_yaml(), (
        f"{CRD_FILE} is stale: regenerate it with "
        f"`.venv/bin/python -m turnout_operator.crd > {CRD_FILE}`"
    )
    assert yaml.safe_load(committed) == CRD


def test_docs_carry_the_generated_reference() -> None:
    document = (ROOT / "docs/crd.md").read_text()
    assert splice_reference(document) == document, (
        "docs/crd.md is stale: regenerate its reference with "
        "`.venv/bin/python -m turnout_operator.crd --update-docs docs/crd.md`"
    )


def test_names_and_printer_columns() -> None:
    assert CRD["metadata"]["name"] == "modeldeployments.turnout.dev"
    assert CRD["spec"]["scope"] == "Namespaced"
    assert CRD["spec"]["names"] == {
        "kind": "ModelDeployment",
        "listKind": "ModelDeploymentList",
        "plural": "modeldeployments",
        "singular": "modeldeployment",
        "shortNames": ["mdep"],
        "categories": ["turnout"],
    }
    assert VERSION["subresources"] == {"status": {}, "scale": {
        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector"}}  # fmt: skip
    columns = [(c["name"], c["type"], c["jsonPath"]) for c in VERSION["additionalPrinterColumns"]]
    assert columns == [
        ("Model", "string", ".spec.model.name"),
        ("Desired", "string", ".status.desiredVersion"),
        ("Active", "string", ".status.activeVersion"),
        ("Color", "string", ".status.activeColor"),
        ("Phase", "string", ".status.phase"),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        ("Step", "string", '.status.conditions[?(@.type=="Progressing")].reason'),
        ("URL", "string", ".status.url"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    # A renamed field must not leave a column silently empty.
    known = {path for path, _ in nodes(SCHEMA)}
    for _, _, path in columns[:-1]:
        assert re.sub(r"\[\?\(@\.type==\"\w+\"\)\]", "[]", path) in known


# --- structural -----------------------------------------------------------------------------------


def test_schema_is_structural() -> None:
    assert structural_errors(SCHEMA) == []


NOT_STRUCTURAL = [
    ({"type": "object", "properties": {"a": {}}}, [".a: no type"]),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}, [".a: '$ref' is not allowed", ".a: no type"]),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}, [": additionalProperties: false (unknown fields are pruned instead)", ": both properties and additionalProperties"]),
    ({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}, [".a: 'anyOf' is not allowed", ".a: no type"]),
    ({"type": "object", "properties": {"a": {"type": "string", "default": None}}}, [".a: default null without nullable"]),
    ({"type": "object", "properties": {"a": {"type": "object"}}}, [".a: an object with no fields: everything in it would be pruned"]),
    ({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}, []),
]  # fmt: skip


@pytest.mark.parametrize(("node", "expected"), NOT_STRUCTURAL)
def test_structural_checker(node: dict[str, Any], expected: list[str]) -> None:
    assert structural_errors(node) == expected


class Recursive(BaseModel):
    children: list[Recursive] = []


class IntOrString(BaseModel):
    port: int | str


class Unique(BaseModel):
    tags: set[str]


@pytest.mark.parametrize(
    ("model", "message"),
    [(Recursive, "Recursive is recursive"), (IntOrString, "no structural schema for the union"), (Unique, "'uniqueItems' has no place")],
)  # fmt: skip
def test_what_a_structural_schema_cannot_say_fails_loudly(
    model: type[BaseModel], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        openapi_schema(model)


def test_defaults_are_valid_and_survive_pruning() -> None:
    with_defaults = [(path, node) for path, node in nodes(SCHEMA) if "default" in node]
    assert len(with_defaults) == 106
    for path, node in with_defaults:
        assert errors(node, node["default"]) == [], path
        assert pruned(node["default"], node) == node["default"], path


def test_free_form_fields_keep_their_content() -> None:
    template = SPEC["properties"]["template"]["properties"]
    free = {"x-kubernetes-preserve-unknown-fields": True, "type": "object"}
    for name in ("resources", "affinity"):
        assert free.items() <= template[name].items(), name
    for name in ("tolerations", "imagePullSecrets"):
        assert template[name]["items"] == free, name
    assert free.items() <= template["env"]["items"]["properties"]["valueFrom"].items()
    label_value = {"type": "string", "maxLength": 63, "pattern": anchored(LABEL_VALUE)}
    for name in ("nodeSelector", "podLabels"):
        assert template[name]["additionalProperties"] == label_value, name
    assert template["podAnnotations"]["additionalProperties"] == {"type": "string"}
    # nothing in the status is free-form: an unknown field there is a bug, and is pruned
    assert not [path for path, n in nodes(STATUS) if "x-kubernetes-preserve-unknown-fields" in n]


# --- the schema accepts and rejects what the models do ------------------------------------------

FULL_LOG = {"sampleRate": 0.5, "redact": ["ssn"], "hash": ["email"], "hashSaltSecret": "salt",
            "sink": "http", "url": "http://receiver/log", "format": "cloudevents"}  # fmt: skip
GOOD = [
    MINIMAL,
    {"model": {"name": "m", "version": "3"}, "replicas": 1, "paused": True},
    {
        "model": {"name": "m", "stage": "Production"},
        "registry": {"trackingUri": "http://mlflow:5000", "pollIntervalSeconds": 5},
        "template": {
            "image": "turnout-serve:1",
            "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": 1}},
            "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            "nodeSelector": {"pool": "cpu"},
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}},
            "serviceAccountName": "sa",
            "imagePullSecrets": [{"name": "regcred"}],
            "podLabels": {"team": "ml"},
            "podAnnotations": {"prometheus.io/scrape": "true"},
        },
        "strategy": {"blueGreen": {"autoPromotionEnabled": False, "scaleDownDelaySeconds": 0}},
        "monitoring": {"drift": {"enabled": False, "windowSize": 20}},
        "auth": {"tokenSecret": "tokens"},
    },
    {
        **MINIMAL,
        "monitoring": {"payloadLog": FULL_LOG},
        "rateLimit": {"requestsPerSecond": 0.5, "burst": 3},
    },
    {
        "model": {"name": "m", "alias": "champion"},
        "autoscaling": {
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": {
                "cpuUtilization": 70,
                "pods": {"name": "turnout_inference_in_flight", "averageValue": "500m"},
            },
        },
        "disruptionBudget": {"minAvailable": 1},
        "template": {
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "DoNotSchedule",
                }
            ]
        },
    },
    {"model": {"name": "m", "version": "1"}, "autoscaling": {"maxReplicas": 4}},  # CPU at 80%
]
BAD = [
    ({"replicas": 2}, [("$", "required")]),
    ({**MINIMAL, "replicas": -1}, [("$.replicas", "minimum")]),
    ({**MINIMAL, "replicas": 101}, [("$.replicas", "maximum")]),
    ({**MINIMAL, "registry": {"pollIntervalSeconds": "60"}}, [("$.registry.pollIntervalSeconds", "type")]),
    ({**MINIMAL, "registry": {"pollIntervalSeconds": 1}}, [("$.registry.pollIntervalSeconds", "minimum")]),
    ({"model": {"name": "m", "version": "v3"}}, [("$.model.version", "pattern")]),
    ({"model": {"name": "", "alias": "a"}}, [("$.model.name", "minLength"), ("$.model.name", "pattern")]),
    ({"model": {"name": "a?b", "alias": "a"}}, [("$.model.name", "pattern")]),
    ({**MINIMAL, "registry": {"trackingUri": "mlflow:5000"}}, [("$.registry.trackingUri", "pattern")]),
    ({**MINIMAL, "registry": {"credentialsSecret": "My_Secret"}}, [("$.registry.credentialsSecret", "pattern")]),
    ({**MINIMAL, "registry": {"pollIntervalSeconds": 86401}}, [("$.registry.pollIntervalSeconds", "maximum")]),
    ({**MINIMAL, "template": {"env": [{"name": "1A", "value": "x"}]}}, [("$.template.env[0].name", "pattern")]),
    ({**MINIMAL, "template": {"env": [{"value": "x"}]}}, [("$.template.env[0]", "required")]),
    ({**MINIMAL, "template": {"podLabels": {"team": "x" * 64}}}, [("$.template.podLabels.team", "maxLength")]),
    ({**MINIMAL, "template": {"podLabels": {"team": "-ml"}}}, [("$.template.podLabels.team", "pattern")]),
    ({**MINIMAL, "template": {"nodeSelector": {f"k{i}": "v" for i in range(65)}}}, [("$.template.nodeSelector", "maxProperties")]),
    ({**MINIMAL, "template": {"serviceAccountName": "Serving"}}, [("$.template.serviceAccountName", "pattern")]),
    ({**MINIMAL, "auth": {"tokenSecret": "tokens.", }}, [("$.auth.tokenSecret", "pattern")]),
    ({**MINIMAL, "strategy": {"blueGreen": {"scaleDownDelaySeconds": 10**12}}}, [("$.strategy.blueGreen.scaleDownDelaySeconds", "maximum")]),
    ({**MINIMAL, "strategy": {"blueGreen": {"autoPromotionSeconds": 604801}}}, [("$.strategy.blueGreen.autoPromotionSeconds", "maximum")]),
    ({**MINIMAL, "strategy": {"blueGreen": {"abortScaleDownDelaySeconds": 10**12}}}, [("$.strategy.blueGreen.abortScaleDownDelaySeconds", "maximum")]),
    ({**MINIMAL, "strategy": {"blueGreen": {"progressDeadlineSeconds": 10**7}}}, [("$.strategy.blueGreen.progressDeadlineSeconds", "maximum")]),
    ({**MINIMAL, "replica": 3}, [("$", "additionalProperties")]),
    ({**MINIMAL, "template": {"nodeSelector": {"gpu": True}}}, [("$.template.nodeSelector.gpu", "type")]),
    ({**MINIMAL, "strategy": {"blueGreen": {"progressDeadlineSeconds": 5}}}, [("$.strategy.blueGreen.progressDeadlineSeconds", "minimum")]),
    ({**MINIMAL, "monitoring": {"payloadLog": {"sampleRate": 1.5}}}, [("$.monitoring.payloadLog.sampleRate", "maximum")]),
    ({**MINIMAL, "monitoring": {"payloadLog": {"sampleRate": 1, "redact": ["a,b"]}}}, [("$.monitoring.payloadLog.redact[0]", "pattern")]),
    ({**MINIMAL, "rateLimit": {"requestsPerSecond": 0}}, [("$.rateLimit.requestsPerSecond", "exclusiveMinimum")]),
    ({**MINIMAL, "rateLimit": {"burst": 5}}, [("$.rateLimit", "required")]),
    ({**MINIMAL, "autoscaling": {"minReplicas": 2}}, [("$.autoscaling", "required")]),
    ({**MINIMAL, "autoscaling": {"maxReplicas": 101}}, [("$.autoscaling.maxReplicas", "maximum")]),
    ({**MINIMAL, "autoscaling": {"maxReplicas": 3, "metrics": {"pods": {"averageValue": "four"}}}}, [("$.autoscaling.metrics.pods.averageValue", "pattern")]),
    ({**MINIMAL, "autoscaling": {"maxReplicas": 3, "metrics": {"cpuUtilization": 0}}}, [("$.autoscaling.metrics.cpuUtilization", "minimum")]),
    ({**MINIMAL, "disruptionBudget": {"minAvailable": -1}}, [("$.disruptionBudget.minAvailable", "minimum")]),
]  # fmt: skip


@pytest.mark.parametrize("spec", GOOD)
def test_good_specs_are_accepted_and_kept_whole(spec: dict[str, Any]) -> None:
    assert errors(SPEC, spec) == []
    assert pruned(spec, SPEC) == spec
    parsed_strictly(spec)


@pytest.mark.parametrize(("spec", "expected"), BAD)
def test_bad_specs_are_rejected_by_both(
    spec: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert errors(SPEC, spec) == expected
    with pytest.raises(ValidationError):
        parsed_strictly(spec)


def test_docs_example_is_a_valid_model_deployment() -> None:
    example = docs_example()
    assert errors(SCHEMA, example) == []
    assert ModelDeploymentSpec.model_validate(example["spec"]).model.alias == "champion"


def test_what_the_operator_writes_to_status_is_accepted_and_kept_whole() -> None:
    written = full_status().to_api()
    assert errors(STATUS, written) == []
    assert pruned(written, STATUS) == written


REF_FIELDS = {"version": "3", "alias": "champion", "stage": "Production"}


CHOSEN = [(), ("version",), ("alias",), ("stage",), ("version", "alias"), ("alias", "stage"), ("version", "stage"), ("version", "alias", "stage")]  # fmt: skip


@pytest.mark.parametrize("chosen", CHOSEN)
def test_cel_rule_allows_exactly_one_reference_like_the_model(chosen: tuple[str, ...]) -> None:
    ref = {"name": "m", **{k: REF_FIELDS[k] for k in chosen}}
    [rule] = SPEC["properties"]["model"]["x-kubernetes-validations"]
    assert rule["message"] == "spec.model needs exactly one of version, alias or stage"
    env = celpy.Environment()
    program = env.program(env.compile(rule["rule"]))
    allowed = program.evaluate({"self": celpy.json_to_cel(ref)})
    assert allowed == (len(chosen) == 1)
    if allowed:
        ModelRef.model_validate(ref)
    else:
        with pytest.raises(ValidationError, match="exactly one of version, alias or stage"):
            ModelRef.model_validate(ref)


# --- defaults: the API server's are the models' ---------------------------------------------------


@pytest.mark.parametrize("spec", GOOD)
def test_spec_defaults_are_the_models(spec: dict[str, Any]) -> None:
    assert defaulted(spec, SPEC) == ModelDeploymentSpec.model_validate(spec).to_api()


def test_minimal_spec_defaults_in_full() -> None:
    assert defaulted(MINIMAL, SPEC) == {
        "model": {"name": "m", "alias": "a"},
        "registry": {"pollIntervalSeconds": 60},
        "replicas": 2,
        "template": {"env": []},
        "strategy": {
            "blueGreen": {
                "autoPromotionEnabled": True,
                "autoPromotionSeconds": 0,
                "previewReplicaCount": 1,
                "scaleDownDelaySeconds": 30,
                "abortScaleDownDelaySeconds": 30,
                "progressDeadlineSeconds": 600,
                "smokeTest": True,
            }
        },
        "monitoring": {"drift": {"enabled": True, "windowSize": 1000}},
        "auth": {"tokenSecret": ""},
        "paused": False,
        "notifications": [],
        "service": {"type": "ClusterIP", "port": 80},
    }


def test_status_defaults_are_the_models() -> None:
    assert defaulted({}, STATUS) == ModelDeploymentStatus().to_api()
    sparse = {
        "history": [{"version": "3", "color": "blue", "outcome": "Promoted"}],
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "R", "lastTransitionTime": "t"}
        ],
        "rollout": {"version": "4", "color": "green", "modelUri": "u", "startedAt": "t"},
    }
    assert defaulted(sparse, STATUS) == ModelDeploymentStatus.model_validate(sparse).to_api()


# --- the CEL rules agree with the operator's own checks, over the class of input --------------

KUBE_LISTS = {"sum": lambda items: celpy.celtypes.IntType(sum(items))}  # Kubernetes' lists library


def cel(rule: dict[str, str], value: Any) -> bool:
    env = celpy.Environment()
    program = env.program(env.compile(rule["rule"]), functions=KUBE_LISTS)
    return bool(program.evaluate({"self": celpy.json_to_cel(value)}))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 100), st.integers(1, 100), st.booleans(), st.booleans())
def test_the_autoscaling_rules_admit_exactly_what_the_typed_spec_does(
    least: int, most: int, cpu: bool, pods: bool
) -> None:
    metrics = {**({"cpuUtilization": 70} if cpu else {}),
               **({"pods": {"averageValue": "4"}} if pods else {})}  # fmt: skip
    autoscaling = {"minReplicas": least, "maxReplicas": most, "metrics": metrics}
    node = SPEC["properties"]["autoscaling"]
    [bounds] = node["x-kubernetes-validations"]
    [some_metric] = node["properties"]["metrics"]["x-kubernetes-validations"]
    try:
        Autoscaling.model_validate(autoscaling)
        typed = True
    except ValidationError:
        typed = False
    admitted = cel(bounds, autoscaling) and cel(some_metric, metrics)
    assert admitted == typed == (least <= most and (cpu or pods))


NAME_ALPHABET = "abcxyz0189-.A_"


@settings(max_examples=300, deadline=None)
@given(st.text(NAME_ALPHABET, min_size=1, max_size=70) | st.sampled_from(["a" * 55, "a" * 56]))
def test_the_name_rule_admits_exactly_the_names_the_operator_can_build_objects_for(
    name: str,
) -> None:
    [rule] = SCHEMA["x-kubernetes-validations"]
    assert cel(rule, {"metadata": {"name": name}}) == (name_problems(name) == [])


ENV_NAMES = st.sampled_from(["", "TURNOUT_", "MLFLOW_", "turnout_", "X"]).flatmap(
    lambda prefix: st.builds(
        lambda rest: prefix + rest, st.text("AB_MODELURITRACKING", max_size=20)
    )
) | st.sampled_from(sorted(TUNABLE_ENV_NAMES | {"MLFLOW_TRACKING_URI", "TURNOUT_MODEL_URI"}))


@settings(max_examples=300, deadline=None)
@given(ENV_NAMES)
def test_the_env_rule_reserves_what_the_typed_spec_reserves(name: str) -> None:
    assume(ENV_NAME.match(name))
    [rule] = SPEC["properties"]["template"]["properties"]["env"]["items"][
        "x-kubernetes-validations"
    ]
    assert cel(rule, {"name": name, "value": "x"}) == _valid(EnvVar, {"name": name, "value": "x"})


def test_the_variables_left_to_users_are_turnout_serves_tunables() -> None:
    """Each exists in turnout-serve, and none is one the operator sets or a spec field governs."""
    from turnout_serving.settings import ServingSettings

    served = {f"TURNOUT_{field.upper()}" for field in ServingSettings.model_fields}
    assert served >= TUNABLE_ENV_NAMES
    # The pod's terminationGracePeriodSeconds is sized for the drain and the keep-alive close;
    # the admin token of shadow traffic is the operator's (a file from its Secret).
    governed = {
        "TURNOUT_AUTH_TOKENS",
        "TURNOUT_ADMIN_TOKEN",
        "TURNOUT_GRACEFUL_SHUTDOWN_SECONDS",
        "TURNOUT_KEEP_ALIVE_SECONDS",
    }
    assert served - TUNABLE_ENV_NAMES == governed | {
        e["name"] for e in operator_env(auth=True) if e["name"].startswith("TURNOUT_")
    }


def operator_env(auth: bool) -> list[dict[str, Any]]:
    """With `auth`, every optional feature that sets variables: auth, payload log, rate limit."""
    optional = {"monitoring": {"payloadLog": FULL_LOG}, "rateLimit": {"requestsPerSecond": 5}}
    spec = ModelDeploymentSpec.model_validate(
        {**MINIMAL, "auth": {"tokenSecret": "t" if auth else ""}, **(optional if auth else {})}
    )
    [container] = build_deployment(
        "m", "ns", "blue", "1", "models:/m/1", 1, spec, Defaults("image", "http://mlflow")
    )["spec"]["template"]["spec"]["containers"]
    env: list[dict[str, Any]] = container["env"]
    return env


def test_every_variable_the_operator_sets_is_reserved() -> None:
    spec = ModelDeploymentSpec.model_validate({**MINIMAL, "auth": {"tokenSecret": "tokens"}})
    [container] = build_deployment(
        "m", "ns", "blue", "1", "models:/m/1", 1, spec, Defaults("image", "http://mlflow")
    )["spec"]["template"]["spec"]["containers"]
    [rule] = SPEC["properties"]["template"]["properties"]["env"]["items"][
        "x-kubernetes-validations"
    ]
    for env in container["env"]:
        assert not cel(rule, {"name": env["name"]}), env["name"]
        assert not _valid(EnvVar, {"name": env["name"]}), env["name"]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(
    st.text("abc./-", min_size=1, max_size=20), st.integers(0, 140_000).map(lambda n: "v" * n),
    max_size=4,
))  # fmt: skip
def test_the_annotation_size_rule_leaves_room_for_the_operators_own(
    annotations: dict[str, str],
) -> None:
    """Whatever the rule admits, the pod template's annotations fit the API server's limit with
    the operator's added (ASCII: CEL counts characters, the API server bytes)."""
    rule = SPEC["properties"]["template"]["properties"]["podAnnotations"][
        "x-kubernetes-validations"
    ][0]
    total = annotations_size(annotations)
    assert cel(rule, annotations) == (total <= POD_ANNOTATIONS_BUDGET)
    spec = ModelDeploymentSpec.model_validate(
        {**MINIMAL, "template": {"podAnnotations": annotations}}
    )
    built = build_deployment("m", "ns", "blue", "1", "models:/m/1", 1, spec, Defaults("i", "u"))
    pod_annotations = built["spec"]["template"]["metadata"]["annotations"]
    if cel(rule, annotations):
        assert annotations_size(pod_annotations) <= TOTAL_ANNOTATION_SIZE_LIMIT


def _valid(model: type[BaseModel], value: dict[str, Any]) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True


PAYLOAD_LOGS = st.fixed_dictionaries(
    {"sampleRate": st.just(0.5)},
    optional={
        "redact": st.lists(st.sampled_from(["a", "b"]), max_size=2),
        "hash": st.lists(st.sampled_from(["b", "c"]), max_size=2),
        "hashSaltSecret": st.sampled_from(["", "salt"]),
        "sink": st.sampled_from(["stdout", "http"]),
        "url": st.just("http://receiver/log"),
        "format": st.sampled_from(["json", "cloudevents"]),
    },
)


@settings(max_examples=300, deadline=None)
@given(PAYLOAD_LOGS)
def test_the_payload_log_rules_admit_exactly_what_the_typed_spec_admits(
    log: dict[str, Any],
) -> None:
    node = SPEC["properties"]["monitoring"]["properties"]["payloadLog"]
    filled = defaulted(log, node)
    admitted = all(cel(rule, filled) for rule in node["x-kubernetes-validations"])
    assert admitted == _valid(PayloadLog, log)


def test_the_payload_log_and_rate_limit_reach_the_pods_as_turnout_serve_reads_them() -> None:
    from turnout_serving.settings import ServingSettings

    spec = ModelDeploymentSpec.model_validate(
        {**MINIMAL, "monitoring": {"payloadLog": FULL_LOG}, "rateLimit": {"requestsPerSecond": 2.5}}
    )
    pod = build_deployment(
        "m", "ns", "blue", "1", "models:/m/1", 1, spec, Defaults("image", "http://mlflow")
    )["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"] if "value" in e}
    served = ServingSettings(_env_file=None, **{  # type: ignore[call-arg]
        name.removeprefix("TURNOUT_").lower(): value
        for name, value in env.items() if "PAYLOAD_LOG" in name or "RATE_LIMIT" in name
    })  # fmt: skip
    assert (served.payload_log_sample_rate, served.payload_log_sink, served.payload_log_format) == (
        0.5, "http", "cloudevents")  # fmt: skip
    assert (served.payload_log_url, served.payload_log_redact, served.payload_log_hash) == (
        "http://receiver/log", "ssn", "email")  # fmt: skip
    assert str(served.payload_log_hash_salt_file) == "/etc/turnout/payload-log/salt"
    assert (served.rate_limit_requests_per_second, served.rate_limit_burst) == (2.5, 10)
    assert {"name": "salt", "secret": {"secretName": "salt"}} in pod["volumes"]
    assert {"name": "salt", "mountPath": "/etc/turnout/payload-log", "readOnly": True} in pod[
        "containers"
    ][0]["volumeMounts"]
