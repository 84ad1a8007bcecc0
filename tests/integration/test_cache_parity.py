"""The operator's reads from its indexes (cache.py) see what its reads from the API server see.

The objects are made by the operator's own adapter (kube.py) in the Kubernetes API emulator, and
the emulator's controller runs their pods (ready, or crash-looping).
One adapter reads them from the API; another reads them from indexes built as kopf builds
them (every object of a kind listed, slimmed as the operator's index handlers slim it). Each
observation the planner gets must be the same both ways, in every state reached.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import config

from tests.kube.emulator import KubeEmulator
from turnout_operator.cache import SLIM, Cache, Kind
from turnout_operator.crd import build_crd
from turnout_operator.domain.manifests import (
    NAME_LABEL,
    Defaults,
    build_deployment,
    build_service,
)
from turnout_operator.domain.scaling_manifests import build_autoscaler, build_disruption_budget
from turnout_operator.domain.spec import API_VERSION, COLORS, ModelDeploymentSpec
from turnout_operator.kube import Kube

NAMESPACE, NAME = "default", "parity"
SPEC = {"model": {"name": "Diabetes", "version": "3"}, "replicas": 2,
        "autoscaling": {"minReplicas": 2, "maxReplicas": 4}}  # fmt: skip
KINDS: dict[Kind, tuple[str, str]] = {
    "modeldeployments": (API_VERSION, "ModelDeployment"),
    "deployments": ("apps/v1", "Deployment"), "services": ("v1", "Service"),
    "pods": ("v1", "Pod"), "horizontalpodautoscalers": ("autoscaling/v2", "HorizontalPodAutoscaler"),
    "poddisruptionbudgets": ("policy/v1", "PodDisruptionBudget"),
}  # fmt: skip


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEmulator]:
    with KubeEmulator(log_dir=tmp_path_factory.mktemp("pods")) as emulator:
        emulator.apply_crd(build_crd())
        yield emulator


@pytest.fixture(scope="module")
def api(kube: KubeEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    path = kube.write_kubeconfig(tmp_path_factory.mktemp("cfg") / "kubeconfig")
    with config.new_client_from_config(config_file=str(path)) as made:
        yield made


def indexes(kube: KubeEmulator) -> dict[Kind, dict[tuple[str, str], list[dict[str, Any]]]]:
    """What kopf's indexes hold now: every object of each kind, slimmed (pods by owner)."""
    found: dict[Kind, dict[tuple[str, str], list[dict[str, Any]]]] = {}
    for kind, (api_version, kind_name) in KINDS.items():
        by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for obj in kube.list(api_version, kind_name, NAMESPACE):
            meta = obj["metadata"]
            name = meta["labels"][NAME_LABEL] if kind == "pods" else meta["name"]
            by_key.setdefault((meta["namespace"], name), []).append(SLIM[kind](obj))
        found[kind] = by_key
    return found


def observations(kube: Kube) -> dict[str, Any]:
    """Every read the planner's observation is made of."""
    return {
        "model_deployment": kube.model_deployment(NAMESPACE, NAME),
        "colors": kube.colors(NAMESPACE, NAME),
        "selectors": kube.selectors(NAMESPACE, NAME),
        "ready": {color: kube.ready_pods(NAMESPACE, NAME, color) for color in COLORS},
        "autoscaler": kube.autoscaler(NAMESPACE, NAME),
        "exposure": kube.exposure(NAMESPACE, NAME, ingress=False, http_route=False),
    }


def settled(kube: KubeEmulator, check: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the emulator's controller did not get there"
        time.sleep(0.1)


def test_cached_reads_equal_api_reads_through_a_rollout(kube: KubeEmulator, api: Any) -> None:
    owner = kube.create({"apiVersion": API_VERSION, "kind": "ModelDeployment",
                         "metadata": {"name": NAME, "namespace": NAMESPACE}, "spec": SPEC})  # fmt: skip
    spec = ModelDeploymentSpec.model_validate(SPEC)
    defaults = Defaults(image="turnout-serve:test", tracking_uri="http://mlflow")
    writer = Kube(api)

    def compare() -> dict[str, Any]:
        cached = Kube(api, Cache())
        cached.cache.attach(indexes(kube))
        seen = observations(cached)
        assert seen == observations(Kube(api))
        return seen

    kube.controller.behave_default("available")
    blue = build_deployment(NAME, NAMESPACE, "blue", "3", "models:/Diabetes/3", 2, spec, defaults)
    writer.apply_deployment(blue, owner)
    writer.apply_disruption_budget(build_disruption_budget(NAME, NAMESPACE, "blue",
                                                           spec.disruption_budget), owner)  # fmt: skip
    for role in ("active", "preview"):
        writer.point_service(build_service(NAME, NAMESPACE, role, "blue"), owner)
    assert spec.autoscaling is not None
    writer.apply_autoscaler(build_autoscaler(NAME, NAMESPACE, "blue", spec.autoscaling), owner)
    settled(kube, lambda: len(Kube(api).ready_pods(NAMESPACE, NAME, "blue")) == 2)
    seen = compare()
    assert seen["colors"]["blue"].available == 2
    assert seen["selectors"] == ("blue", "blue")
    assert seen["autoscaler"] == "blue"

    # a preview whose pods crash
    kube.controller.behave(NAMESPACE, f"{NAME}-green", "crashloop")
    green = build_deployment(NAME, NAMESPACE, "green", "4", "models:/Diabetes/4", 2, spec, defaults)
    writer.apply_deployment(green, owner)
    writer.point_service(build_service(NAME, NAMESPACE, "preview", "green"), owner)
    settled(kube, lambda: Kube(api).colors(NAMESPACE, NAME)["green"].failure is not None)
    seen = compare()
    assert seen["selectors"] == ("blue", "green")
    assert seen["colors"]["green"].available == 0
    assert seen["colors"]["green"].failure == "CrashLoopBackOff"

    # the switch, the autoscaler gone, blue scaled down
    writer.point_service(build_service(NAME, NAMESPACE, "active", "green"), owner)
    writer.delete_autoscaler(NAMESPACE, NAME)
    writer.scale(NAMESPACE, f"{NAME}-blue", 0)
    settled(kube, lambda: Kube(api).ready_pods(NAMESPACE, NAME, "blue") == [])
    seen = compare()
    assert seen["selectors"] == ("green", "green")
    assert seen["autoscaler"] is None
    assert seen["colors"]["blue"].replicas == 0
