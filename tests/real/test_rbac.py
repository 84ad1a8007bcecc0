"""RBAC by Kubernetes' own authorizer: the operator's ServiceAccount, bound to the chart's
namespaced Role (`watchNamespaces`), can make every call the operator makes in a watched
namespace, and is forbidden everything else: other verbs, other resources, other namespaces and
the cluster scope."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.real import controlplane as cp
from tests.real.operator import USER, grant_operator_role, operator_token

pytestmark = pytest.mark.real

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


@dataclass
class Operator:
    http: httpx.Client  # the ServiceAccount's bearer token
    admin: httpx.Client
    namespace: str  # watched
    other: str  # not watched
    rules: list[dict[str, Any]]


@pytest.fixture
def operator(
    control_plane: cp.ControlPlane, core: client.CoreV1Api, crd: dict[str, Any], namespace: str
) -> Iterator[Operator]:
    role = grant_operator_role(control_plane, namespace)
    assert role["metadata"]["namespace"] == namespace
    with control_plane.http() as admin:
        other = f"{namespace}-other"[:63]
        assert (
            admin.post("/api/v1/namespaces", json={"metadata": {"name": other}}).status_code == 201
        )
        with control_plane.http(token=operator_token(core)) as http:
            yield Operator(http, admin, namespace, other, role["rules"])
        admin.delete(f"/api/v1/namespaces/{other}")


def md(name: str) -> dict[str, Any]:
    return {"apiVersion": "turnout.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": {"name": "iris", "version": "1"}}}  # fmt: skip


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "serve", "image": "turnout-serve:dev"}]}}}}  # fmt: skip


def test_the_operator_can_make_every_call_it_makes(operator: Operator) -> None:
    ns, http, admin = operator.namespace, operator.http, operator.admin
    mds = f"/apis/turnout.dev/v1alpha1/namespaces/{ns}/modeldeployments"
    deployments = f"/apis/apps/v1/namespaces/{ns}/deployments"
    services = f"/api/v1/namespaces/{ns}/services"
    pods = f"/api/v1/namespaces/{ns}/pods"
    ingresses = f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses"
    assert admin.post(mds, json=md("iris")).status_code == 201
    assert (
        admin.post(
            f"/api/v1/namespaces/{ns}/secrets",
            json={"metadata": {"name": "mlflow"}, "stringData": {"MLFLOW_TRACKING_TOKEN": "t"}},
        ).status_code
        == 201
    )

    # kopf lists and watches every kind a reconcile reads (its indexes); the operator writes
    # and never GETs them
    watched = [
        mds, deployments, services, pods,
        f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
        f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    ]  # fmt: skip
    calls = [
        *[("GET", url, None, 200) for url in watched],
        *[("GET", f"{url}?watch=1&timeoutSeconds=1", None, 200) for url in watched],
        ("PATCH", f"{mds}/iris", {"metadata": {"annotations": {"turnout.dev/promote": None}}}, 200),
        ("PATCH", f"{mds}/iris/status", {"status": {"phase": "Progressing"}}, 200),
        ("POST", deployments, deployment("iris-blue"), 201),
        ("PATCH", f"{deployments}/iris-blue", {"spec": {"replicas": 2}}, 200),
        # a replace without a resourceVersion: Deployments take an unconditional update
        ("PUT", f"{deployments}/iris-blue", deployment("iris-blue"), 200),
        ("POST", services, {"metadata": {"name": "iris"}, "spec": {"selector": {"app": "iris"}, "ports": [{"name": "http", "port": 80}]}}, 201),
        ("PATCH", f"{services}/iris", {"spec": {"selector": {"app": "iris-blue"}}}, 200),
        ("GET", f"/api/v1/namespaces/{ns}/secrets/mlflow", None, 200),
        ("POST", f"/api/v1/namespaces/{ns}/events", {"metadata": {"name": "iris.1"}, "involvedObject": {"kind": "ModelDeployment", "name": "iris", "namespace": ns}, "reason": "Promoted", "message": "m", "type": "Normal"}, 201),
        # authorized; the Service has no endpoints yet, so the proxy answers 503
        ("POST", f"{services}/iris:http/proxy/invocations", {}, 503),
        # analysis and mirroring through the API server: authorized; no such pod, so 404
        ("GET", f"{pods}/iris-blue-0:8080/proxy/metrics", None, 404),
        ("PUT", f"{pods}/iris-blue-0:8080/proxy/admin/shadow", {"percent": 10}, 404),
        ("DELETE", f"{pods}/iris-blue-0:8080/proxy/admin/shadow", None, 404),
        # spec.ingress: made, read, replaced, deleted
        ("POST", ingresses, INGRESS, 201),
        ("GET", f"{ingresses}/iris", None, 200),
        ("PUT", f"{ingresses}/iris", None, 200),  # body: the object as read
        ("DELETE", f"{ingresses}/iris", None, 200),
    ]  # fmt: skip
    seen = []
    for method, url, body, _ in calls:
        if method == "PUT" and body is None:
            seen.append(update(http, url))
            continue
        headers = MERGE_PATCH if method == "PATCH" else None
        seen.append(http.request(method, url, json=body, headers=headers).status_code)
    assert seen == [status for *_, status in calls]


INGRESS = {"metadata": {"name": "iris"}, "spec": {"rules": [{"host": "iris.example.com", "http": {
    "paths": [{"path": "/", "pathType": "Prefix",
               "backend": {"service": {"name": "iris", "port": {"number": 80}}}}]}}]}}  # fmt: skip


def update(http: httpx.Client, url: str, attempts: int = 5) -> int:
    """Read, then write back (PUT): retried on 409, as the deployment controller may write the
    object in between (optimistic concurrency on resourceVersion)."""
    for _ in range(attempts):
        answer = http.put(url, json=http.get(url).json())
        if answer.status_code != 409:
            return answer.status_code
    return 409


def test_the_operator_is_forbidden_everything_else(operator: Operator) -> None:
    ns, other, http, admin = operator.namespace, operator.other, operator.http, operator.admin
    assert (
        admin.post(
            f"/apis/turnout.dev/v1alpha1/namespaces/{ns}/modeldeployments", json=md("iris")
        ).status_code
        == 201
    )
    forbidden = [
        # other verbs on its own resources
        ("DELETE", f"/apis/turnout.dev/v1alpha1/namespaces/{ns}/modeldeployments/iris", None, "delete", "modeldeployments", "turnout.dev", ns),
        ("POST", f"/apis/turnout.dev/v1alpha1/namespaces/{ns}/modeldeployments", md("new"), "create", "modeldeployments", "turnout.dev", ns),
        ("DELETE", f"/apis/apps/v1/namespaces/{ns}/deployments/x", None, "delete", "deployments", "apps", ns),
        ("DELETE", f"/api/v1/namespaces/{ns}/services/x", None, "delete", "services", "", ns),
        # the kinds it watches are read from kopf's indexes, never one by one
        ("GET", f"/api/v1/namespaces/{ns}/services/x", None, "get", "services", "", ns),
        ("GET", f"/apis/turnout.dev/v1alpha1/namespaces/{ns}/modeldeployments/iris", None, "get", "modeldeployments", "turnout.dev", ns),
        ("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/x", None, "get", "deployments", "apps", ns),
        ("GET", f"/api/v1/namespaces/{ns}/services/x:http/proxy/", None, "get", "services/proxy", "", ns),
        ("GET", f"/api/v1/namespaces/{ns}/secrets", None, "list", "secrets", "", ns),
        ("POST", f"/api/v1/namespaces/{ns}/pods", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}, "create", "pods", "", ns),
        ("GET", f"/api/v1/namespaces/{ns}/configmaps", None, "list", "configmaps", "", ns),
        ("GET", f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses", None, "list", "ingresses", "networking.k8s.io", ns),
        ("PATCH", f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses/x", {}, "patch", "ingresses", "networking.k8s.io", ns),
        ("POST", f"/api/v1/namespaces/{ns}/pods/x:8080/proxy/invocations", {}, "create", "pods/proxy", "", ns),
        # its own resources in a namespace it does not watch
        ("GET", f"/apis/turnout.dev/v1alpha1/namespaces/{other}/modeldeployments", None, "list", "modeldeployments", "turnout.dev", other),
        ("POST", f"/apis/apps/v1/namespaces/{other}/deployments", deployment("x"), "create", "deployments", "apps", other),
        ("GET", f"/api/v1/namespaces/{other}/secrets/mlflow", None, "get", "secrets", "", other),
        # the cluster scope
        ("GET", "/api/v1/nodes", None, "list", "nodes", "", None),
        ("GET", "/api/v1/namespaces", None, "list", "namespaces", "", None),
        ("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", None, "list", "customresourcedefinitions", "apiextensions.k8s.io", None),
        ("GET", "/apis/turnout.dev/v1alpha1/modeldeployments", None, "list", "modeldeployments", "turnout.dev", None),
    ]  # fmt: skip
    for method, url, body, verb, resource, group, namespace in forbidden:
        answer = http.request(method, url, json=body)
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        assert (answer.status_code, answer.json()["reason"]) == (403, "Forbidden"), (method, url)
        assert answer.json()["message"].endswith(
            f'User "{USER}" cannot {verb} resource "{resource}" in API group "{group}"{where}'
        ), answer.json()["message"]


def test_the_authorizer_grants_exactly_the_roles_rules(operator: Operator) -> None:
    """Every verb on every resource the Role names, in the watched namespace and another, as
    Kubernetes' authorizer decides for the operator (SelfSubjectAccessReview)."""

    def allowed(group: str, resource: str, verb: str, namespace: str) -> bool:
        plural, _, sub = resource.partition("/")
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": {"group": group, "resource": plural, "subresource": sub,
                                                  "verb": verb, "namespace": namespace}}}  # fmt: skip
        answer = operator.http.post(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json=review
        )
        assert answer.status_code == 201, answer.text
        return bool(answer.json()["status"]["allowed"])

    granted = {
        (g, r, v)
        for rule in operator.rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    resources = sorted({(g, r) for g, r, _ in granted})
    decided = {(g, r, v): allowed(g, r, v, operator.namespace) for g, r in resources for v in VERBS}
    assert {key for key, yes in decided.items() if yes} == granted
    assert [
        key
        for g, r in resources
        for v in VERBS
        if allowed(g, r, v, operator.other)
        for key in [(g, r, v)]
    ] == []
