"""A ModelDeployment the operator cannot act on says why, creates nothing, and stays steerable.

The real operator against the Kubernetes API emulator, with a CRD lacking the limits the current
one carries (`helm upgrade` never upgrades CRDs, so an operator meets such a CRD; the emulator
need not reject anything either): everything here gets past the API server, as it would with that
CRD, and the operator's own checks are what stand between it and a silent retry loop. Each case
must end Degraded with reason InvalidSpec, a message naming the field, a Warning Event, and no
Deployment or Service ever created. The unit tests (tests/unit/test_validation.py) cover each
class of input; these check the whole path once per class.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mlflow import MlflowClient

from tests.conftest import Registry, wait_until
from tests.integration.cluster import (
    Cluster,
    condition,
    history,
    running_cluster,
    without_limits,
)
from turnout_operator.crd import build_crd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(
    mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    yield from running_cluster(
        mlflow_registry, tmp_path_factory.mktemp("invalid"), pods="available",
        crd=without_limits(build_crd()),
    )  # fmt: skip


@pytest.fixture(autouse=True)
def clean_up(cluster: Cluster) -> Iterator[None]:
    yield
    cluster.delete_model_deployments()


def ever_created(cluster: Cluster, name: str) -> list[str]:
    """The objects named after `name` that ever existed, in any state."""
    owned = [("apps/v1", "Deployment", f"{name}-{c}") for c in ("blue", "green")]
    owned += [("v1", "Service", name), ("v1", "Service", f"{name}-preview")]
    return [n for api, kind, n in owned if cluster.kube.history(api, kind, "default", n)]


def assert_invalid(cluster: Cluster, name: str, field: str) -> dict[str, Any]:
    status = cluster.wait_phase(name, "Degraded", timeout=30)
    degraded = condition(status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert degraded["message"].startswith(f"{field}: "), degraded["message"]
    assert status["message"] == degraded["message"]
    cluster.wait_event(name, "InvalidSpec")
    [event] = [e for e in cluster.kube.events("default", name) if e["reason"] == "InvalidSpec"]
    assert (event["type"], event["message"]) == ("Warning", degraded["message"])
    assert ever_created(cluster, name) == []
    return status


DIABETES = {"name": "Diabetes", "version": "1"}
INVALID = [
    ("n" * 56, {}, "metadata.name"),
    ("fraud.v2", {}, "metadata.name"),
    ("bad-tracking-uri", {"registry": {"trackingUri": "http://[::1"}}, "spec.registry.trackingUri"),
    ("huge-annotations", {"template": {"podAnnotations": {"notes": "x" * 300_000}}},
     "spec.template.podAnnotations"),
    ("label-key", {"template": {"podLabels": {"team/ml/core": "x"}}}, "spec.template.podLabels"),
    ("far-future", {"strategy": {"blueGreen": {"autoPromotionSeconds": 10**12}}},
     "spec.strategy.blueGreen.autoPromotionSeconds"),
    ("own-variable", {"template": {"env": [{"name": "TURNOUT_MODEL_URI", "value": "models:/x/1"}]}},
     "spec.template.env.0.name"),
    ("mlflow-variable", {"template": {"env": [{"name": "MLFLOW_TRACKING_URI", "value": "http://x"}]}},
     "spec.template.env.0.name"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "spec", "field"), INVALID, ids=[c[0][:20] for c in INVALID])
def test_an_invalid_model_deployment_says_why_and_creates_nothing(
    cluster: Cluster, name: str, spec: dict[str, Any], field: str
) -> None:
    cluster.apply(name, DIABETES, **spec)
    assert_invalid(cluster, name, field)


def test_a_model_name_mlflow_cannot_serve_is_refused_before_anything_runs(
    cluster: Cluster,
) -> None:
    """MLflow registers "diabetes@team", but cannot download models:/diabetes@team/1 (it reads an
    alias): refused with the reason in the status, rather than pods crash-looping with it."""
    client = MlflowClient(cluster.registry.uri)
    version = str(client.copy_model_version("models:/Diabetes/1", "diabetes@team").version)
    cluster.apply("at-sign", {"name": "diabetes@team", "version": version})
    status = assert_invalid(cluster, "at-sign", "spec.model.name")
    assert "holds '@'" in status["message"]


def test_a_rollout_whose_spec_turns_invalid_can_still_be_aborted(cluster: Cluster) -> None:
    """v1 Healthy; v2 waits in preview; a change then asks for a 10^12 s scale-down delay. The
    rollout stops where it is, the status says why, and the abort annotation still acts: the
    preview Service goes back to v1, v2 is rejected and its pods are scaled down."""
    strategy = {"blueGreen": {"smokeTest": False, "autoPromotionEnabled": False,
                              "abortScaleDownDelaySeconds": 0}}  # fmt: skip
    cluster.apply("wedged", DIABETES, strategy=strategy)
    cluster.wait_phase("wedged", "Healthy", activeVersion="1", activeColor="blue")
    cluster.patch_spec("wedged", {"model": {"name": "Diabetes", "version": "2"}})
    cluster.wait_phase("wedged", "Paused", previewVersion="2", previewColor="green")
    field = "spec.strategy.blueGreen.scaleDownDelaySeconds"
    cluster.patch_spec("wedged", {"strategy": {"blueGreen": {"scaleDownDelaySeconds": 10**12}}})
    status = cluster.wait_phase("wedged", "Degraded", timeout=30, previewVersion="2")
    assert condition(status, "Degraded")["message"].startswith(f"{field}: ")
    assert condition(status, "Progressing")["reason"] == "InvalidSpec"

    cluster.annotate("wedged", "turnout.dev/abort")
    status = cluster.wait_phase("wedged", "Degraded", timeout=30, previewVersion=None,
                                rejectedVersions=["2"])  # fmt: skip
    assert (status["activeVersion"], status["activeColor"]) == ("1", "blue")
    assert history(status)[0] == ("2", "green", "Aborted")
    assert condition(status, "Degraded")["reason"] == "InvalidSpec"  # the spec is still wrong
    cluster.wait_annotation_handled("wedged", "turnout.dev/abort")
    assert (cluster.selector("wedged"), cluster.selector("wedged-preview")) == ("blue", "blue")
    cluster.wait_replicas("wedged-green", 0)
    cluster.wait_event("wedged", "AbortedByUser")

    # Fixed, it is healthy again on v1 (v2 stays rejected until retried).
    cluster.patch_spec("wedged", {"strategy": {"blueGreen": {"scaleDownDelaySeconds": 30}}})
    wait_until(lambda: condition(cluster.status("wedged"), "Degraded")["reason"] != "InvalidSpec",
               timeout=30, what="InvalidSpec cleared")  # fmt: skip
