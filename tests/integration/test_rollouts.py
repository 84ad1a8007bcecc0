"""Rollouts end to end: the real operator against the Kubernetes API
emulator and the real MLflow registry. Each asserts what a user relies on: the status (phase,
versions, colors, conditions with their reasons), the Events, where the Services point, and the
deployment state written back to MLflow as model-version tags.

Pods are instantly `available` stand-ins unless a scenario needs real predictions (the smoke
test); those run `turnout-serve` for real. Each test has its own ModelDeployment, and a test that
moves an alias moves it on a registered model of its own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel

from tests.conftest import Registry, wait_until
from tests.integration.cluster import (
    API,
    HEALTHY_CONDITIONS,
    Cluster,
    calls_made,
    condition,
    conditions,
    granted,
    history,
    running_cluster,
)
from tests.integration.outage import Forwarder

pytestmark = pytest.mark.slow

PROMOTE, ABORT, RETRY, ROLLBACK = (
    f"turnout.dev/{verb}" for verb in ("promote", "abort", "retry", "rollback")
)
ROLLED_BACK = 'turnout_operator_rollouts_total{outcome="rolled_back"}'


@pytest.fixture(scope="module")
def cluster(
    mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    # A registry outage is retried every 2 s rather than 10 s, so recovery shows quickly.
    yield from running_cluster(
        mlflow_registry, tmp_path_factory.mktemp("rollouts"), pods="available",
        extra_env={"TURNOUT_OPERATOR_REGISTRY_RETRY_SECONDS": "2"},
    )  # fmt: skip


@pytest.fixture(autouse=True)
def clean_up(cluster: Cluster) -> Iterator[None]:
    """A test's ModelDeployments (and so their pods) go when it ends: the operator then works
    only for the next test, and a deployment pointed at a cut registry stops polling it."""
    yield
    for md in cluster.kube.list(API, "ModelDeployment", "default"):
        with contextlib.suppress(Exception):  # already on its way out
            cluster.kube.delete(API, "ModelDeployment", "default", md["metadata"]["name"])


@pytest.fixture(scope="module")
def client(mlflow_registry: Registry) -> MlflowClient:
    return MlflowClient(mlflow_registry.uri)


# --- helpers --------------------------------------------------------------------------------------


def blue_green(**options: Any) -> dict[str, Any]:
    """A strategy; the smoke test is off unless asked for (stand-in pods serve nothing)."""
    return {"blueGreen": {"smokeTest": False, **options}}


def written(cluster: Cluster, name: str) -> tuple[int, dict[str, Any]]:
    """What the operator wrote to a Deployment: its generation and spec."""
    found = cluster.deployment(name)
    assert found is not None
    return found["metadata"]["generation"], found["spec"]


def wait_resolved(cluster: Cluster, name: str, value: str) -> dict[str, Any]:
    """The status once its ModelResolved condition is `value`."""

    def resolved() -> dict[str, Any] | None:
        status = cluster.status(name)
        return status if conditions(status)["ModelResolved"][0] == value else None

    return wait_until(resolved, timeout=30, interval=0.2, what=f"ModelResolved={value}")


def deploy_then_bump(
    cluster: Cluster, name: str, strategy: dict[str, Any], **spec: Any
) -> dict[str, Any]:
    """Diabetes v1 Healthy in blue, then version 2 asked for; the status once v1 was Healthy."""
    cluster.apply(name, {"name": "Diabetes", "version": "1"}, strategy=strategy, **spec)
    status = cluster.wait_phase(name, "Healthy", activeVersion="1", activeColor="blue")
    cluster.patch_spec(name, {"model": {"name": "Diabetes", "version": "2"}})
    return status


def copy_versions(client: MlflowClient, source: str, versions: list[str], name: str) -> list[str]:
    """Register `source`'s versions again under `name`, for a test that moves aliases."""
    return [str(client.copy_model_version(f"models:/{source}/{v}", name).version) for v in versions]


# --- scenarios ------------------------------------------------------------------------------------


