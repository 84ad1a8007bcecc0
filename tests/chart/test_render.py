"""The chart lints, renders every chart-testing scenario into exactly the objects it should, refuses
bad values with helm's message naming the field, passes strict Kubernetes schema validation on two
minor versions, and packages only chart content."""

from __future__ import annotations

import tarfile
from pathlib import Path

import kubernetes_validate
import pytest

from tests.chart.conftest import SCENARIOS
from tests.manifests import CHART, KUBERNETES_VERSIONS, MONITORING_GROUP, NAMESPACE, Doc, Helm, one

CLUSTER_RBAC = [
    ("ClusterRole", "", "turnout-operator"),
    ("ClusterRoleBinding", "", "turnout-operator"),
]
OPERATOR = [
    ("ServiceAccount", NAMESPACE, "turnout-operator"),
    ("Service", NAMESPACE, "turnout-operator"),
    ("Deployment", NAMESPACE, "turnout-operator"),
    # two replicas: their Lease's Role, and a PodDisruptionBudget
    ("Role", NAMESPACE, "turnout-operator-leader-election"),
    ("RoleBinding", NAMESPACE, "turnout-operator-leader-election"),
    ("PodDisruptionBudget", NAMESPACE, "turnout-operator"),
]
MLFLOW = [("Service", NAMESPACE, "mlflow"), ("Deployment", NAMESPACE, "turnout-mlflow")]
DASHBOARDS = [
    ("ConfigMap", "monitoring", f"turnout-dashboard-{p.stem.removeprefix('turnout-')}")
    for p in (CHART / "dashboards").glob("*.json")
]
EXPECTED = {
    None: [*OPERATOR, *CLUSTER_RBAC],
    "default-values.yaml": [*OPERATOR, *CLUSTER_RBAC],
    "namespaced-values.yaml": [
        *OPERATOR,
        ("Role", "ml-prod", "turnout-operator"),
        ("RoleBinding", "ml-prod", "turnout-operator"),
        ("Role", "ml-staging", "turnout-operator"),
        ("RoleBinding", "ml-staging", "turnout-operator"),
    ],
    "with-monitoring-values.yaml": [
        *OPERATOR,
        ("Role", "ml-prod", "turnout-operator"),
        ("RoleBinding", "ml-prod", "turnout-operator"),
        ("ServiceMonitor", NAMESPACE, "turnout-operator"),
        ("PodMonitor", NAMESPACE, "turnout-models"),
        ("PrometheusRule", NAMESPACE, "turnout"),
        ("NetworkPolicy", "ml-prod", "turnout-models"),
        *DASHBOARDS,
    ],
    "with-mlflow-values.yaml": [
        *OPERATOR, *CLUSTER_RBAC, *MLFLOW,
        ("PersistentVolumeClaim", NAMESPACE, "turnout-mlflow"),
    ],
    "minimal-resources-values.yaml": [*OPERATOR, *CLUSTER_RBAC, *MLFLOW],  # no PVC: emptyDir
    "with-mlflow-stores-values.yaml": [*OPERATOR, *CLUSTER_RBAC, *MLFLOW],  # nothing on a volume
    "with-webhooks-values.yaml": [
        *OPERATOR, *CLUSTER_RBAC, *MLFLOW,
        ("Service", NAMESPACE, "turnout-webhooks"),
        ("Certificate", NAMESPACE, "turnout-webhooks"),
        ("Ingress", NAMESPACE, "turnout-webhooks"),
        ("ConfigMap", NAMESPACE, "turnout-mlflow-site"),
    ],
}  # fmt: skip


def identity(doc: Doc) -> tuple[str, str, str]:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


def test_every_scenario_is_covered() -> None:
    assert set(SCENARIOS) == set(EXPECTED)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_strict(helm: Helm, scenario: str | None) -> None:
    values: list[str | Path] = ["--values", CHART / "ci" / scenario] if scenario else []
    done = helm.run("lint", "--strict", CHART, "--namespace", NAMESPACE, *values)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_renders_exactly_these_objects(helm: Helm, scenario: str | None) -> None:
    rendered = sorted(map(identity, helm.template(scenario)))
    assert rendered == sorted(EXPECTED[scenario])


