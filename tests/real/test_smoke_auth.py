"""The operator's smoke test of a preview that requires a token, through a real API server's
service proxy: the operator reads the token from the ModelDeployment's token Secret with its own
RBAC, and sends it in `X-Turnout-Token`, because the API server deletes `Authorization` before
forwarding (k8s.io/apiserver/pkg/endpoints/filters/authentication.go; test_proxy.py shows it).

The preview is a real `turnout-serve` with auth on, serving a version of the test MLflow registry
from a pod's network namespace; it reaches MLflow at the bridge address through a forwarder. The
test plays the kubelet's part: it mounts the Secret as the token file, and reports the Pod running
with its IP, which the selector-less Service's EndpointSlice names.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.conftest import BIN, Registry, require_tool, wait_until
from tests.integration.outage import Forwarder
from tests.real import controlplane as cp
from tests.real import netns
from tests.real.kube import endpoint_slice, register_node, report_pod
from tests.real.operator import grant_operator_role, operator_token
from turnout_operator.kube import Kube
from turnout_operator.registry import ModelRegistry

pytestmark = pytest.mark.real

SECRET, SERVICE, PORT = "serve-tokens", "smoke-preview", 8080
TOKENS = "\n  s3cret-one  \nsecond-token\n"  # a blank first line: the operator skips it
MESSAGE = (
    "A valid bearer token is required (Authorization: Bearer <token>, or X-Turnout-Token: <token>)."
)


def refusal(body: str) -> tuple[str, str]:
    """(error_code, message) of turnout-serve's JSON error body."""
    error = json.loads(body)
    return error["error_code"], error["message"]


@dataclass
class Preview:
    namespace: str
    proxy: str  # .../services/smoke-preview:http/proxy
    operator: Kube  # the operator's adapter, as the operator's ServiceAccount
    payload: bytes  # the version's input example, read by the operator's registry adapter


def operator_client(
    plane: cp.ControlPlane, core: client.CoreV1Api, namespace: str
) -> client.ApiClient:
    """An API client as the operator: its ServiceAccount bound to the chart's namespaced Role."""
    grant_operator_role(plane, namespace)
    config = client.Configuration()
    config.host = plane.server
    config.ssl_ca_cert = str(plane.ca)
    config.api_key = {"authorization": f"Bearer {operator_token(core)}"}
    return client.ApiClient(config)


def serve(pod: netns.Pod, tracking_uri: str, tokens: Path, home: Path) -> subprocess.Popen[bytes]:
    """turnout-serve in the pod's network namespace, listening on the pod's IP, auth on."""
    argv = [str(BIN / "turnout-serve"), "-m", "models:/Diabetes/1", "--host", pod.ip,
            "-p", str(PORT), "--auth-token-file", str(tokens), "--cache-dir", str(home / "cache"),
            "--color", "green"]  # fmt: skip
    with (home / "serve.log").open("wb") as log:
        return subprocess.Popen(pod.exec(argv), stdout=log, stderr=subprocess.STDOUT,
                                env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home),
                                     "MLFLOW_TRACKING_URI": tracking_uri,
                                     # the API server keeps its connection to the pod open: a
                                     # test server need not drain it for the default 30 s
                                     "TURNOUT_GRACEFUL_SHUTDOWN_SECONDS": "2"},
                                preexec_fn=cp.die_with_parent)  # fmt: skip