def test_an_alias_move_is_picked_up_by_polling(cluster: Cluster, client: MlflowClient) -> None:
    v1, v2 = copy_versions(client, "Diabetes", ["1", "2"], "AliasMove")
    client.set_registered_model_alias("AliasMove", "champion", v1)
    cluster.apply("alias-move", {"name": "AliasMove", "alias": "champion"},
                  registry={"pollIntervalSeconds": 5},
                  strategy=blue_green(scaleDownDelaySeconds=1))  # fmt: skip
    cluster.wait_phase("alias-move", "Healthy", activeVersion=v1, activeColor="blue")

    client.set_registered_model_alias("AliasMove", "champion", v2)
    status = cluster.wait_phase("alias-move", "Healthy", timeout=30, activeVersion=v2,
                                activeColor="green")  # fmt: skip
    assert (status["desiredVersion"], status["modelUri"]) == (v2, f"models:/AliasMove/{v2}")
    assert conditions(status) == HEALTHY_CONDITIONS
    assert condition(status, "ModelResolved")["message"] == (
        f"models:/AliasMove@champion is version {v2}"
    )
    assert (cluster.selector("alias-move"), cluster.selector("alias-move-preview")) == (
        "green", "green",
    )  # fmt: skip
    cluster.wait_replicas("alias-move-blue", 0)
    cluster.wait_tag("AliasMove", v1, "alias-move", "retired")
    cluster.wait_tag("AliasMove", v2, "alias-move", "active")
    cluster.wait_event("alias-move", "ScaledDown")
    assert cluster.reasons("alias-move") == [
        "RolloutStarted", "Promoted", "RolloutStarted", "Promoted", "ScaledDown",
    ]  # fmt: skip


def test_manual_promotion_waits_in_paused_for_the_annotation(cluster: Cluster) -> None:
    strategy = blue_green(autoPromotionEnabled=False, previewReplicaCount=1)
    deploy_then_bump(cluster, "manual", strategy, replicas=2)
    status = cluster.wait_phase("manual", "Paused", previewVersion="2", previewColor="green")
    assert (status["activeVersion"], status["activeColor"]) == ("1", "blue")
    assert conditions(status)["Progressing"] == ("True", "WaitingForPromotion")
    assert conditions(status)["Ready"] == ("True", "Available")
    assert conditions(status)["Degraded"] == ("False", "Healthy")
    assert (cluster.selector("manual"), cluster.selector("manual-preview")) == ("blue", "green")
    assert (cluster.replicas("manual-blue"), cluster.replicas("manual-green")) == (2, 1)
    cluster.wait_tag("Diabetes", "2", "manual", "preview")
    cluster.wait_tag("Diabetes", "1", "manual", "active")

    cluster.annotate("manual", PROMOTE)
    status = cluster.wait_phase("manual", "Healthy", activeVersion="2", activeColor="green")
    assert conditions(status) == HEALTHY_CONDITIONS
    cluster.wait_annotation_handled("manual", PROMOTE)
    assert (cluster.selector("manual"), cluster.selector("manual-preview")) == ("green", "green")
    assert cluster.replicas("manual-green") == 2  # scaled up to spec.replicas before the switch
    cluster.wait_tag("Diabetes", "2", "manual", "active")
    reasons = cluster.reasons("manual")
    assert reasons[2:5] == ["RolloutStarted", "PromotionRequested", "Promoted"]


