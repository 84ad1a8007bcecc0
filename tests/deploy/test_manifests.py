"""manifests/: turnout without Helm (`kubectl apply -k`). What a user relies on: every object is
one the API server accepts (strict schemas of two Kubernetes minor versions); the CRD is the
repository's; the RBAC is exactly the rules the integration suite checked against the calls the
operator makes, bound to the account the operator runs as; the operator is started the way its
own CLI understands, like the chart starts it; and the monitors select what they mean to scrape.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT
from tests.deploy.conftest import KUSTOMIZATIONS
from tests.integration.cluster import LEADER_ELECTION_ROLE, granted, rules
from tests.manifests import KUBERNETES_VERSIONS, find, one
from turnout_operator.cli import parser as operator_cli
from turnout_operator.crd import CRD_FILE
from turnout_operator.domain.manifests import NAME_LABEL, Defaults, build_deployment
from turnout_operator.domain.spec import ModelDeploymentSpec
from turnout_operator.settings import OperatorSettings
from turnout_serving.settings import ServingSettings

MONITORING = "monitoring.coreos.com/v1"
Objects = list[dict[str, Any]]

OPERATOR = [
    ("Namespace", None, "turnout-system"),
    ("CustomResourceDefinition", None, "modeldeployments.turnout.dev"),
    ("ServiceAccount", "turnout-system", "turnout-operator"),
    ("Service", "turnout-system", "turnout-operator"),
    ("Deployment", "turnout-system", "turnout-operator"),
    ("Role", "turnout-system", "turnout-operator-leader-election"),
    ("RoleBinding", "turnout-system", "turnout-operator-leader-election"),
    ("PodDisruptionBudget", "turnout-system", "turnout-operator"),
]
CLUSTER_RBAC = [
    ("ClusterRole", None, "turnout-operator"),
    ("ClusterRoleBinding", None, "turnout-operator"),
]
NAMESPACED_RBAC = [("Role", "default", "turnout-operator"), ("RoleBinding", "default", "turnout-operator")]  # fmt: skip
MONITORS = [
    ("ServiceMonitor", "turnout-system", "turnout-operator"),
    ("PodMonitor", "turnout-system", "turnout-models"),
]
CONTENTS = {
    "base": OPERATOR + CLUSTER_RBAC,
    "overlays/namespaced": OPERATOR + NAMESPACED_RBAC,
    "overlays/with-monitoring": OPERATOR + CLUSTER_RBAC + MONITORS,
}


def identity(o: dict[str, Any]) -> tuple[str, str | None, str]:
    return o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]


def operator_container(objects: Objects) -> dict[str, Any]:
    [container] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def port(container: dict[str, Any], name: str) -> int:
    [number] = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(number)


# --- what is installed, and that the API server takes it ---------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_each_kustomization_installs_exactly_its_objects(
    rendered: dict[str, Objects], kustomization: str
) -> None:
    assert sorted(map(identity, rendered[kustomization]), key=str) == sorted(
        CONTENTS[kustomization], key=str
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_object_is_valid_kubernetes(
    rendered: dict[str, Objects], kustomization: str, version: str
) -> None:
    checked = 0
    for obj in rendered[kustomization]:
        if obj["apiVersion"] != MONITORING:  # no schema offline: test_monitors_* check them
            kubernetes_validate.validate(obj, version, strict=True)
            checked += 1
    assert checked == len([o for o in CONTENTS[kustomization] if o not in MONITORS])


def test_a_strict_schema_rejects_what_the_api_server_would() -> None:
    """The validator is not lenient: a misspelt field fails it (and so the test above)."""
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"ports": [{"port": 80}], "selectr": {"a": "b"}}}  # fmt: skip
    with pytest.raises(kubernetes_validate.ValidationError, match="selectr"):
        kubernetes_validate.validate(bad, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_crd_is_the_repositorys(rendered: dict[str, Objects], kustomization: str) -> None:
    crd = one(rendered[kustomization], "CustomResourceDefinition")
    assert crd == yaml.safe_load((ROOT / CRD_FILE).read_text())


def test_the_base_copy_of_the_crd_is_byte_for_byte_the_generated_one() -> None:
    copy = ROOT / "manifests" / "base" / CRD_FILE
    assert copy.read_text() == (ROOT / CRD_FILE).read_text(), (
        f"manifests/base/{CRD_FILE} is stale: cp {CRD_FILE} manifests/base/crds/"
    )


# --- RBAC -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kustomization", "mode", "kind"),
    [("base", "cluster-wide", "ClusterRole"), ("overlays/namespaced", "namespaced", "Role"),
     ("overlays/with-monitoring", "cluster-wide", "ClusterRole")],
)  # fmt: skip
def test_rbac_is_exactly_the_rules_checked_against_the_operators_calls(
    rendered: dict[str, Objects], kustomization: str, mode: str, kind: str
) -> None:
    watched = [o for o in rendered[kustomization] if o["metadata"]["name"] != LEADER_ELECTION_ROLE]
    assert rules(watched, kind) == granted(mode)
    assert len(granted(mode)) > 10
    # and in the operator's own namespace, its Lease
    election = [o for o in rendered[kustomization] if o["metadata"]["name"] == LEADER_ELECTION_ROLE]
    assert [o["metadata"]["namespace"] for o in election] == ["turnout-system"] * 2
    assert (
        rules(election, "Role")
        == granted("leader-election")
        == {("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")}
        | {("", "pods", "patch")}  # the leader's label on its own pod
    )


def test_the_namespaced_overlay_grants_nothing_cluster_wide(rendered: dict[str, Objects]) -> None:
    objects = rendered["overlays/namespaced"]
    assert find(objects, "ClusterRole") == find(objects, "ClusterRoleBinding") == []


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_bindings_grant_the_account_the_operator_runs_as(
    rendered: dict[str, Objects], kustomization: str
) -> None:
    objects = rendered[kustomization]
    deployment = one(objects, "Deployment")
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    namespace = deployment["metadata"]["namespace"]
    assert ("ServiceAccount", namespace, account) in map(identity, objects)
    bindings = find(objects, "RoleBinding") + find(objects, "ClusterRoleBinding")
    assert len(bindings) == 2  # what it watches, and its Lease
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": namespace}
        ]
        ref = binding["roleRef"]
        role = (ref["kind"], binding["metadata"].get("namespace"), ref["name"])
        assert role in map(identity, objects)


@pytest.mark.parametrize(
    ("kustomization", "namespaces", "all_namespaces"),
    [("base", None, True), ("overlays/namespaced", ["default"], None),
     ("overlays/with-monitoring", None, True)],
)  # fmt: skip
def test_the_operator_watches_where_its_rbac_reaches(
    rendered: dict[str, Objects],
    kustomization: str,
    namespaces: list[str] | None,
    all_namespaces: bool | None,
) -> None:
    objects = rendered[kustomization]
    container = operator_container(objects)
    assert container["command"] == ["turnout-operator", "run"]
    args = operator_cli().parse_args(container["command"][1:] + container["args"])
    assert (args.namespaces, args.all_namespaces) == (namespaces, all_namespaces)
    if namespaces:  # a Role in each watched namespace, none elsewhere
        roles = [r for r in find(objects, "Role") if r["metadata"]["name"] != LEADER_ELECTION_ROLE]
        assert sorted(r["metadata"]["namespace"] for r in roles) == namespaces
    # kopf's liveness endpoint is where the kubelet probes it
    assert args.liveness == f"http://0.0.0.0:{port(container, 'health')}/healthz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


# --- the operator -------------------------------------------------------------------------------------


def test_the_operators_environment_is_settings_it_understands(
    rendered: dict[str, Objects], monkeypatch: pytest.MonkeyPatch
) -> None:
    container = operator_container(rendered["base"])
    for variable in container["env"]:
        assert variable["name"].startswith("TURNOUT_OPERATOR_")
        field = variable["name"].removeprefix("TURNOUT_OPERATOR_").lower()
        assert field in OperatorSettings.model_fields, variable["name"]
        downward = {"metadata.name": "turnout-operator-7d9f-x2k4p", "metadata.namespace": "turnout-system"}  # fmt: skip
        value = variable.get("value") or downward[variable["valueFrom"]["fieldRef"]["fieldPath"]]
        monkeypatch.setenv(variable["name"], value)
    settings = OperatorSettings()
    assert (settings.leader_election, settings.leader_election_lease, settings.pod_name,
            settings.pod_namespace) == (True, "turnout-operator", "turnout-operator-7d9f-x2k4p",
                                        "turnout-system")  # fmt: skip
    assert settings.metrics_port == port(container, "metrics") == 8000
    assert settings.tracking_uri == "http://mlflow.mlflow.svc:5000"
    assert settings.serving_image == "ghcr.io/turnout-dev/turnout-serve:0.1.0"
    service = one(rendered["base"], "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8000, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = one(rendered["base"], "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_the_operator_pod_is_the_charts(rendered: dict[str, Objects], chart: Objects) -> None:
    """Same pod as `helm install turnout charts/turnout` with its defaults: command, args,
    environment, probes, resources, security contexts, volumes, service account."""
    ours = one(rendered["base"], "Deployment")
    [theirs] = [d for d in find(chart, "Deployment") if d["metadata"]["name"] == "turnout-operator"]  # fmt: skip
    assert ours["spec"]["template"]["spec"] == theirs["spec"]["template"]["spec"]
    assert ours["spec"]["strategy"] == theirs["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }  # fmt: skip
    assert ours["spec"]["replicas"] == theirs["spec"]["replicas"] == 2


# --- monitors (no schema offline: checked against what they must select) --------------------------


def served_model_pod() -> dict[str, Any]:
    spec = ModelDeploymentSpec.model_validate({"model": {"name": "m", "alias": "champion"}})
    deployment = build_deployment("m", "ml", "green", "3", "models:/m/3", 1, spec,
                                  Defaults(image="turnout-serve:1", tracking_uri="http://mlflow"))  # fmt: skip
    return dict(deployment["spec"]["template"])


def job(endpoint: dict[str, Any]) -> str:
    [replacement] = [r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
    return str(replacement)


def test_the_service_monitor_scrapes_the_operators_metrics_as_job_turnout_operator(
    rendered: dict[str, Objects], chart: Objects
) -> None:
    objects = rendered["overlays/with-monitoring"]
    monitor, service = one(objects, "ServiceMonitor"), one(objects, "Service")
    assert monitor["apiVersion"] == MONITORING
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()  # fmt: skip
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}  # fmt: skip
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert (endpoint["path"], job(endpoint)) == ("/metrics", "turnout-operator")
    # the chart's rules and dashboards select on the same job
    assert [endpoint] == one(chart, "ServiceMonitor")["spec"]["endpoints"]


def test_the_pod_monitor_scrapes_every_served_model_as_job_turnout_serve(
    rendered: dict[str, Objects], chart: Objects
) -> None:
    monitor = one(rendered["overlays/with-monitoring"], "PodMonitor")
    assert monitor["apiVersion"] == MONITORING
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    pod = served_model_pod()
    assert monitor["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/managed-by": "turnout"}}  # fmt: skip
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    [container] = pod["spec"]["containers"]
    assert endpoint["port"] in {p["name"] for p in container["ports"]}
    assert endpoint["path"] == pod["metadata"]["annotations"]["prometheus.io/path"]
    assert job(endpoint) == "turnout-serve"
    # Prometheus exposes the pod label turnout.dev/model-deployment under this name
    [source] = [r["sourceLabels"] for r in endpoint["relabelings"] if r["targetLabel"] == "modeldeployment"]  # fmt: skip
    assert source == ["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", NAME_LABEL)]
    assert [endpoint] == one(chart, "PodMonitor")["spec"]["podMetricsEndpoints"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_a_served_model_pod_keeps_serving_until_it_is_out_of_rotation_then_drains(
    version: str,
) -> None:
    """On deletion the kubelet first sleeps (the pod still answers while Services and proxies
    stop sending to it), then sends SIGTERM; turnout-serve drains in-flight requests and lets
    idle keep-alive connections time out. The grace period covers all three, with room to exit:
    otherwise the kubelet kills requests it has already accepted."""
    spec = ModelDeploymentSpec.model_validate({"model": {"name": "m", "alias": "champion"}})
    deployment = build_deployment("m", "ml", "green", "3", "models:/m/3", 1, spec,
                                  Defaults(image="turnout-serve:1", tracking_uri="http://mlflow"))  # fmt: skip
    kubernetes_validate.validate(deployment, version, strict=True)
    pod = deployment["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}  # no shell needed
    serving = ServingSettings()
    needed = 5 + serving.graceful_shutdown_seconds + serving.keep_alive_seconds
    assert pod["spec"]["terminationGracePeriodSeconds"] == 45 > needed
