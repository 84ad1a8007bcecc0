"""The monitoring side of the chart: ServiceMonitor, PodMonitor and PrometheusRule (Prometheus
Operator custom resources, checked here against the fields their CRDs require, since
kubernetes-validate has no schema for them), the Grafana dashboards, and the NetworkPolicy.

The PodMonitor and the NetworkPolicy must fit the pods the operator really builds, so they are
checked against `turnout_operator.domain.manifests.build_deployment`, not against a copy of its
labels."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import require_tool
from tests.manifests import CHART, NAMESPACE, RELEASE, Doc, Helm, documents, find, one
from turnout_operator.domain.manifests import Defaults, build_deployment
from turnout_operator.domain.spec import ModelDeploymentSpec, ModelRef

MONITORING = "with-monitoring-values.yaml"
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
SELECTOR = {
    "type": "object", "additionalProperties": False,
    "properties": {"matchLabels": STRINGS, "matchExpressions": {"type": "array"}},
}  # fmt: skip
RELABEL = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "action": {"enum": ["replace", "keep", "drop", "hashmod", "labelmap", "labeldrop",
                            "labelkeep", "lowercase", "uppercase", "keepequal", "dropequal"]},
        "sourceLabels": {"type": "array", "items": {"type": "string"}},
        "separator": {"type": "string"}, "targetLabel": {"type": "string"},
        "regex": {"type": "string"}, "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
    },
}  # fmt: skip
ENDPOINT = {
    "type": "object", "required": ["port", "path"], "additionalProperties": False,
    "properties": {
        "port": {"type": "string"}, "path": {"type": "string"}, "honorLabels": {"type": "boolean"},
        "interval": {"type": "string"}, "scrapeTimeout": {"type": "string"},
        "relabelings": {"type": "array", "items": RELABEL},
        "metricRelabelings": {"type": "array", "items": RELABEL},
    },
}  # fmt: skip
NAMESPACES = {
    "type": "object", "additionalProperties": False,
    "properties": {"any": {"type": "boolean"},
                   "matchNames": {"type": "array", "items": {"type": "string"}}},
}  # fmt: skip


def custom_resource(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": kind},
            "metadata": {"type": "object", "required": ["name", "namespace"]},
            "spec": spec,
        },
    }  # fmt: skip


RULE = {
    "type": "object", "required": ["expr"], "additionalProperties": False,
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
    "properties": {
        "alert": {"type": "string"}, "record": {"type": "string"},
        "expr": {"type": ["string", "integer"]}, "for": {"type": "string"},
        "keep_firing_for": {"type": "string"}, "labels": STRINGS, "annotations": STRINGS,
    },
}  # fmt: skip
SCHEMAS = {
    "ServiceMonitor": custom_resource("ServiceMonitor", {
        "type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
        "properties": {"selector": SELECTOR, "namespaceSelector": NAMESPACES,
                       "endpoints": {"type": "array", "minItems": 1, "items": ENDPOINT}},
    }),
    "PodMonitor": custom_resource("PodMonitor", {
        "type": "object", "required": ["selector", "podMetricsEndpoints"],
        "additionalProperties": False,
        "properties": {"selector": SELECTOR, "namespaceSelector": NAMESPACES,
                       "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": ENDPOINT}},
    }),
    "PrometheusRule": custom_resource("PrometheusRule", {
        "type": "object", "required": ["groups"], "additionalProperties": False,
        "properties": {"groups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "rules"],
            "properties": {"name": {"type": "string"}, "interval": {"type": "string"},
                           "rules": {"type": "array", "minItems": 1, "items": RULE}},
        }}},
    }),
}  # fmt: skip


def served_pod(namespace: str = "ml-prod") -> dict[str, Any]:
    """The pod template of a ModelDeployment's Deployment, as the operator builds it."""
    spec = ModelDeploymentSpec(model=ModelRef(name="Diabetes", version="1"))
    deployment = build_deployment(
        "diabetes", namespace, "blue", "1", "models:/Diabetes/1", 1, spec,
        Defaults(image="ghcr.io/turnout-dev/turnout-serve:0.1.0", tracking_uri="http://mlflow:5000"),
    )  # fmt: skip
    return dict(deployment["spec"]["template"])