def test_abort_rejects_the_version_until_retried(cluster: Cluster) -> None:
    strategy = blue_green(autoPromotionEnabled=False, abortScaleDownDelaySeconds=2)
    deploy_then_bump(cluster, "abort", strategy)
    cluster.wait_phase("abort", "Paused", previewVersion="2", previewColor="green")

    cluster.annotate("abort", ABORT)
    status = cluster.wait_phase("abort", "Degraded", activeVersion="1", activeColor="blue")
    assert status["rejectedVersions"] == ["2"]
    assert "previewVersion" not in status  # null in the merge patch: removed
    assert conditions(status)["Degraded"] == ("True", "AbortedByUser")
    assert conditions(status)["Ready"] == ("True", "Available")
    assert status["message"] == "aborted by the turnout.dev/abort annotation"
    entry = status["history"][0]
    assert (entry["version"], entry["color"], entry["outcome"]) == ("2", "green", "Aborted")
    cluster.wait_annotation_handled("abort", ABORT)
    assert (cluster.selector("abort"), cluster.selector("abort-preview")) == ("blue", "blue")
    cluster.wait_tag("Diabetes", "2", "abort", "rejected")
    cluster.wait_tag("Diabetes", "1", "abort", "active")
    assert cluster.replicas("abort-green") == 1  # kept for abortScaleDownDelaySeconds
    cluster.wait_replicas("abort-green", 0)
    cluster.wait_event("abort", "ScaledDown")
    # Reconciles went on after the abort (the scale-down), and none retried the version.
    status = cluster.status("abort")
    assert (status["phase"], status["desiredVersion"]) == ("Degraded", "2")
    assert cluster.reasons("abort").count("RolloutStarted") == 2

    cluster.annotate("abort", RETRY)
    status = cluster.wait_phase("abort", "Paused", previewVersion="2", previewColor="green")
    assert status["rejectedVersions"] == []
    cluster.wait_annotation_handled("abort", RETRY)
    assert cluster.replicas("abort-green") == 1
    cluster.wait_tag("Diabetes", "2", "abort", "preview")
    cluster.annotate("abort", PROMOTE)
    status = cluster.wait_phase("abort", "Healthy", activeVersion="2", activeColor="green")
    assert conditions(status) == HEALTHY_CONDITIONS
    reasons = cluster.reasons("abort")
    assert reasons[reasons.index("AbortedByUser") :] == [
        "AbortedByUser", "ScaledDown", "Retrying", "RolloutStarted", "PromotionRequested",
        "Promoted",
    ]  # fmt: skip


def test_a_preview_that_never_becomes_ready_is_aborted_at_the_deadline(cluster: Cluster) -> None:
    cluster.kube.controller.behave("default", "deadline-green", "never_ready")
    deploy_then_bump(cluster, "deadline", blue_green(progressDeadlineSeconds=10))
    started = time.monotonic()
    status = cluster.wait_phase("deadline", "Degraded", timeout=40, rejectedVersions=["2"])
    assert time.monotonic() - started >= 9  # counted from the rollout's start, a bit earlier
    assert conditions(status)["Degraded"] == ("True", "ProgressDeadlineExceeded")
    assert status["message"] == (
        "version 2 (green) did not become available within 10s (0/1 pods available)"
    )
    assert (status["activeVersion"], status["activeColor"]) == ("1", "blue")
    assert (cluster.selector("deadline"), cluster.selector("deadline-preview")) == ("blue", "blue")
    cluster.wait_tag("Diabetes", "2", "deadline", "rejected")
    assert "ProgressDeadlineExceeded" in cluster.reasons("deadline")


def test_a_crash_loop_after_the_switch_rolls_back_at_once(cluster: Cluster) -> None:
    strategy = blue_green(scaleDownDelaySeconds=30, abortScaleDownDelaySeconds=1)
    deploy_then_bump(cluster, "crash", strategy)
    cluster.wait_phase("crash", "Healthy", activeVersion="2", activeColor="green")
    assert cluster.replicas("crash-blue") == 1  # warm for 30 s

    rolled_back = cluster.metric(ROLLED_BACK)
    cluster.kube.controller.behave("default", "crash-green", "crashloop")
    # At once: well before the 30 s window ends.
    wait_until(lambda: cluster.selector("crash") == "blue", timeout=15, interval=0.1,
               what="the active Service back on blue")  # fmt: skip
    status = cluster.wait_phase("crash", "Degraded", activeVersion="1", activeColor="blue")
    assert status["rejectedVersions"] == ["2"]
    assert conditions(status)["Degraded"] == ("True", "AutoRolledBack")
    assert conditions(status)["Ready"] == ("True", "Available")
    assert status["message"] == (
        "version 2 (green) failed after promotion (CrashLoopBackOff); "
        "switched back to version 1 (blue)"
    )
    assert history(status)[:3] == [
        ("1", "blue", "Promoted"), ("2", "green", "RolledBack"), ("1", "blue", "Promoted"),
    ]  # fmt: skip
    assert cluster.selector("crash-preview") == "blue"
    assert cluster.metric(ROLLED_BACK) == rolled_back + 1
    cluster.wait_tag("Diabetes", "1", "crash", "active")
    cluster.wait_tag("Diabetes", "2", "crash", "rejected")
    cluster.wait_replicas("crash-green", 0)
    cluster.wait_event("crash", "ScaledDown")
    assert cluster.reasons("crash")[-2:] == ["AutoRolledBack", "ScaledDown"]
    assert cluster.status("crash")["phase"] == "Degraded"  # not retried


