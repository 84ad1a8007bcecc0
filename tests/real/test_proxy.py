"""The API server's service proxy (`/api/v1/namespaces/NS/services/SVC:PORT/proxy/...`) to a
server in a pod's network namespace, through a selector-less Service and a hand-written
EndpointSlice: the way the operator smoke-tests a preview from outside the cluster.

What the proxy forwards decides how that smoke test can authenticate to a preview that requires a
token: the API server deletes the `Authorization` header once it has authenticated the caller
(k8s.io/apiserver/pkg/endpoints/filters/authentication.go), whatever the credential, and passes
other headers on. The echo server shows exactly which headers arrive.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.conftest import wait_until
from tests.real import controlplane as cp
from tests.real.conftest import PodServer
from tests.real.kube import endpoint_slice, report_pod, service_account_token

pytestmark = pytest.mark.real

PROBE = "X-Turnout-Probe"
PROXY_ROLE = {
    "metadata": {"name": "proxy"},
    "rules": [{"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get", "create"]}],
}


@dataclass
class Proxied:
    namespace: str
    base: str  # .../services/echo:http/proxy
    token: str  # a ServiceAccount allowed services/proxy get + create


@pytest.fixture
def proxied(
    control_plane: cp.ControlPlane,
    core: client.CoreV1Api,
    namespace: str,
    node: str,
    echo_server: PodServer,
) -> Iterator[Proxied]:
    """Service `echo` (no selector) -> EndpointSlice -> Pod `echo`, whose reported IP is the
    echo server's pod IP (the proxy only goes to addresses of a Pod the slice names)."""
    with control_plane.http() as admin:
        pod = {
            "metadata": {"name": "echo"},
            "spec": {"nodeName": node, "containers": [{"name": "echo", "image": "echo"}]},
        }
        assert admin.post(f"/api/v1/namespaces/{namespace}/pods", json=pod).status_code == 201
        report_pod(core, namespace, "echo", echo_server.pod.ip, ready=True)
        service = {
            "metadata": {"name": "echo"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": echo_server.port}]},
        }
        assert (
            admin.post(f"/api/v1/namespaces/{namespace}/services", json=service).status_code == 201
        )
        target = {"kind": "Pod", "namespace": namespace, "name": "echo"}
        created = admin.post(f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
                             json=endpoint_slice("echo", echo_server.pod.ip, echo_server.port, target))  # fmt: skip
        assert created.status_code == 201, created.text
        rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
        assert admin.post(f"{rbac}/roles", json=PROXY_ROLE).status_code == 201
        binding = {"metadata": {"name": "proxy"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "proxy"},
                   "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}]}  # fmt: skip
        assert admin.post(f"{rbac}/rolebindings", json=binding).status_code == 201
        token = service_account_token(core, namespace, "default")
        base = f"/api/v1/namespaces/{namespace}/services/echo:http/proxy"
        yield Proxied(namespace, base, token)
        core.delete_namespaced_pod("echo", namespace, grace_period_seconds=0)


def echoed(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    body["header"] = {name.lower(): value for name, value in body["headers"]}
    return body


def test_the_proxy_reaches_a_pod_and_forwards_path_query_method_and_body(
    control_plane: cp.ControlPlane, proxied: Proxied
) -> None:
    with control_plane.http() as admin:
        got = echoed(admin.get(f"{proxied.base}/v2/models/iris/ready", params={"a": "1"}))
        posted = echoed(admin.post(f"{proxied.base}/invocations", json={"inputs": [[1, 2]]}))
    assert (got["method"], got["path"], got["body"]) == ("GET", "/v2/models/iris/ready?a=1", "")
    assert (posted["method"], posted["path"]) == ("POST", "/invocations")
    assert posted["body"] == '{"inputs":[[1,2]]}'
    assert posted["header"]["content-type"] == "application/json"


@pytest.mark.parametrize("credential", ["client certificate", "ServiceAccount token"])
def test_the_api_server_deletes_authorization_and_forwards_other_headers(
    control_plane: cp.ControlPlane, proxied: Proxied, credential: str
) -> None:
    """The caller's own credential never reaches the pod, and neither does a second
    Authorization header meant for the pod: a preview that wants a token must read it from
    another header."""
    headers = {PROBE: "checked", "X-Api-Key": "preview-key", "Accept": "application/json"}
    if credential == "client certificate":
        # the certificate authenticates; this Authorization header is meant for the pod
        http = control_plane.http()
        headers["Authorization"] = "Bearer token-for-the-preview"
    else:
        http = control_plane.http(token=proxied.token)
    with http:
        answer = echoed(http.post(f"{proxied.base}/invocations", headers=headers, content=b"{}"))
    assert "authorization" not in answer["header"]
    # exactly what arrives, in order: Host stays the API server's, the API server adds
    # X-Forwarded-For (the caller's address) and X-Forwarded-Uri (the path the caller asked
    # for); Connection is hop-by-hop and dropped
    assert answer["headers"] == [
        ["Host", control_plane.server.removeprefix("https://")],
        ["User-Agent", f"python-httpx/{httpx.__version__}"],
        ["Content-Length", "2"],
        ["Accept", "application/json"],
        ["Accept-Encoding", "gzip, deflate"],
        ["X-Api-Key", "preview-key"],
        ["X-Forwarded-For", "127.0.0.1"],
        ["X-Forwarded-Uri", f"{proxied.base}/invocations"],
        [PROBE, "checked"],
    ]


def test_an_endpoint_that_names_no_pod_is_not_proxied_to(
    control_plane: cp.ControlPlane, proxied: Proxied, echo_server: PodServer
) -> None:
    """The proxy only goes to an address that a Pod the endpoint's targetRef names reports in
    status.podIPs: a node agent must write podIPs, and a hand-written slice must name the pod."""
    ns = proxied.namespace
    with control_plane.http() as admin:
        service = {"metadata": {"name": "bare"}, "spec": {"ports": [{"name": "http", "port": 80}]}}
        assert admin.post(f"/api/v1/namespaces/{ns}/services", json=service).status_code == 201
        slice_ = endpoint_slice("bare", echo_server.pod.ip, echo_server.port, None)
        assert (
            admin.post(
                f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices", json=slice_
            ).status_code
            == 201
        )
        answer = admin.get(f"/api/v1/namespaces/{ns}/services/bare:http/proxy/")
        assert (answer.status_code, answer.json()["message"]) == (
            503,
            'no endpoints available for service "bare"',
        )
        # the same slice naming the pod works
        patch = [
            {
                "op": "add",
                "path": "/endpoints/0/targetRef",
                "value": {"kind": "Pod", "namespace": ns, "name": "echo"},
            }
        ]
        patched = admin.patch(f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/bare-1", json=patch,
                              headers={"Content-Type": "application/json-patch+json"})  # fmt: skip
        assert patched.status_code == 200, patched.text
        wait_until(lambda: admin.get(f"/api/v1/namespaces/{ns}/services/bare:http/proxy/").status_code == 200,
                   timeout=30, what="the proxy to use the slice that names the pod")  # fmt: skip
