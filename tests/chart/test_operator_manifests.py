"""What the chart installs for the operator: the CRD (the repository's, byte for byte), the RBAC of
each mode (exactly the published rules, which the integration suite proves minimal and
sufficient), the operator Deployment, and the bundled MLflow of the quickstart."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tests.chart.conftest import env_of, operator_container
from tests.conftest import ROOT
from tests.integration.cluster import LEADER_ELECTION_ROLE, granted, rules
from tests.manifests import CHART, NAMESPACE, Helm, documents, find, one

CRD = "modeldeployments.turnout.dev.yaml"
LEADER_ELECTION_ENV = {
    "TURNOUT_OPERATOR_LEADER_ELECTION": "true",
    "TURNOUT_OPERATOR_LEADER_ELECTION_LEASE": "turnout-operator",
    "TURNOUT_OPERATOR_LEADER_ELECTION_LEASE_SECONDS": "15",
    "TURNOUT_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "10",
    "TURNOUT_OPERATOR_LEADER_ELECTION_RETRY_SECONDS": "2",
    "TURNOUT_OPERATOR_POD_NAME": "fieldRef:metadata.name",
    "TURNOUT_OPERATOR_POD_NAMESPACE": "fieldRef:metadata.namespace",
}
DEFAULT_ENV = {
    "TURNOUT_OPERATOR_TRACKING_URI": "http://mlflow.mlflow.svc:5000",
    "TURNOUT_OPERATOR_SERVING_IMAGE": "ghcr.io/turnout-dev/turnout-serve:0.1.0",
    "TURNOUT_OPERATOR_METRICS_PORT": "8000",
    "TURNOUT_OPERATOR_LOG_LEVEL": "info",
    "TURNOUT_OPERATOR_SMOKE_VIA": "auto",
    "TURNOUT_OPERATOR_SMOKE_TIMEOUT_SECONDS": "10",
    "TURNOUT_OPERATOR_REGISTRY_RETRY_SECONDS": "10",
    "TURNOUT_OPERATOR_RESYNC_SECONDS": "60",
    **LEADER_ELECTION_ENV,
    "TURNOUT_OPERATOR_NOTIFICATION_RETRIES": "5",
    "TURNOUT_OPERATOR_NOTIFICATION_TIMEOUT_SECONDS": "5",
}


# --- the CRD --------------------------------------------------------------------------------------


def test_crd_is_the_repositorys_byte_for_byte() -> None:
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [CRD]
    assert (CHART / "crds" / CRD).read_bytes() == (ROOT / "crds" / CRD).read_bytes()


def test_crd_is_installed_with_the_chart(helm: Helm) -> None:
    installed = one(helm.template(include_crds=True), "CustomResourceDefinition")
    assert installed == yaml.safe_load((ROOT / "crds" / CRD).read_text())


# --- RBAC -----------------------------------------------------------------------------------------


def test_cluster_wide_rbac_is_the_published_one(helm: Helm) -> None:
    docs = helm.template()
    assert rules(docs, "ClusterRole") == granted("cluster-wide")
    # the only Role: the replicas' Lease, in the operator's namespace
    assert rules(docs, "Role") == granted("leader-election")
    assert [(r["metadata"]["namespace"], r["metadata"]["name"]) for r in find(docs, "Role")] == [
        (NAMESPACE, LEADER_ELECTION_ROLE)
    ]
    binding = one(docs, "RoleBinding", LEADER_ELECTION_ROLE)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "turnout-operator", "namespace": NAMESPACE}
    ]
    binding = one(docs, "ClusterRoleBinding", "turnout-operator")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "turnout-operator",
    }  # fmt: skip
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "turnout-operator", "namespace": NAMESPACE}
    ]


def test_namespaced_rbac_is_the_published_one_in_each_namespace(helm: Helm) -> None:
    docs = helm.template("namespaced-values.yaml")
    assert find(docs, "ClusterRole") == find(docs, "ClusterRoleBinding") == []
    for namespace in ("ml-prod", "ml-staging"):
        role = [r for r in find(docs, "Role") if r["metadata"]["namespace"] == namespace]
        assert rules(role, "Role") == granted("namespaced")
        binding = [b for b in find(docs, "RoleBinding") if b["metadata"]["namespace"] == namespace]
        assert [(b["roleRef"]["kind"], b["roleRef"]["name"], b["subjects"]) for b in binding] == [
            ("Role", "turnout-operator",
             [{"kind": "ServiceAccount", "name": "turnout-operator", "namespace": NAMESPACE}])
        ]  # fmt: skip


def test_no_rbac_when_asked(helm: Helm) -> None:
    docs = helm.template(None, "rbac.create=false", "serviceAccount.create=false",
                         "serviceAccount.name=mine")  # fmt: skip
    kinds = {d["kind"] for d in docs}
    assert kinds == {"Deployment", "Service", "PodDisruptionBudget"}
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "mine"


# --- the operator Deployment ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "watch"),
    [
        (None, ["--all-namespaces"]),
        ("namespaced-values.yaml", ["--namespace", "ml-prod", "--namespace", "ml-staging"]),
    ],
)
def test_operator_command_per_mode(helm: Helm, scenario: str | None, watch: list[str]) -> None:
    container = operator_container(helm.template(scenario))
    assert container["command"] == ["turnout-operator", "run"]
    assert container["args"] == [*watch, "--liveness", "http://0.0.0.0:8080/healthz"]


def test_operator_settings_come_from_values(helm: Helm) -> None:
    assert env_of(operator_container(helm.template())) == DEFAULT_ENV
    container = operator_container(helm.template(
        None, "operator.trackingUri=https://mlflow.example.com", "operator.logLevel=debug",
        "operator.servingImage.tag=0.2.0", "operator.smokeVia=direct", "operator.resyncSeconds=15",
        "operator.smokeTimeoutSeconds=3", "operator.registryRetrySeconds=30",
        "operator.metricsPort=9000", "operator.extraEnv[0].name=HTTPS_PROXY",
        "operator.extraEnv[0].value=http://proxy:3128",
    ))  # fmt: skip
    assert env_of(container) == {
        "TURNOUT_OPERATOR_TRACKING_URI": "https://mlflow.example.com",
        "TURNOUT_OPERATOR_SERVING_IMAGE": "ghcr.io/turnout-dev/turnout-serve:0.2.0",
        "TURNOUT_OPERATOR_METRICS_PORT": "9000",
        "TURNOUT_OPERATOR_LOG_LEVEL": "debug",
        "TURNOUT_OPERATOR_SMOKE_VIA": "direct",
        "TURNOUT_OPERATOR_SMOKE_TIMEOUT_SECONDS": "3",
        "TURNOUT_OPERATOR_REGISTRY_RETRY_SECONDS": "30",
        "TURNOUT_OPERATOR_RESYNC_SECONDS": "15",
        **LEADER_ELECTION_ENV,
        "TURNOUT_OPERATOR_NOTIFICATION_RETRIES": "5",
        "TURNOUT_OPERATOR_NOTIFICATION_TIMEOUT_SECONDS": "5",
        "HTTPS_PROXY": "http://proxy:3128",
    }
    assert container["ports"][0] == {"name": "metrics", "containerPort": 9000, "protocol": "TCP"}


def test_operator_runs_two_replicas_and_locked_down(helm: Helm) -> None:
    deployment = one(helm.template(), "Deployment", "turnout-operator")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }  # fmt: skip
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    container = operator_container([deployment])
    assert container["image"] == "ghcr.io/turnout-dev/turnout-operator:0.1.0"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "256Mi"},
        "limits": {"memory": "512Mi"},
    }


def test_image_tags_follow_the_charts_app_version(helm: Helm, tmp_path: Path) -> None:
    """A release bumps only Chart.yaml: both default image tags are its appVersion, so the chart
    published with a release pulls exactly the images published with it."""
    chart = tmp_path / "turnout"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    (chart / "Chart.yaml").write_text(yaml.safe_dump({**meta, "appVersion": "7.8.9-rc.1"}))
    done = helm.run("template", "turnout", chart, "--namespace", NAMESPACE)
    assert done.returncode == 0, done.stderr
    container = operator_container(documents(done.stdout))
    assert container["image"] == "ghcr.io/turnout-dev/turnout-operator:7.8.9-rc.1"
    assert env_of(container)["TURNOUT_OPERATOR_SERVING_IMAGE"] == (
        "ghcr.io/turnout-dev/turnout-serve:7.8.9-rc.1"
    )


@pytest.mark.parametrize(
    ("sets", "operator", "serve"),
    [
        # docs/helm.md's own images: `make images REGISTRY=...` tags them with the appVersion.
        (("operator.image.repository=registry.example.com/ml/turnout-operator",
          "operator.servingImage.repository=registry.example.com/ml/turnout-serve"),
         "registry.example.com/ml/turnout-operator:0.1.0",
         "registry.example.com/ml/turnout-serve:0.1.0"),
        (("operator.image.tag=dev", "operator.servingImage.tag=dev"),
         "ghcr.io/turnout-dev/turnout-operator:dev", "ghcr.io/turnout-dev/turnout-serve:dev"),
        (("operator.image.tag=dev", f"operator.image.digest=sha256:{'ab' * 32}"),
         f"ghcr.io/turnout-dev/turnout-operator@sha256:{'ab' * 32}",
         "ghcr.io/turnout-dev/turnout-serve:0.1.0"),
    ],
)  # fmt: skip
def test_image_values_name_the_images(
    helm: Helm, sets: tuple[str, ...], operator: str, serve: str
) -> None:
    container = operator_container(helm.template(None, *sets))
    assert container["image"] == operator
    assert env_of(container)["TURNOUT_OPERATOR_SERVING_IMAGE"] == serve


def test_probes_reach_the_liveness_endpoint(helm: Helm) -> None:
    """The kubelet probes the port and path kopf serves `--liveness` on."""
    container = operator_container(helm.template(None, "operator.health.port=8081"))
    liveness = urlparse(container["args"][container["args"].index("--liveness") + 1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8000, "health": 8081}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert (
            (ports[get["port"]], get["path"])
            == (liveness.port, liveness.path)
            == (8081, "/healthz")
        )


def test_image_digest_wins_over_tag(helm: Helm) -> None:
    container = operator_container(helm.template("minimal-resources-values.yaml"))
    assert container["image"] == "ghcr.io/turnout-dev/turnout-operator@sha256:" + "0" * 64


def test_metrics_service_targets_the_operator(helm: Helm) -> None:
    docs = helm.template()
    service = one(docs, "Service", "turnout-operator")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8000, "targetPort": "metrics", "protocol": "TCP"}
    ]


# --- the bundled MLflow ---------------------------------------------------------------------------


def test_bundled_mlflow_is_the_default_tracking_uri(helm: Helm) -> None:
    docs = helm.template("with-mlflow-values.yaml")
    assert env_of(operator_container(docs))["TURNOUT_OPERATOR_TRACKING_URI"] == (
        f"http://mlflow.{NAMESPACE}.svc:5000"
    )
    service = one(docs, "Service", "mlflow")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 5000, "targetPort": "http", "protocol": "TCP"}
    ]
    pod_labels = one(docs, "Deployment", "turnout-mlflow")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    # an explicit URI wins over the bundled server
    explicit = helm.template("with-mlflow-values.yaml", "operator.trackingUri=http://other:5000")
    assert (
        env_of(operator_container(explicit))["TURNOUT_OPERATOR_TRACKING_URI"] == "http://other:5000"
    )


def test_bundled_mlflow_server(helm: Helm) -> None:
    docs = helm.template("with-mlflow-values.yaml")
    pod = one(docs, "Deployment", "turnout-mlflow")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "ghcr.io/mlflow/mlflow:v3.17.2"
    assert container["command"] == [
        "mlflow", "server", "--backend-store-uri", "sqlite:////mlflow/mlflow.db",
        "--artifacts-destination", "/mlflow/artifacts", "--serve-artifacts",
        "--host", "0.0.0.0", "--port", "5000", "--workers", "1",
    ]  # fmt: skip
    svc = f"mlflow.{NAMESPACE}"
    assert env_of(container) == {
        "MLFLOW_SERVER_ALLOWED_HOSTS": ",".join([
            "mlflow", "mlflow:*", svc, f"{svc}:*", f"{svc}.svc", f"{svc}.svc:*",
            "localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", f"{svc}.svc.*",
            "mlflow.example.com",
        ]),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "HOME": "/tmp",
    }  # fmt: skip
    assert container["volumeMounts"] == [
        {"name": "data", "mountPath": "/mlflow"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    assert pod["volumes"][0] == {
        "name": "data",
        "persistentVolumeClaim": {"claimName": "turnout-mlflow"},
    }
    claim = one(docs, "PersistentVolumeClaim", "turnout-mlflow")
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
    }
    ephemeral = helm.template("minimal-resources-values.yaml")
    pod = one(ephemeral, "Deployment", "turnout-mlflow")["spec"]["template"]["spec"]
    assert pod["volumes"][0] == {"name": "data", "emptyDir": {}}


# --- two replicas, one leader -------------------------------------------------------------------


def test_the_replicas_are_spread_over_nodes_and_a_drain_keeps_one(helm: Helm) -> None:
    docs = helm.template()
    pod = one(docs, "Deployment", "turnout-operator")["spec"]["template"]
    selector = {"app.kubernetes.io/name": "turnout", "app.kubernetes.io/instance": "turnout",
                "app.kubernetes.io/component": "operator"}  # fmt: skip
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["topologySpreadConstraints"] == [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": selector},
    }]  # fmt: skip
    budget = one(docs, "PodDisruptionBudget", "turnout-operator")
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}


def test_without_leader_election_one_replica_runs_and_never_two(helm: Helm) -> None:
    docs = helm.template(None, "operator.leaderElection.enabled=false", "operator.replicas=1")
    deployment = one(docs, "Deployment", "turnout-operator")
    assert (deployment["spec"]["replicas"], deployment["spec"]["strategy"]) == (
        1,
        {"type": "Recreate"},
    )
    assert "topologySpreadConstraints" not in deployment["spec"]["template"]["spec"]
    assert find(docs, "Role") == find(docs, "PodDisruptionBudget") == []
    env = env_of(operator_container(docs))
    assert not any(name.startswith("TURNOUT_OPERATOR_LEADER") for name in env)
    error = helm.template_error("operator.leaderElection.enabled=false")  # replicas: 2
    assert "operator.replicas > 1 needs operator.leaderElection.enabled" in error


def test_leader_election_settings_come_from_values(helm: Helm) -> None:
    container = operator_container(helm.template(
        None, "operator.leaderElection.leaseName=ops-lease", "operator.leaderElection.leaseSeconds=30",
        "operator.leaderElection.renewDeadlineSeconds=20", "operator.leaderElection.retrySeconds=4",
    ))  # fmt: skip
    assert env_of(container) == DEFAULT_ENV | {
        "TURNOUT_OPERATOR_LEADER_ELECTION_LEASE": "ops-lease",
        "TURNOUT_OPERATOR_LEADER_ELECTION_LEASE_SECONDS": "30",
        "TURNOUT_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE_SECONDS": "20",
        "TURNOUT_OPERATOR_LEADER_ELECTION_RETRY_SECONDS": "4",
    }