def test_the_rollback_annotation_switches_back_to_the_warm_color(cluster: Cluster) -> None:
    deploy_then_bump(cluster, "rollback", blue_green(scaleDownDelaySeconds=60))
    cluster.wait_phase("rollback", "Healthy", activeVersion="2", activeColor="green")

    rolled_back = cluster.metric(ROLLED_BACK)
    cluster.annotate("rollback", ROLLBACK)
    status = cluster.wait_phase("rollback", "Degraded", activeVersion="1", activeColor="blue")
    assert status["rejectedVersions"] == ["2"]
    assert conditions(status)["Degraded"] == ("True", "RolledBack")
    assert status["message"] == (
        "version 2 rolled back to 1 by the turnout.dev/rollback annotation"
    )
    cluster.wait_annotation_handled("rollback", ROLLBACK)
    assert (cluster.selector("rollback"), cluster.selector("rollback-preview")) == (
        "blue", "blue",
    )  # fmt: skip
    # Blue was never scaled down: the switch back went to warm pods.
    blue = cluster.kube.history("apps/v1", "Deployment", "default", "rollback-blue")
    assert {state["spec"]["replicas"] for state in blue} == {1}
    cluster.wait_tag("Diabetes", "1", "rollback", "active")
    assert cluster.metric(ROLLED_BACK) == rolled_back + 1
    cluster.wait_tag("Diabetes", "2", "rollback", "rejected")
    assert cluster.reasons("rollback").count("RolloutStarted") == 2
    assert cluster.reasons("rollback")[-1] == "RolledBack"


def test_the_rollback_annotation_redeploys_a_version_no_longer_warm(cluster: Cluster) -> None:
    deploy_then_bump(cluster, "redeploy", blue_green(scaleDownDelaySeconds=1))
    cluster.wait_phase("redeploy", "Healthy", activeVersion="2", activeColor="green")
    cluster.wait_replicas("redeploy-blue", 0)
    cluster.wait_tag("Diabetes", "1", "redeploy", "retired")

    cluster.annotate("redeploy", ROLLBACK)
    # Like a warm rollback, it ends Degraded: the registry still asks for the rejected 2.
    status = cluster.wait_phase("redeploy", "Degraded", activeVersion="1", activeColor="blue")
    assert status["rejectedVersions"] == ["2"]
    assert conditions(status)["Degraded"] == ("True", "RolledBack")
    assert conditions(status)["Ready"] == ("True", "Available")
    assert status["message"] == "version 2 rolled back to 1 by the turnout.dev/rollback annotation"
    assert (cluster.selector("redeploy"), cluster.selector("redeploy-preview")) == (
        "blue", "blue",
    )  # fmt: skip
    assert cluster.replicas("redeploy-blue") == 1
    cluster.wait_replicas("redeploy-green", 0)
    cluster.wait_tag("Diabetes", "1", "redeploy", "active")
    cluster.wait_event("redeploy", "ScaledDown")
    cluster.wait_tag("Diabetes", "2", "redeploy", "rejected")  # not "retired"
    expected = [("1", "blue", "Promoted"), ("2", "green", "RolledBack"), ("1", "blue", "Retired")]
    wait_until(lambda: history(cluster.status("redeploy")) == expected, timeout=10,
               what=f"history {expected}")  # fmt: skip
    reasons = cluster.reasons("redeploy")
    assert reasons[reasons.index("RolledBack") :] == [
        "RolledBack", "RolloutStarted", "Promoted", "ScaledDown",
    ]  # fmt: skip


