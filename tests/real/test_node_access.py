"""Who may do what: a pod reaches the API server in-cluster (kubernetes' load_incluster_config,
with its mounted ServiceAccount token and CA, at KUBERNETES_SERVICE_HOST/PORT) and gets exactly
what its ServiceAccount's Role grants, and a server of the host that is exposed on the bridge
address; the node agent itself, as `system:node:<name>`, reads only
the Secrets of pods bound to it (the Node authorizer) and writes only its own Node
(NodeRestriction)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.conftest import free_port, wait_until
from tests.real.conftest import RunningNode
from tests.real.kube import register_node

pytestmark = pytest.mark.real

IN_CLUSTER = textwrap.dedent("""
    import json, os, sys
    from kubernetes import client, config
    config.load_incluster_config()
    core = client.CoreV1Api()
    namespace = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
    seen = {"pods": sorted(p.metadata.name for p in core.list_namespaced_pod(namespace).items)}
    for what, call in (("secrets", lambda: core.list_namespaced_secret(namespace)),
                       ("delete", lambda: core.delete_namespaced_pod("reader", namespace)),
                       ("other", lambda: core.list_namespaced_pod("default"))):
        try:
            call()
            seen[what] = 200
        except client.ApiException as exc:
            seen[what] = exc.status
    print(json.dumps(seen), flush=True)
""")


def test_a_pod_lists_pods_in_cluster_as_its_role_allows_and_no_more(
    api: client.ApiClient, core: client.CoreV1Api, namespace: str, node_agent: RunningNode
) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "pod-reader"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})  # fmt: skip
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})  # fmt: skip
    core.create_namespaced_pod(namespace, {"metadata": {"name": "reader"}, "spec": {
        "serviceAccountName": "reader", "restartPolicy": "Never",
        "containers": [{"name": "reader", "image": "python", "command": [sys.executable, "-c", IN_CLUSTER]}]}})  # fmt: skip

    def finished() -> client.V1Pod | None:
        pod = core.read_namespaced_pod("reader", namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    pod = wait_until(finished, timeout=90, interval=0.2, what="the in-cluster client to finish")
    log = (node_agent.pod_dir(pod) / "reader.log").read_text()
    assert pod.status.phase == "Succeeded", log
    assert json.loads(log.splitlines()[-1]) == {
        "pods": ["reader"],
        "secrets": 403,
        "delete": 403,
        "other": 403,
    }


def test_the_node_reads_only_its_pods_secrets_and_writes_only_its_own_node(
    core: client.CoreV1Api, namespace: str, node_agent: RunningNode
) -> None:
    for name in ("used", "unused"):
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": name}, "stringData": {"k": name}}
        )
    core.create_namespaced_pod(namespace, {"metadata": {"name": "user"}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                        "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "used", "key": "k"}}}]}]}})  # fmt: skip
    wait_until(lambda: core.read_namespaced_pod("user", namespace).status.phase == "Running",
               timeout=60, what="the pod that uses Secret `used` to run")  # fmt: skip
    other = f"node-{uuid.uuid4().hex[:6]}"
    register_node(core, other)
    try:
        with config.new_client_from_config(
            config_file=str(node_agent.agent.kubeconfig)
        ) as node_api:
            as_node = client.CoreV1Api(node_api)
            assert as_node.read_namespaced_secret("used", namespace).data == {
                "k": "dXNlZA=="
            }  # "used"
            codes = {}
            for what, call in {
                "unused secret": lambda: as_node.read_namespaced_secret("unused", namespace),
                "list secrets": lambda: as_node.list_namespaced_secret(namespace),
                "other node's labels": lambda: as_node.patch_node(other, {"metadata": {"labels": {"x": "y"}}}),
                "other node's status": lambda: as_node.patch_node_status(other, {"status": {"phase": "Running"}}),
            }.items():  # fmt: skip
                with pytest.raises(client.ApiException) as refused:
                    call()
                codes[what] = refused.value.status
            assert codes == dict.fromkeys(codes, 403)
            own = as_node.patch_node(
                node_agent.name, {"metadata": {"labels": {"turnout.dev/test": "yes"}}}
            )
            assert own.metadata.labels["turnout.dev/test"] == "yes"
    finally:
        core.delete_node(other)


FETCH = textwrap.dedent("""
    import os, sys, urllib.request
    url = f"http://{os.environ['HOST_IP']}:{sys.argv[1]}/from-pod"
    print(urllib.request.urlopen(url, timeout=10).read().decode(), flush=True)
""")


def test_a_pod_reaches_a_host_server_exposed_on_the_bridge_address(
    core: client.CoreV1Api, namespace: str, node_agent: RunningNode, tmp_path: Path
) -> None:
    (tmp_path / "from-pod").write_text("served on the host's loopback")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(tmp_path)], stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        with node_agent.expose(port):
            core.create_namespaced_pod(namespace, {"metadata": {"name": "fetch"}, "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "fetch", "image": "python", "command": [sys.executable, "-c", FETCH, str(port)],
                                "env": [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]}]}})  # fmt: skip

            def finished() -> client.V1Pod | None:
                pod = core.read_namespaced_pod("fetch", namespace)
                return pod if pod.status.phase in ("Succeeded", "Failed") else None

            pod = wait_until(finished, timeout=60, interval=0.2, what="the pod's request to finish")
    finally:
        server.terminate()
        server.wait(10)
    log = (node_agent.pod_dir(pod) / "fetch.log").read_text()
    assert (pod.status.phase, log) == ("Succeeded", "served on the host's loopback\n")