@pytest.fixture(scope="module")
def preview(
    control_plane: cp.ControlPlane, core: client.CoreV1Api, pod_network: netns.PodNetwork,
    mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Preview]:  # fmt: skip
    """One preview for the module (a model load is the slow part): its own namespace and Node."""
    home = tmp_path_factory.mktemp("smoke")
    namespace, node = f"smoke-auth-{uuid.uuid4().hex[:5]}", f"node-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    wait_until(lambda: core.read_namespaced_service_account("default", namespace), timeout=60,
               interval=0.1, what=f"ServiceAccount {namespace}/default")  # fmt: skip
    register_node(core, node)
    with control_plane.http() as admin:
        secret = {"metadata": {"name": SECRET}, "stringData": {"tokens": TOKENS}}
        assert admin.post(f"/api/v1/namespaces/{namespace}/secrets", json=secret).status_code == 201
        # the kubelet's part: the Secret's `tokens` key mounted as the token file
        mounted = core.read_namespaced_secret(SECRET, namespace).data["tokens"]
        (home / "tokens").write_bytes(base64.b64decode(mounted))
        mlflow_port = int(mlflow_registry.uri.rsplit(":", 1)[1])
        with Forwarder(mlflow_port, host=pod_network.gateway) as mlflow:
            pod = pod_network.add_pod("smoke")
            process = serve(pod, mlflow.url, home / "tokens", home)
            try:
                url = f"http://{pod.ip}:{PORT}"
                wait_until(lambda: _alive(process, home) and httpx.get(f"{url}/v2/health/ready").status_code == 200,
                           timeout=180, interval=0.5, what=f"turnout-serve at {url}")  # fmt: skip
                manifest: dict[str, Any] = {
                    "metadata": {"name": "smoke-green"},
                    "spec": {"nodeName": node, "containers": [{"name": "server", "image": "turnout-serve"}]},
                }  # fmt: skip
                assert (
                    admin.post(f"/api/v1/namespaces/{namespace}/pods", json=manifest).status_code
                    == 201
                )
                report_pod(core, namespace, "smoke-green", pod.ip, ready=True)
                service = {"metadata": {"name": SERVICE},
                           "spec": {"ports": [{"name": "http", "port": 80, "targetPort": PORT}]}}  # fmt: skip
                assert (
                    admin.post(f"/api/v1/namespaces/{namespace}/services", json=service).status_code
                    == 201
                )
                target = {"kind": "Pod", "namespace": namespace, "name": "smoke-green"}
                created = admin.post(f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
                                     json=endpoint_slice(SERVICE, pod.ip, PORT, target))  # fmt: skip
                assert created.status_code == 201, created.text
                proxy = f"/api/v1/namespaces/{namespace}/services/{SERVICE}:http/proxy"
                wait_until(lambda: admin.get(f"{proxy}/v2/health/ready").status_code == 200,
                           timeout=30, what="the service proxy to reach the preview")  # fmt: skip
                payload = ModelRegistry(mlflow_registry.uri).smoke_payload("Diabetes", "1")
                assert payload is not None
                with operator_client(control_plane, core, namespace) as api:
                    yield Preview(namespace, proxy, Kube(api), payload)
            finally:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
                pod_network.remove_pod("smoke")
                core.delete_namespaced_pod("smoke-green", namespace, grace_period_seconds=0)
                core.delete_namespace(namespace)
                core.delete_node(node)


def _alive(process: subprocess.Popen[bytes], home: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"turnout-serve exited {process.returncode}:\n"
                             f"{(home / 'serve.log').read_text()[-3000:]}")  # fmt: skip
    return True


def test_the_smoke_test_passes_with_the_token_of_the_secret(preview: Preview) -> None:
    token = preview.operator.auth_token(preview.namespace, SECRET)
    assert token == "s3cret-one"
    result = preview.operator.smoke(preview.namespace, SERVICE, "1", preview.payload,
                                    direct=False, timeout=10, token=token)  # fmt: skip
    assert (result.version, result.passed, result.message) == (
        "1", True, "input example answered with predictions",
    )  # fmt: skip


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_the_smoke_test_fails_with_the_401_without_the_right_token(
    preview: Preview, token: str | None
) -> None:
    result = preview.operator.smoke(preview.namespace, SERVICE, "1", preview.payload,
                                    direct=False, timeout=10, token=token)  # fmt: skip
    assert not result.passed
    assert result.message.startswith("smoke test got HTTP 401: "), result.message
    answer = result.message.removeprefix("smoke test got HTTP 401: ")
    assert refusal(answer) == ("UNAUTHENTICATED", MESSAGE)