@pytest.mark.parametrize(
    ("values", "error"),
    [
        # a typo in a key
        (["operator.logLevl=debug"], "- at '/operator': additional properties 'logLevl' not allowed"),
        (["serviceMonitor.enable=true"], "- at '/serviceMonitor': additional properties 'enable' not allowed"),
        (["replicas=2"], "- at '': additional properties 'replicas' not allowed"),
        # a single namespace where a list is needed
        (["watchNamespaces=ml-prod"], "- at '/watchNamespaces': got string, want array"),
        (["operator.metricsPort=metrics"], "- at '/operator/metricsPort': got string, want integer"),
        (["mlflow.enabled=yes"], "- at '/mlflow/enabled': got string, want boolean"),
        (["mlflow.backendStore.type=oracle"], "- at '/mlflow/backendStore/type': value must be one of 'sqlite', 'postgresql', 'mysql'"),
        (["mlflow.artifactStore.type=gcs"], "- at '/mlflow/artifactStore/type': value must be one of 'volume', 's3'"),
        # values outside their enum or range
        (["operator.smokeVia=dns"], "- at '/operator/smokeVia': value must be one of 'auto', 'proxy', 'direct'"),
        (["operator.logLevel=verbose"], "- at '/operator/logLevel': value must be one of 'debug', 'info', 'warning', 'error', 'critical'"),
        (["operator.image.pullPolicy=always"], "- at '/operator/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"),
        (["operator.resyncSeconds=0"], "- at '/operator/resyncSeconds': exclusiveMinimum: got 0, want 0"),
        (["operator.health.port=70000"], "- at '/operator/health/port': maximum: got 70,000, want 65,535"),
        (["watchNamespaces={ML_Prod}"], "- at '/watchNamespaces/0': 'ML_Prod' does not match pattern"),
        (["operator.trackingUri=mlflow:5000"], "- at '/operator/trackingUri': 'mlflow:5000' does not match pattern"),
    ],
)  # fmt: skip
def test_schema_rejects_bad_values(helm: Helm, values: list[str], error: str) -> None:
    message = helm.template_error(*values)
    assert "values don't meet the specifications of the schema(s)" in message
    assert error in message


def test_network_policy_needs_namespaces_when_watching_everything(helm: Helm) -> None:
    message = helm.template_error("networkPolicy.enabled=true")
    assert "networkPolicy.enabled: list networkPolicy.namespaces" in message


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_manifests_are_valid_kubernetes(helm: Helm, scenario: str | None, version: str) -> None:
    """Strict: an unknown or misplaced field fails, as `kubectl apply --validate=strict` would."""
    checked = []
    for doc in helm.template(scenario, include_crds=True):
        if doc["apiVersion"].startswith((MONITORING_GROUP, "cert-manager.io/")):
            continue
        kubernetes_validate.validate(doc, version, strict=True)
        checked.append(doc["kind"])
    assert "CustomResourceDefinition" in checked and "Deployment" in checked


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_validation_is_strict(helm: Helm, version: str) -> None:
    """The check above can fail: a misplaced field in the operator's Deployment is refused."""
    deployment = one(helm.template(), "Deployment", "turnout-operator")
    deployment["spec"]["template"]["spec"]["containers"][0]["probes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


def test_package_holds_only_chart_content(helm: Helm, tmp_path: Path) -> None:
    """`.helmignore` keeps the promtool rule tests and the ci scenarios out of the package."""
    done = helm.run("package", CHART, "--destination", tmp_path)
    assert done.returncode == 0, done.stderr
    with tarfile.open(tmp_path / "turnout-0.1.0.tgz") as archive:
        packaged = {name.removeprefix("turnout/") for name in archive.getnames()}
    everything = {str(p.relative_to(CHART)) for p in CHART.rglob("*") if p.is_file()}
    left_out = {
        name for name in everything
        if name.startswith("ci/") or name.endswith(".test.yaml")
    }  # fmt: skip
    assert "rules/turnout.rules.test.yaml" in left_out
    assert packaged == everything - left_out
