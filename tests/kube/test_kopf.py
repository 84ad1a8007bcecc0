"""A real kopf operator (defined here, run in its own thread by KopfRunner) against the emulator:
handled, finalized, status patched, events posted, owned Deployment garbage-collected, and the
exact API calls it needed (what its ClusterRole must allow)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import kubernetes
import pytest
from kopf.testing import KopfRunner
from kubernetes.client import AppsV1Api as Apps

from tests.conftest import wait_until
from tests.kube.conftest import GROUP, WIDGETS, deployment
from tests.kube.emulator import KubeEmulator

Obj = dict[str, Any]


def widget_operator(kubeconfig: Path, deleted: list[str]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.create(GROUP, "v1", "widgets", registry=registry)
    def create(
        body: kopf.Body, name: str, namespace: str | None, patch: kopf.Patch, **_: Any
    ) -> None:
        assert namespace is not None
        owned = deployment(name, replicas=2)
        kopf.adopt(owned, owner=body)
        with kubernetes.config.new_client_from_config(str(kubeconfig)) as client:
            Apps(client).create_namespaced_deployment(namespace, owned)
        patch.status["phase"] = "Deployed"
        kopf.info(body, reason="Deployed", message=f"Deployment {name} created")

    @kopf.on.delete(GROUP, "v1", "widgets", registry=registry)
    def delete(name: str, **_: Any) -> None:
        deleted.append(name)

    return registry


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """kopf's CLI reconfigures the root and asyncio loggers of the whole process: undo that."""
    root, aio = logging.getLogger(), logging.getLogger("asyncio")
    saved = (root.handlers[:], root.level, aio.handlers[:], aio.propagate)
    yield
    root.handlers[:], aio.handlers[:] = saved[0], saved[2]
    root.setLevel(saved[1])
    aio.propagate = saved[3]


@pytest.mark.usefixtures("restored_logging")
def test_a_kopf_operator_handles_finalizes_and_garbage_collects(
    kube: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    kube.apply_crd(WIDGETS)
    deleted: list[str] = []
    args = ["run", "--standalone", "--namespace", "default"]
    with KopfRunner(args, registry=widget_operator(kubeconfig, deleted), timeout=30) as runner:
        kube.create(
            {
                "apiVersion": f"{GROUP}/v1",
                "kind": "Widget",
                "metadata": {"name": "w1", "namespace": "default"},
            }
        )

        def handled() -> Obj | None:
            widget = kube.get(f"{GROUP}/v1", "Widget", "default", "w1")
            return widget if widget and "status" in widget else None

        def available() -> Obj | None:
            owned = kube.get("apps/v1", "Deployment", "default", "w1") or {}
            return owned if owned.get("status", {}).get("availableReplicas") == 2 else None

        widget = wait_until(handled, what="the widget's status")
        assert widget["status"] == {"phase": "Deployed"}
        assert widget["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
        owned = wait_until(available, what="the owned Deployment available")
        assert owned["metadata"]["ownerReferences"][0]["uid"] == widget["metadata"]["uid"]
        event = wait_until(
            lambda: [e for e in kube.events("default", "w1") if e["reason"] == "Deployed"]
        )[0]
        assert (event["type"], event["message"], event["involvedObject"]["kind"]) == (
            "Normal",
            "Deployment w1 created",
            "Widget",
        )
        kube.delete(f"{GROUP}/v1", "Widget", "default", "w1")
        wait_until(
            lambda: (
                not kube.list("v1", "Pod")
                and kube.get(f"{GROUP}/v1", "Widget", "default", "w1") is None
            ),
            what="GC",
        )
        assert kube.list("apps/v1", "Deployment") == [] and deleted == ["w1"]
    assert runner.exit_code == 0 and runner.exception is None
    used = {(c.verb, c.group, c.resource, c.subresource) for c in kube.requests}
    assert used == {
        ("list", "", "namespaces", ""), ("watch", "", "namespaces", ""),
        ("list", "apiextensions.k8s.io", "customresourcedefinitions", ""),
        ("watch", "apiextensions.k8s.io", "customresourcedefinitions", ""),
        ("list", GROUP, "widgets", ""), ("watch", GROUP, "widgets", ""), ("patch", GROUP, "widgets", ""),
        ("patch", GROUP, "widgets", "status"), ("create", "", "events", ""), ("create", "apps", "deployments", ""),
    }  # fmt: skip