def test_a_token_in_authorization_never_reaches_the_preview(
    control_plane: cp.ControlPlane, preview: Preview
) -> None:
    """Why the operator uses X-Turnout-Token: the same valid token in `Authorization` is deleted
    by the API server (the caller authenticated with its client certificate), so the preview
    answers 401; in X-Turnout-Token it arrives."""
    with control_plane.http() as admin:
        bearer = admin.post(f"{preview.proxy}/invocations", content=preview.payload,
                            headers={"Content-Type": "application/json", "Authorization": "Bearer s3cret-one"})  # fmt: skip
        custom = admin.post(f"{preview.proxy}/invocations", content=preview.payload,
                            headers={"Content-Type": "application/json", "X-Turnout-Token": "second-token"})  # fmt: skip
    assert (bearer.status_code, refusal(bearer.text)) == (401, ("UNAUTHENTICATED", MESSAGE))
    assert custom.status_code == 200, custom.text
    assert len(custom.json()["predictions"]) == 5  # the logged input example's rows


def test_the_token_secret_is_read_with_the_operators_rbac_only_in_its_namespace(
    control_plane: cp.ControlPlane, preview: Preview
) -> None:
    """`get` on secrets in the watched namespace is all the token needs: a missing Secret and
    a Secret without a token are reported, and would fail the smoke test with that message."""
    with control_plane.http() as admin:
        empty = {"metadata": {"name": "blank"}, "stringData": {"tokens": " \n\n"}}
        assert (
            admin.post(f"/api/v1/namespaces/{preview.namespace}/secrets", json=empty).status_code
            == 201
        )
    with pytest.raises(LookupError) as missing:
        preview.operator.auth_token(preview.namespace, "no-such-secret")
    assert str(missing.value) == f"secret {preview.namespace}/no-such-secret not found"
    with pytest.raises(LookupError) as blank:
        preview.operator.auth_token(preview.namespace, "blank")
    assert str(blank.value) == f"secret {preview.namespace}/blank holds no token in 'tokens'"
    with pytest.raises(client.ApiException) as forbidden:
        preview.operator.auth_token("default", SECRET)
    assert forbidden.value.status == 403


def test_the_documented_kubectl_proxy_call_reaches_the_model_with_the_token(
    control_plane: cp.ControlPlane, preview: Preview
) -> None:
    """docs/operations.md, "Calling a model that requires a token": `kubectl proxy`, the token
    read with the documented `kubectl get secret ... go-template`, sent in X-Turnout-Token."""
    kubectl = require_tool("kubectl")
    config = ["--kubeconfig", str(control_plane.kubeconfig)]
    with control_plane.http() as admin:
        single = {
            "metadata": {"name": "diabetes-tokens"},
            "stringData": {"tokens": "second-token\n"},
        }
        assert (
            admin.post(f"/api/v1/namespaces/{preview.namespace}/secrets", json=single).status_code
            == 201
        )
    read = subprocess.run([kubectl, *config, "get", "secret", "diabetes-tokens", "-n", preview.namespace,
                           "-o", "go-template={{.data.tokens | base64decode}}"],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    token = read.stdout.rstrip("\n")  # as $(...) strips it
    proxy = subprocess.Popen([kubectl, *config, "proxy", "--port", "0"], stdout=subprocess.PIPE,
                             text=True, preexec_fn=cp.die_with_parent)  # fmt: skip
    try:
        assert proxy.stdout is not None
        started = proxy.stdout.readline()  # "Starting to serve on 127.0.0.1:PORT"
        assert started.startswith("Starting to serve on 127.0.0.1:"), started
        url = f"http://{started.split()[-1]}{preview.proxy}/invocations"
        headers = {"Content-Type": "application/json"}
        sent = httpx.post(
            url, content=preview.payload, headers={**headers, "X-Turnout-Token": token}
        )
        bearer = httpx.post(
            url, content=preview.payload, headers={**headers, "Authorization": f"Bearer {token}"}
        )
    finally:
        proxy.terminate()
        proxy.wait(10)
    assert sent.status_code == 200, sent.text
    assert len(sent.json()["predictions"]) == 5
    assert (bearer.status_code, refusal(bearer.text)) == (401, ("UNAUTHENTICATED", MESSAGE))
