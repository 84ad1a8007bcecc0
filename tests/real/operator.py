"""The operator on the real control plane as its chart runs it: under the chart's ServiceAccount,
bound by the chart's namespaced Role and RoleBinding (`watchNamespaces`), never as the admin. A
verb the Role lacks is then refused by Kubernetes' own authorizer, and the API server's audit log
(tests/real/controlplane.py) records it.

    apply_crd(api)                                       # the chart's CRD, Established
    token = grant_operator_role(plane, namespace)        # the chart's RBAC for one namespace
    with running_operator(plane, registry, namespace, home, tracking_uri) as cluster:
        cluster.apply(...)                               # tests/integration/cluster.py's helpers
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.conftest import BIN, ROOT, Process, Registry, free_port, require_tool, start, wait_until
from tests.integration.cluster import Cluster
from tests.manifests import NAMESPACE as OPERATOR_NAMESPACE
from tests.manifests import Helm, one
from tests.real import controlplane as cp
from tests.real.kube import service_account_token
from tests.real.objects import RealKube

CRD = ROOT / "crds" / "modeldeployments.turnout.dev.yaml"
ACCOUNT = "turnout-operator"
USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{ACCOUNT}"


def apply_crd(api: client.ApiClient) -> dict[str, object]:
    """Apply the project's CustomResourceDefinition (as the chart's crds/ are) and wait until it
    is Established; return its manifest."""
    manifest: dict[str, object] = yaml.safe_load(CRD.read_text())
    establish_crd(api, manifest)
    return manifest


def establish_crd(api: client.ApiClient, manifest: dict[str, Any]) -> None:
    """Create a CustomResourceDefinition and wait until it is Established."""
    extensions = client.ApiextensionsV1Api(api)
    extensions.create_custom_resource_definition(manifest)

    def established() -> bool:
        found = extensions.read_custom_resource_definition(manifest["metadata"]["name"])
        return any(
            c.type == "Established" and c.status == "True" for c in found.status.conditions or []
        )

    wait_until(established, timeout=60, interval=0.1, what="the CRD to be Established")


def chart_rbac(namespace: str) -> dict[str, dict[str, Any]]:
    """The chart's ServiceAccount, Role and RoleBinding for an operator watching `namespace`."""
    docs = Helm(require_tool("helm")).template(None, f"watchNamespaces={{{namespace}}}")
    return {kind: one(docs, kind, ACCOUNT) for kind in ("ServiceAccount", "Role", "RoleBinding")}


def grant_operator_role(plane: cp.ControlPlane, namespace: str) -> dict[str, Any]:
    """Create the chart's ServiceAccount (in turnout-system) and its Role and RoleBinding in
    `namespace`, as `helm install --set watchNamespaces={namespace}` would; return the Role."""
    rbac = chart_rbac(namespace)
    with plane.http() as admin:  # the namespace and account may exist already (409): fine
        admin.post("/api/v1/namespaces", json={"metadata": {"name": OPERATOR_NAMESPACE}})
        admin.post(f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/serviceaccounts",
                   json=rbac["ServiceAccount"])  # fmt: skip
        for kind, plural in (("Role", "roles"), ("RoleBinding", "rolebindings")):
            created = admin.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/{plural}",
                                 json=rbac[kind])  # fmt: skip
            assert created.status_code == 201, created.text
    return rbac["Role"]


def grant_leader_election(plane: cp.ControlPlane) -> dict[str, Any]:
    """Create the chart's leader-election Role and RoleBinding (the Lease, in turnout-system) as
    `helm install` renders them with its defaults; return the Role."""
    docs = Helm(require_tool("helm")).template(None, "watchNamespaces={default}")
    name = "turnout-operator-leader-election"
    with plane.http() as admin:  # the namespace may exist already (409): fine
        admin.post("/api/v1/namespaces", json={"metadata": {"name": OPERATOR_NAMESPACE}})
        for kind, plural in (("Role", "roles"), ("RoleBinding", "rolebindings")):
            created = admin.post(
                f"/apis/rbac.authorization.k8s.io/v1/namespaces/{OPERATOR_NAMESPACE}/{plural}",
                json=one(docs, kind, name),
            )
            assert created.status_code in (201, 409), created.text  # 409: made by a module before
    return one(docs, "Role", name)


def operator_token(core: client.CoreV1Api) -> str:
    """A bound token of the operator's ServiceAccount, as its pod would mount."""
    return service_account_token(core, OPERATOR_NAMESPACE, ACCOUNT)


def token_kubeconfig(plane: cp.ControlPlane, token: str, path: Path) -> Path:
    """A kubeconfig for the API server that authenticates with a bearer token."""
    ca = plane.ca.read_text()
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "real", "cluster": {
            "server": plane.server,
            "certificate-authority-data": base64.b64encode(ca.encode()).decode()}}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "real", "user": "operator"}}],
    }  # fmt: skip
    path.write_text(json.dumps(config, indent=2))
    return path


@contextlib.contextmanager
def running_operator(
    plane: cp.ControlPlane,
    core: client.CoreV1Api,
    registry: Registry,
    namespace: str,
    home: Path,
    *,
    tracking_uri: str,
    extra_env: dict[str, str] | None = None,
    command: list[str] | None = None,
) -> Iterator[Cluster]:
    """`turnout-operator run --namespace NAMESPACE` as a process on the host (out of cluster:
    smoke tests go through the API server's service proxy), authenticated as the chart's
    ServiceAccount; pods get `tracking_uri` (the registry as pods reach it). `command`: what
    stands for `turnout-operator` (a benchmark's wrapper of it)."""
    kubeconfig = token_kubeconfig(plane, operator_token(core), home / "operator.kubeconfig")
    port = free_port()
    env = {
        **registry.env,
        "KUBECONFIG": str(kubeconfig),
        "TURNOUT_OPERATOR_TRACKING_URI": tracking_uri,
        "TURNOUT_OPERATOR_METRICS_PORT": str(port),
        "TURNOUT_OPERATOR_RESYNC_SECONDS": "10",
        **(extra_env or {}),
    }
    log = home / "operator.log"
    argv = [*(command or [str(BIN / "turnout-operator")]), "run", "--namespace", namespace]
    operator = Process(f"http://127.0.0.1:{port}", start(argv, log, env), log)
    kube = RealKube(plane)
    cluster = Cluster(kube, operator, f"http://127.0.0.1:{port}/metrics", registry, argv, env,
                      namespace=namespace)  # fmt: skip
    try:
        yield cluster
    finally:
        cluster.operator.stop()
        kube.close()


def operator_cluster(
    plane: cp.ControlPlane,
    core: client.CoreV1Api,
    registry: Registry,
    tracking_uri: str,
    home: Path,
    prefix: str,
    extra_env: dict[str, str] | None = None,
    command: list[str] | None = None,
) -> Iterator[Cluster]:
    """For a module fixture to `yield from`: a namespace of its own (`prefix`-xxxxx) with the
    chart's Role in it, and the operator watching it (with `extra_env`); pods get
    `tracking_uri` (the registry as they reach it)."""
    namespace = f"{prefix}-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": namespace}})
    wait_until(lambda: core.read_namespaced_service_account("default", namespace), timeout=60,
               interval=0.1, what=f"ServiceAccount {namespace}/default")  # fmt: skip
    grant_operator_role(plane, namespace)
    with running_operator(plane, core, registry, namespace, home, tracking_uri=tracking_uri,
                          extra_env=extra_env, command=command) as cluster:  # fmt: skip
        yield cluster
    core.delete_namespace(namespace)