def relabeled_job(endpoint: Doc) -> str:
    [job] = [r["replacement"] for r in endpoint["relabelings"] if r.get("targetLabel") == "job"]
    return str(job)


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_monitoring_objects_are_well_formed(helm: Helm, kind: str) -> None:
    jsonschema.validate(one(helm.template(MONITORING), kind), SCHEMAS[kind])


def test_structure_check_can_fail(helm: Helm) -> None:
    monitor = one(helm.template(MONITORING), "PodMonitor")
    monitor["spec"]["podMetricsEndpoints"][0]["targetport"] = "http"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, SCHEMAS["PodMonitor"])


def test_service_monitor_scrapes_the_operator_as_its_job(helm: Helm) -> None:
    docs = helm.template(MONITORING)
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service", "turnout-operator")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert (endpoint["path"], endpoint["interval"], endpoint["scrapeTimeout"]) == (
        "/metrics",
        "30s",
        "10s",
    )
    assert relabeled_job(endpoint) == "turnout-operator"
    # turnout_operator_modeldeployment_info's `namespace` is the ModelDeployment's, not the
    # operator's: the rules join on it
    assert endpoint["honorLabels"] is True


@pytest.mark.parametrize(
    ("scenario", "namespaces"),
    [(MONITORING, {"matchNames": ["ml-prod"]}), (None, {"any": True})],
)
def test_pod_monitor_scrapes_every_served_model(
    helm: Helm, scenario: str | None, namespaces: Doc
) -> None:
    monitor = one(helm.template(scenario, "podMonitor.enabled=true"), "PodMonitor")
    pod = served_pod()
    assert monitor["spec"]["namespaceSelector"] == namespaces
    assert monitor["spec"]["selector"] == {
        "matchLabels": {"app.kubernetes.io/managed-by": "turnout"}
    }
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    [container] = pod["spec"]["containers"]
    assert endpoint["port"] in [p["name"] for p in container["ports"]]
    assert endpoint["path"] == pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert relabeled_job(endpoint) == "turnout-serve"
    # the pod label the modeldeployment target label is read from exists on the pods
    [source] = [
        r["sourceLabels"]
        for r in endpoint["relabelings"]
        if r.get("targetLabel") == "modeldeployment"
    ]
    assert source == ["__meta_kubernetes_pod_label_turnout_dev_model_deployment"]
    assert pod["metadata"]["labels"]["turnout.dev/model-deployment"] == "diabetes"


