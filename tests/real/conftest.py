"""Fixtures of the `real` suite: one real control plane for the session (built before the first
test that needs it if the cache lacks it; these tests run last, see tests/conftest.py), the
admin's Kubernetes client, a namespace per test, the project's CRD applied once, a pod network
(bridge + network namespaces) for servers the API server proxies to, and one node agent for the session (`node_agent`) that runs the pods scheduled onto its Node.

Without Go the suite skips, saying so; under CI=true it fails instead (nothing may skip in CI).
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from kubernetes import client, config

from tests.conftest import IN_CI, Registry, wait_until
from tests.integration.cluster import Cluster
from tests.integration.outage import Forwarder
from tests.real import cluster as local_cluster
from tests.real import controlplane as cp
from tests.real import netns
from tests.real.kube import register_node
from tests.real.node import NodeAgent
from tests.real.operator import apply_crd, operator_cluster

ECHO = Path(__file__).with_name("echo.py")
_build: dict[str, Path | str] = {}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """Before the first test that needs the control plane: its binaries, built now if the cache
    lacks them (or waited for, when `make test` started the build in the background), with the
    build's progress on the terminal. Outside every test's timeout: this wrapper runs first."""
    if not _build and "binaries" in getattr(item, "fixturenames", ()):
        capture = item.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            try:
                _build["bin"] = cp.build()
            except cp.ToolchainMissing as exc:
                _build["missing"] = str(exc)
            except RuntimeError as exc:  # a broken build fails the tests that need it, with why
                _build["failed"] = str(exc)
    return (yield)


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def binaries() -> Path:
    """The bin directory of the built control plane (built by pytest_collection_finish)."""
    if "missing" in _build:
        unavailable(str(_build["missing"]))
    if "failed" in _build:
        pytest.fail(str(_build["failed"]))
    return Path(_build["bin"])


@pytest.fixture(scope="session")
def control_plane(
    binaries: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[cp.ControlPlane]:
    plane = cp.ControlPlane(tmp_path_factory.mktemp("controlplane"), binaries)
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def api(control_plane: cp.ControlPlane) -> Iterator[client.ApiClient]:
    """The admin's client (system:masters), from the kubeconfig the control plane wrote."""
    with config.new_client_from_config(config_file=str(control_plane.kubeconfig)) as admin:
        yield admin


@pytest.fixture(scope="session")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace, with its `default` ServiceAccount (made by the controller manager)."""
    name = f"{re.sub(r'[^a-z0-9]+', '-', request.node.name.lower())[:40].strip('-')}-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_until(lambda: core.read_namespaced_service_account("default", name), timeout=60,
               interval=0.1, what=f"ServiceAccount {name}/default")  # fmt: skip
    yield name
    core.delete_namespace(name)


@dataclass
class RunningNode:
    """The session's node agent: its Node's name, the bridge address where pods reach the host
    (and the API server), the agent's state (pods' files and logs)."""

    agent: NodeAgent

    @property
    def name(self) -> str:
        return self.agent.name

    @property
    def host_ip(self) -> str:
        return self.agent.host_ip

    def pod_dir(self, pod: client.V1Pod) -> Path:
        meta = pod.metadata
        return self.agent.state / "pods" / f"{meta.namespace}_{meta.name}_{meta.uid}"

    def netns(self, pod: client.V1Pod) -> str:
        return f"{netns.PREFIX}{self.agent.info['pid']:x}-{pod.metadata.uid[:8]}"

    def expose(self, port: int) -> Forwarder:
        """Forward host_ip:port to 127.0.0.1:port (a server of the test that pods must reach);
        use as a context manager."""
        return Forwarder(port, host=self.host_ip, port=port)


# The longest CrashLoopBackOff of the session's node: the kubelet's is 300 s; back-offs of 10 s,
# 20 s, 20 s, ... keep the crash-loop tests short.
MAX_BACKOFF = 20.0


@pytest.fixture(scope="session")
def node_agent(control_plane: cp.ControlPlane) -> Iterator[RunningNode]:
    """One node agent for the session (what `make cluster` starts, from the same code)."""
    reason = netns.available()
    if reason:
        unavailable(reason)
    agent = local_cluster.node_agent(control_plane, max_backoff=MAX_BACKOFF)
    agent.start()
    yield RunningNode(agent)
    agent.stop()


@pytest.fixture(scope="session")
def pods_registry(node_agent: RunningNode, mlflow_registry: Registry) -> Iterator[str]:
    """The session's MLflow registry as pods reach it: its URI at the bridge address."""
    with node_agent.expose(int(mlflow_registry.uri.rsplit(":", 1)[1])) as forward:
        yield forward.url


@pytest.fixture
def node(core: client.CoreV1Api) -> Iterator[str]:
    """A Node registered by hand, Ready (no kubelet behind it: pods bound to it stay Pending)."""
    name = f"node-{uuid.uuid4().hex[:6]}"
    register_node(core, name)
    yield name
    core.delete_node(name)


@pytest.fixture(scope="session")
def crd(api: client.ApiClient) -> dict[str, object]:
    """The project's CustomResourceDefinition, applied and Established."""
    return apply_crd(api)


@pytest.fixture(scope="session")
def pod_network() -> Iterator[netns.PodNetwork]:
    reason = netns.available()
    if reason:
        unavailable(reason)
    network = netns.PodNetwork().setup()
    yield network
    network.teardown()


@dataclass(frozen=True)
class PodServer:
    pod: netns.Pod
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.pod.ip}:{self.port}"


@pytest.fixture(scope="session")
def echo_server(
    pod_network: netns.PodNetwork, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PodServer]:
    """tests/real/echo.py in a pod's network namespace, listening on the pod's IP only."""
    pod = pod_network.add_pod("echo")
    log = tmp_path_factory.mktemp("echo") / "echo.log"
    with log.open("wb") as out:
        process = subprocess.Popen(pod.exec([sys.executable, str(ECHO), pod.ip, "8080"]),
                                   stdout=out, stderr=subprocess.STDOUT,
                                   preexec_fn=cp.die_with_parent)  # fmt: skip
    server = PodServer(pod, 8080, process)
    try:
        wait_until(lambda: process.poll() is None and httpx.get(f"{server.url}/").status_code == 200,
                   timeout=30, interval=0.1, what=f"the echo server at {server.url}")  # fmt: skip
        yield server
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def cluster(
    control_plane: cp.ControlPlane, core: client.CoreV1Api, crd: dict[str, object],
    mlflow_registry: Registry, pods_registry: str, request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:  # fmt: skip
    """The operator under the chart's RBAC, watching a namespace of the module's own (named after
    it), with the scenario helpers of tests/integration/cluster.py; each test's ModelDeployments
    are deleted when it ends (`clean_model_deployments`)."""
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    yield from operator_cluster(control_plane, core, mlflow_registry, pods_registry,
                                tmp_path_factory.mktemp(prefix), prefix)  # fmt: skip


@pytest.fixture
def clean_model_deployments(cluster: Cluster) -> Iterator[None]:
    yield
    cluster.delete_model_deployments()
