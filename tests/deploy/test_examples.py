"""examples/: every ModelDeployment there is one the API server accepts as it is (the CRD's schema,
strict about unknown fields, and its CEL rule), that the operator parses to what the file's
comments promise, and from which it builds objects the API server accepts too; the retraining
example's Job runs the trainer beside it with the environment that trainer reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import celpy
import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT, load_script
from tests.deploy.conftest import parse_dockerfile
from tests.manifests import KUBERNETES_VERSIONS
from tests.unit.test_crd import errors, pruned
from turnout_operator.crd import CRD_FILE
from turnout_operator.domain.actions import StartRetraining
from turnout_operator.domain.manifests import Defaults, build_deployment, build_service
from turnout_operator.domain.retraining_job import build_job
from turnout_operator.domain.spec import ModelDeploymentSpec

EXAMPLES = ROOT / "examples"
[VERSION] = yaml.safe_load((ROOT / CRD_FILE).read_text())["spec"]["versions"]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]
# file -> (ModelDeployment name, the model URI it serves, floating, auto-promotion)
EXPECTED = {
    "diabetes-champion.yaml": ("diabetes", "models:/Diabetes@champion", True, True),
    "iris-v1.yaml": ("iris", "models:/Iris/1", False, False),
    "retraining/job-template.yaml": ("diabetes-retraining", "models:/Diabetes@champion", True, True),
}  # fmt: skip
DEFAULTS = Defaults(image="ghcr.io/turnout-dev/turnout-serve:0.1.0",
                    tracking_uri="http://mlflow.turnout-system.svc:5000")  # fmt: skip
RETRAINING = EXAMPLES / "retraining"
train = load_script("train", "examples/retraining")


def load(path: Path) -> dict[str, Any]:
    [document] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return dict(document)


NAME_RULE = next(r["message"] for r in SCHEMA["x-kubernetes-validations"])


def cel_rules(node: dict[str, Any], value: Any) -> list[str]:
    """Evaluate every CEL rule of the schema on the part of `value` it governs, as the API server
    does; return the messages of the rules evaluated (all of which held)."""
    checked = []
    env = celpy.Environment()
    for rule in node.get("x-kubernetes-validations", []):
        program = env.program(env.compile(rule["rule"]))
        assert program.evaluate({"self": celpy.json_to_cel(value)}), rule["message"]
        checked.append(rule["message"])
    if isinstance(value, dict):
        for key, sub in node.get("properties", {}).items():
            if key in value:
                checked += cel_rules(sub, value[key])
    if isinstance(value, list) and "items" in node:
        for item in value:
            checked += cel_rules(node["items"], item)
    return checked


def test_the_examples_are_the_documented_ones() -> None:
    found = [str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*.yaml")]
    assert sorted(found) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_api_server_accepts_the_example_as_written(name: str) -> None:
    document = load(EXAMPLES / name)
    assert (document["apiVersion"], document["kind"]) == ("turnout.dev/v1alpha1", "ModelDeployment")
    assert errors(SCHEMA, document) == []
    assert pruned(document["spec"], SPEC) == document["spec"]  # nothing silently dropped
    checked = cel_rules(SCHEMA, document)
    # the rules of strategy.blueGreen (analysis and shadow) hold wherever the example has one
    blue_green = SPEC["properties"]["strategy"]["properties"]["blueGreen"]
    has_blue_green = "blueGreen" in document["spec"].get("strategy", {})
    expected = [NAME_RULE, "spec.model needs exactly one of version, alias or stage"]
    expected += [r["message"] for r in SPEC["x-kubernetes-validations"]]  # the spec's own
    expected += [r["message"] for r in blue_green.get("x-kubernetes-validations", [])
                 if has_blue_green]  # fmt: skip
    # the quality trigger's rule and the reserved-names rule of each extra variable of the Job
    retraining = SPEC["properties"]["retraining"]["properties"]
    quality = retraining["triggers"]["properties"]["quality"]
    [env_rule] = retraining["jobTemplate"]["properties"]["env"]["items"]["x-kubernetes-validations"]
    triggers = document["spec"].get("retraining", {}).get("triggers", {})
    expected += [r["message"] for r in quality["x-kubernetes-validations"] if "quality" in triggers]
    job_env = document["spec"].get("retraining", {}).get("jobTemplate", {}).get("env", [])
    expected += [env_rule["message"]] * len(job_env)
    assert sorted(checked) == sorted(expected)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_operator_parses_the_example_as_its_comments_say(name: str) -> None:
    document = load(EXAMPLES / name)
    md_name, reference, floating, auto_promotion = EXPECTED[name]
    # strict: as the API server types it ("1" stays a string, 60 stays a number)
    spec = ModelDeploymentSpec.model_validate_json(json.dumps(document["spec"]), strict=True)
    assert document["metadata"] == {"name": md_name}  # namespace: wherever it is applied
    assert spec.model.reference == reference
    assert spec.model.floating is floating
    assert spec.blue_green.auto_promotion_enabled is auto_promotion
    assert spec.blue_green.smoke_test is True


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_what_the_operator_builds_from_the_example_is_valid_kubernetes(
    name: str, version: str
) -> None:
    document = load(EXAMPLES / name)
    spec = ModelDeploymentSpec.model_validate(document["spec"])
    md = document["metadata"]["name"]
    uri = f"models:/{spec.model.name}/1"
    deployment = build_deployment(md, "default", "blue", "1", uri, spec.replicas, spec, DEFAULTS)
    built = [
        deployment,
        build_service(md, "default", "active", "blue"),
        build_service(md, "default", "preview", "blue"),
    ]
    if spec.retraining is not None:
        start = StartRetraining(f"{md}-retrain-1", "Drift", "1", {"psi": 0.4})
        built.append(build_job(md, "default", start, spec, spec.retraining, DEFAULTS))
    for obj in built:
        kubernetes_validate.validate(obj, version, strict=True)
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == document["spec"]["template"]["resources"]


def test_the_retraining_job_runs_the_trainer_with_what_it_reads() -> None:
    """The Job built from examples/retraining/job-template.yaml runs train.py where the
    example's Dockerfile puts it, and train.py finds its data, target and model there."""
    document = load(RETRAINING / "job-template.yaml")
    spec = ModelDeploymentSpec.model_validate(document["spec"])
    assert spec.retraining is not None
    start = StartRetraining("diabetes-retraining-retrain-1", "Quality", "2", {"mae": 61.5})
    job = build_job("diabetes-retraining", "ml", start, spec, spec.retraining, DEFAULTS)
    [container] = job["spec"]["template"]["spec"]["containers"]
    runtime = parse_dockerfile(RETRAINING / "Dockerfile")[-1]
    copied = {rest.split()[-1] for rest in runtime.all("COPY")}
    assert container["command"] == ["python", "/app/train.py"]
    assert "/app/train.py" in copied
    assert container["image"] == "ghcr.io/turnout-dev/turnout-trainer-example:0.1.0"
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-credentials"}}]
    env = {e["name"]: e["value"] for e in container["env"]}
    args = train.parse_args(container.get("args", []), env)
    assert (args.data, args.target, args.min_improvement) == (
        "http://labelled-data.ml.svc.cluster.local/diabetes/latest.csv", "target", 0.02)  # fmt: skip
    assert train.Retraining.from_env(env) == train.Retraining(
        model_name="Diabetes", model_version="2", model_alias="champion", reason="Quality",
        figures={"mae": 61.5}, job="diabetes-retraining-retrain-1", operator_promotes=False,
    )  # fmt: skip