def test_a_registry_outage_during_a_rollout_disturbs_nothing(
    cluster: Cluster, client: MlflowClient
) -> None:
    v1, v2 = copy_versions(client, "Diabetes", ["1", "2"], "Outage")
    client.set_registered_model_alias("Outage", "champion", v1)
    port = int(cluster.registry.uri.rsplit(":", 1)[1])
    with Forwarder(port) as registry:
        cluster.apply("outage", {"name": "Outage", "alias": "champion"},
                      registry={"trackingUri": registry.url, "pollIntervalSeconds": 5},
                      strategy=blue_green(autoPromotionEnabled=False))  # fmt: skip
        cluster.wait_phase("outage", "Healthy", activeVersion=v1, activeColor="blue")
        client.set_registered_model_alias("Outage", "champion", v2)
        cluster.wait_phase("outage", "Paused", timeout=30, previewVersion=v2)
        before = {name: written(cluster, name) for name in ("outage-blue", "outage-green")}

        registry.down()
        down = wait_resolved(cluster, "outage", "False")
        assert conditions(down)["ModelResolved"] == ("False", "RegistryUnavailable")
        assert condition(down, "ModelResolved")["message"].startswith(
            f"MLflow registry at {registry.url} is unavailable"
        )
        assert (down["phase"], down["activeVersion"], down["previewVersion"]) == (
            "Paused", v1, v2,
        )  # fmt: skip
        assert conditions(down)["Ready"] == ("True", "Available")
        assert conditions(down)["Progressing"] == ("True", "WaitingForPromotion")
        assert (cluster.selector("outage"), cluster.selector("outage-preview")) == (
            "blue", "green",
        )  # fmt: skip
        after = {name: written(cluster, name) for name in before}
        assert after == before  # not one write to the pods' Deployments
        assert "ModelResolutionFailed" in cluster.reasons("outage")

        registry.up()
        back = wait_resolved(cluster, "outage", "True")
        assert (back["phase"], back["previewVersion"]) == ("Paused", v2)
        cluster.annotate("outage", PROMOTE)
        status = cluster.wait_phase("outage", "Healthy", activeVersion=v2, activeColor="green")
        assert conditions(status) == HEALTHY_CONDITIONS
        cluster.wait_tag("Outage", v2, "outage", "active")


def test_deleting_a_model_deployment_removes_what_it_owns(cluster: Cluster) -> None:
    deploy_then_bump(cluster, "doomed", blue_green(scaleDownDelaySeconds=60))
    cluster.wait_phase("doomed", "Healthy", activeVersion="2", activeColor="green")
    owned = [("apps/v1", "Deployment", "doomed-blue"), ("apps/v1", "Deployment", "doomed-green"),
             ("v1", "Service", "doomed"), ("v1", "Service", "doomed-preview")]  # fmt: skip
    assert all(cluster.kube.get(api, kind, "default", name) for api, kind, name in owned)

    pods = "turnout.dev/model-deployment=doomed"
    assert len(cluster.kube.list("v1", "Pod", "default", labels=pods)) == 2

    cluster.kube.delete(API, "ModelDeployment", "default", "doomed")
    wait_until(
        lambda: cluster.kube.get(API, "ModelDeployment", "default", "doomed") is None
        and not any(cluster.kube.get(api, kind, "default", name) for api, kind, name in owned)
        and not cluster.kube.list("v1", "Pod", "default", labels=pods),
        timeout=30, interval=0.2, what="doomed and what it owns deleted",
    )  # fmt: skip