def test_prometheus_rule_is_the_rules_file(helm: Helm) -> None:
    """Verbatim: `{{ $labels.x }}` in annotations is left for Prometheus, not eaten by Helm."""
    rule = one(helm.template(MONITORING), "PrometheusRule")
    shipped = yaml.safe_load((CHART / "rules" / "turnout.rules.yaml").read_text())
    assert rule["spec"]["groups"] == shipped["groups"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_the_training_factors_of_the_rules_come_from_values(helm: Helm, tmp_path: Path) -> None:
    """Only TurnoutLiveQualityBelowTraining changes, and promtool accepts what is rendered."""
    done = helm.run("template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                    "--values", str(CHART / "ci" / MONITORING),
                    "--set-json", 'prometheusRule.trainingFactors={"mae":1.5,"accuracy":0.9}')  # fmt: skip
    assert done.returncode == 0, done.stderr
    rule = one(documents(done.stdout), "PrometheusRule")
    shipped = yaml.safe_load((CHART / "rules" / "turnout.rules.yaml").read_text())
    changed = [(g["name"], r["alert"], r["expr"])
               for g, shipped_group in zip(rule["spec"]["groups"], shipped["groups"], strict=True)
               for r, s in zip(g["rules"], shipped_group["rules"], strict=True) if r != s]  # fmt: skip
    assert changed == [("turnout-serving", "TurnoutLiveQualityBelowTraining",
                        "turnout:live_mae:avg > 1.5 * turnout:training_mae:max\nor\n"
                        "turnout:live_accuracy:avg < 0.9 * turnout:training_accuracy:max\n")]  # fmt: skip
    rendered = tmp_path / "rules.yaml"
    rendered.write_text(yaml.safe_dump(rule["spec"]))
    done = subprocess.run([require_tool("promtool", "/usr/bin/promtool"), "check", "rules",
                           str(rendered)], capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "/prometheusRule/trainingFactors/mae': exclusiveMinimum" in helm.template_error(
        "prometheusRule.enabled=true", "prometheusRule.trainingFactors.mae=0"
    )


def test_dashboards_are_configmaps_for_the_grafana_sidecar(helm: Helm) -> None:
    files = sorted((CHART / "dashboards").glob("*.json"))
    assert [p.name for p in files] == ["turnout-rollouts.json", "turnout-serving.json"]
    maps = find(helm.template(MONITORING), "ConfigMap")
    assert len(maps) == len(files)
    for path, config_map in zip(
        files, sorted(maps, key=lambda m: m["metadata"]["name"]), strict=True
    ):
        assert (
            config_map["metadata"]["name"]
            == f"turnout-dashboard-{path.stem.removeprefix('turnout-')}"
        )
        assert config_map["metadata"]["namespace"] == "monitoring"
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "turnout"}
        assert list(config_map["data"]) == [path.name]
        assert json.loads(config_map["data"][path.name]) == json.loads(path.read_text())
    relabelled = find(helm.template(MONITORING, "dashboards.label=dashboards",
                                    "dashboards.labelValue=turnout"), "ConfigMap")  # fmt: skip
    assert {m["metadata"]["labels"]["dashboards"] for m in relabelled} == {"turnout"}
    assert not any("grafana_dashboard" in m["metadata"]["labels"] for m in relabelled)


def test_nothing_for_prometheus_operator_by_default(helm: Helm) -> None:
    kinds = {d["kind"] for d in helm.template()}
    assert kinds.isdisjoint({"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap",
                             "NetworkPolicy"})  # fmt: skip


def test_network_policy_admits_only_the_chosen_peers_on_the_server_port(helm: Helm) -> None:
    docs = helm.template(MONITORING)
    policy = one(docs, "NetworkPolicy")
    pod = served_pod()
    operator_labels = one(docs, "Deployment", "turnout-operator")["spec"]["template"]["metadata"][
        "labels"
    ]
    assert policy["metadata"]["namespace"] == "ml-prod"
    selected = policy["spec"]["podSelector"]["matchLabels"]
    assert selected.items() <= pod["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    [container] = pod["spec"]["containers"]
    assert rule["ports"] == [{"port": container["ports"][0]["containerPort"], "protocol": "TCP"}]
    assert rule["ports"][0]["port"] == 8080
    operator, prometheus, same_namespace, ingress = rule["from"]
    assert operator["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}
    }
    assert operator["podSelector"]["matchLabels"].items() <= operator_labels.items()
    assert prometheus == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    assert same_namespace == {"podSelector": {}}
    assert ingress == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    }


def test_network_policy_per_listed_namespace(helm: Helm) -> None:
    docs = helm.template(None, "networkPolicy.enabled=true", "networkPolicy.namespaces={a,b}",
                         "networkPolicy.allowSameNamespace=false",
                         "networkPolicy.prometheus.enabled=false")  # fmt: skip
    policies = find(docs, "NetworkPolicy")
    assert [p["metadata"]["namespace"] for p in policies] == ["a", "b"]
    assert [len(p["spec"]["ingress"][0]["from"]) for p in policies] == [1, 1]  # the operator only
