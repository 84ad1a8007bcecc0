"""Fixtures and manifests shared by the emulator's own tests: a running KubeEmulator, an official
client for it, a CRD and a Deployment builder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiClient

from tests.kube.emulator import KubeEmulator

Obj = dict[str, Any]
GROUP = "example.dev"


def crd(plural: str, kind: str, *, scope: str = "Namespaced", status: bool = True) -> Obj:
    version = {"name": "v1", "served": True, "storage": True,
               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}  # fmt: skip
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {"group": GROUP, "scope": scope, "versions": [version],
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind}},
    }  # fmt: skip


WIDGETS = crd("widgets", "Widget")


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeEmulator]:
    with KubeEmulator(log_dir=tmp_path / "pods") as emulator:
        yield emulator


@pytest.fixture
def api(kube: KubeEmulator, tmp_path: Path) -> Iterator[ApiClient]:
    client = kubernetes.config.new_client_from_config(str(kube.write_kubeconfig(tmp_path / "kc")))
    yield client
    client.close()


def deployment(name: str, replicas: int = 1, **container: Any) -> Obj:
    main = {"name": "main", "image": "example/app:1", **container}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [main]}}},
    }  # fmt: skip