def test_the_operator_resumes_a_rollout_after_being_killed(cluster: Cluster) -> None:
    cluster.kube.controller.behave("default", "restart-green", "slow", delay=3)
    strategy = blue_green(autoPromotionEnabled=False, scaleDownDelaySeconds=8)
    deploy_then_bump(cluster, "restart", strategy)
    cluster.wait_phase("restart", "Progressing", previewVersion="2")
    cluster.restart_operator()  # while the preview's pods are starting
    cluster.wait_phase("restart", "Paused", timeout=60, previewVersion="2")
    cluster.restart_operator()  # while waiting for the promotion
    assert cluster.selector("restart") == "blue"

    cluster.annotate("restart", PROMOTE)
    cluster.wait_phase("restart", "Healthy", timeout=60, activeVersion="2", activeColor="green")
    cluster.restart_operator()  # inside the scale-down window
    assert cluster.replicas("restart-blue") == 1
    cluster.wait_replicas("restart-blue", 0, timeout=60)
    cluster.wait_tag("Diabetes", "1", "restart", "retired")
    cluster.wait_tag("Diabetes", "2", "restart", "active")
    status = cluster.status("restart")
    assert conditions(status) == HEALTHY_CONDITIONS
    assert cluster.selector("restart") == "green"
    cluster.wait_event("restart", "ScaledDown")
    assert cluster.reasons("restart") == [
        "RolloutStarted", "Promoted", "RolloutStarted", "PromotionRequested", "Promoted",
        "ScaledDown",
    ]  # fmt: skip


# --- a real server: the smoke test ----------------------------------------------------------------


def log_pyfunc(uri: str, name: str, fails: bool) -> str:
    """Register a pyfunc version whose predictions are all 1.0, or that always raises."""

    class Scorer(PythonModel):  # local: cloudpickle stores it by value
        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            if fails:
                raise RuntimeError("simulated model failure")
            return np.ones(len(model_input))

    example = pd.DataFrame({"age": [30.0, 40.0], "bmi": [22.0, 25.0]})
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=Scorer(), input_example=example,
                signature=infer_signature(example, np.ones(2)), registered_model_name=name,
                pip_requirements=["mlflow"],
            )  # fmt: skip
    finally:
        mlflow.set_tracking_uri(previous)
    return str(info.registered_model_version)


def test_a_failed_smoke_test_aborts_and_the_active_keeps_serving(cluster: Cluster) -> None:
    good = log_pyfunc(cluster.registry.uri, "SmokeFails", fails=False)
    bad = log_pyfunc(cluster.registry.uri, "SmokeFails", fails=True)
    for color in ("blue", "green"):
        cluster.kube.controller.behave("default", f"smoke-{color}", "process")
    # Warm-up would predict on the input example and keep the bad version unready: with it off,
    # the smoke test is what catches it.
    template = {"env": [{"name": "TURNOUT_WARMUP", "value": "false"}]}
    cluster.apply("smoke", {"name": "SmokeFails", "version": good}, template=template,
                  strategy={"blueGreen": {"abortScaleDownDelaySeconds": 1}})  # fmt: skip
    status = cluster.wait_phase("smoke", "Healthy", timeout=120, activeVersion=good)
    assert conditions(status) == HEALTHY_CONDITIONS

    cluster.patch_spec("smoke", {"model": {"name": "SmokeFails", "version": bad}})
    status = cluster.wait_phase("smoke", "Degraded", timeout=120, rejectedVersions=[bad])
    assert conditions(status)["Degraded"] == ("True", "SmokeTestFailed")
    assert status["message"].startswith("smoke test got HTTP 500")
    assert (status["activeVersion"], status["activeColor"]) == (good, "blue")
    assert (cluster.selector("smoke"), cluster.selector("smoke-preview")) == ("blue", "blue")
    answer = cluster.predict("smoke")
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == [1.0]
    cluster.wait_tag("SmokeFails", bad, "smoke", "rejected")
    cluster.wait_tag("SmokeFails", good, "smoke", "active")
    cluster.wait_replicas("smoke-green", 0)
    cluster.wait_event("smoke", "ScaledDown")
    reasons = cluster.reasons("smoke")
    assert reasons[reasons.index("SmokeTestFailed") :] == ["SmokeTestFailed", "ScaledDown"]


def test_every_call_these_rollouts_made_is_allowed_by_the_namespaced_role(
    cluster: Cluster,
) -> None:
    """Runs last: annotations removed, rollbacks, restarts and deletions need nothing more than
    the Role grants (test_operator.py checks that the Role grants nothing unused)."""
    assert calls_made(cluster.kube) - granted("namespaced") == set()
