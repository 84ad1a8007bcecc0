"""Promotion on evidence, on the real control plane: real `turnout-serve` pods, real traffic,
shadow copies mirrored by the active pods to the preview Service (through the node's Service
proxy, by cluster name), and the operator reading every pod's /metrics through the API server's
pod proxy under the chart's RBAC.

Five candidates against one serving version (a ridge regression of the diabetes data):
- the same model retrained: its answers agree with the active's, it is promoted;
- a model that predicts the mean: its answers differ beyond the bound, it is rejected before the
  switch with the measured agreement in the status;
- the same model behind a 50 ms sleep: slower than the bound allows, rejected before the switch;
- a model that predicts 500 for everyone: fast and error-free, so it passes before the switch,
  but its live error from the labels clients send back is far past the bound, so it is rolled
  back through the warm color after the switch, and no client request fails throughout;
- the retrained model with no traffic at all: too little evidence, the analysis is inconclusive
  and the rollout pauses until a person promotes it by annotation.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlflow
import pandas as pd
import pytest
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge

from tests.conftest import Registry, load_script, wait_until
from tests.integration.cluster import ROW, Cluster, conditions
from tests.real.traffic import Traffic

pytestmark = [pytest.mark.real, pytest.mark.usefixtures("clean_model_deployments")]

MODEL = "Gated"
PROMOTE = "turnout.dev/promote"
INTERVAL = 5  # the CRD's smallest intervalSeconds


@pytest.fixture(scope="module")
def versions(mlflow_registry: Registry) -> dict[str, str]:
    """The registered versions by role: serving, same, differs, slow, wrong."""
    models = load_script("demo_models")
    X, y = models.diabetes_frame()
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_registry.uri)
    try:
        ridge = Ridge().fit(X, y)
        mean = DummyRegressor(strategy="mean").fit(X, y)
        wrong = DummyRegressor(strategy="constant", constant=500.0).fit(X, y)
        registered = {
            "serving": models._log_sklearn(ridge, X, MODEL, reference=False),
            "same": models._log_sklearn(Ridge().fit(X, y), X, MODEL, reference=False),
            "differs": models._log_sklearn(mean, X, MODEL, reference=False),
            "wrong": models._log_sklearn(wrong, X, MODEL, reference=False),
            "slow": log_slow(ridge, X),
        }
    finally:
        mlflow.set_tracking_uri(previous)
    return registered


def log_slow(model: Ridge, X: pd.DataFrame) -> str:
    """The model's own predictions, each call 50 ms late (a pyfunc stored by value)."""

    class Slow(PythonModel):  # local: cloudpickle stores it by value
        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            time.sleep(0.05)
            return model.predict(model_input)

    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=Slow(), input_example=X.head(5),
            signature=infer_signature(X, model.predict(X)), registered_model_name=MODEL,
            pip_requirements=["mlflow", "scikit-learn"],
        )  # fmt: skip
    return str(info.registered_model_version)


def gated(pre: dict[str, Any], post: dict[str, Any] | None = None, **blue_green: Any) -> dict:
    """A blue-green strategy mirroring every live request, with these analyses."""
    analysis: dict[str, Any] = {"prePromotion": {"intervalSeconds": INTERVAL, **pre}}
    if post is not None:
        analysis["postPromotion"] = {"intervalSeconds": INTERVAL, **post}
    return {"blueGreen": {"scaleDownDelaySeconds": 120, "abortScaleDownDelaySeconds": 2,
                          "shadow": {"percent": 100}, "analysis": analysis,
                          **blue_green}}  # fmt: skip


def serve(cluster: Cluster, name: str, version: str, strategy: dict[str, Any]) -> None:
    cluster.apply(name, {"name": MODEL, "version": version}, replicas=1, strategy=strategy)
    cluster.wait_phase(name, "Healthy", timeout=180, activeVersion=version, activeColor="blue")


@contextmanager
def traffic_to(cluster: Cluster, name: str) -> Iterator[Traffic]:
    """Steady predictions (20 a second) through the active Service `name`."""
    path = f"/api/v1/namespaces/{cluster.namespace}/services/{name}:http/proxy/invocations"
    with Traffic(cluster.kube.http, path, {"dataframe_records": [ROW]}) as sent:
        yield sent


def bump(cluster: Cluster, name: str, version: str) -> None:
    cluster.patch_spec(name, {"model": {"name": MODEL, "version": version}})


def pre_promotion(cluster: Cluster, name: str, version: str) -> dict[str, Any]:
    """The pre-promotion analysis of `version`, once it has a verdict: in the rollout while
    it waits for a person, kept in the status once the rollout is over."""

    def verdict() -> dict[str, Any] | None:
        status = cluster.status(name)
        run = (status.get("rollout") or {}).get("prePromotionAnalysis") or {}
        if run.get("phase") not in (None, "Running"):
            return run
        kept = status.get("lastPrePromotionAnalysis") or {}
        return kept if kept.get("version") == version else None

    try:
        return wait_until(verdict, timeout=120, what=f"{name}'s pre-promotion verdict")
    except AssertionError as exc:
        deployments = {
            d["metadata"]["name"]: (d["spec"].get("replicas"), d.get("status"))
            for d in cluster.kube.list("apps/v1", "Deployment", cluster.namespace)
        }
        raise AssertionError(f"{exc}\nstatus: {cluster.status(name)}\n{deployments}") from None


# --- scenarios -----------------------------------------------------------------------------


def test_a_candidate_that_agrees_is_promoted(cluster: Cluster, versions: dict[str, str]) -> None:
    strategy = gated(
        {"count": 2, "minRequests": 20, "shadowAgreementMin": 0.99, "errorRatioMax": 0.01},
        {"count": 1, "minRequests": 20, "errorRatioMax": 0.01},
    )
    serve(cluster, "agrees", versions["serving"], strategy)
    with traffic_to(cluster, "agrees") as traffic:
        traffic.wait_answers(20)
        bump(cluster, "agrees", versions["same"])
        run = pre_promotion(cluster, "agrees", versions["same"])
        assert (run["phase"], run["successful"], run["failed"]) == ("Successful", 2, 0), run
        for measurement in run["measurements"]:
            values = measurement["values"]
            assert values["shadowCompared"] >= 20 and values["shadowAgreement"] == 1.0, measurement
            assert values["errorRatio"] == 0.0, measurement
        cluster.wait_phase("agrees", "Healthy", timeout=120, activeVersion=versions["same"],
                           activeColor="green")  # fmt: skip
        post = wait_until(
            lambda: (run := cluster.status("agrees").get("postPromotionAnalysis"))
            and run["phase"] != "Running" and run, timeout=60, what="the post-promotion verdict",
        )  # fmt: skip
        assert (post["phase"], post["successful"], post["version"]) == (
            "Successful", 1, versions["same"],
        )  # fmt: skip
        assert "AnalysisSuccessful" in cluster.reasons("agrees")
        assert traffic.failures() == []


def test_a_candidate_that_answers_differently_is_rejected_with_its_figures(
    cluster: Cluster, versions: dict[str, str]
) -> None:
    serve(cluster, "differs", versions["serving"],
          gated({"count": 3, "minRequests": 20, "shadowAgreementMin": 0.99}))  # fmt: skip
    with traffic_to(cluster, "differs") as traffic:
        traffic.wait_answers(20)
        bump(cluster, "differs", versions["differs"])
        run = pre_promotion(cluster, "differs", versions["differs"])
        assert (run["phase"], run["failed"]) == ("Failed", 1), run
        failed = run["measurements"][-1]
        assert failed["verdict"] == "Failed"
        assert failed["values"]["shadowCompared"] >= 20
        agreement = failed["values"]["shadowAgreement"]
        assert agreement < 0.99
        assert f"shadowAgreement {agreement:.4g} < shadowAgreementMin 0.99" in failed["message"]
        status = cluster.wait_phase("differs", "Degraded", activeVersion=versions["serving"],
                                    activeColor="blue")  # fmt: skip
        assert conditions(status)["Degraded"] == ("True", "AnalysisFailed")
        assert versions["differs"] in status["rejectedVersions"]
        assert traffic.failures() == []


def test_a_slow_candidate_is_rejected(cluster: Cluster, versions: dict[str, str]) -> None:
    strategy = gated({"count": 3, "minRequests": 10, "p99LatencyRatioMax": 3},
                     shadow={"percent": 100, "maxRequestsPerSecond": 5})  # fmt: skip
    serve(cluster, "slow", versions["serving"], strategy)
    with traffic_to(cluster, "slow") as traffic:
        traffic.wait_answers(20)
        bump(cluster, "slow", versions["slow"])
        run = pre_promotion(cluster, "slow", versions["slow"])
        assert run["phase"] == "Failed", run
        values = run["measurements"][-1]["values"]
        assert values["p99LatencySeconds"] >= 0.05, values  # every copy sleeps 50 ms
        assert values["p99LatencyRatio"] > 3, values
        cluster.wait_phase(
            "slow", "Degraded", activeVersion=versions["serving"], activeColor="blue"
        )
        assert traffic.failures() == []


def labelled(cluster: Cluster, name: str, rows: int) -> None:
    """`rows` predictions through the active Service, each followed by its true target as
    feedback (one pod per color here, so the feedback reaches the pod that answered)."""
    X, y = load_script("demo_models").diabetes_frame()
    base = f"/api/v1/namespaces/{cluster.namespace}/services/{name}:http/proxy"
    with cluster.kube.http() as http:
        for index in range(rows):
            request_id = uuid.uuid4().hex
            answer = http.post(
                f"{base}/invocations", headers={"X-Request-Id": request_id},
                json={"dataframe_split": X.iloc[[index]].to_dict(orient="split")},
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            label = float(y.iloc[index])
            feedback = http.post(
                f"{base}/feedback", json={"request_id": request_id, "label": label}
            )
            assert feedback.status_code == 200, feedback.text


def test_a_candidate_wrong_after_the_switch_is_rolled_back_with_no_failed_request(
    cluster: Cluster, versions: dict[str, str]
) -> None:
    strategy = gated(
        {"count": 1, "minRequests": 10, "errorRatioMax": 0.01},
        {"count": 3, "minRequests": 1, "qualityMax": 100, "inconclusiveLimit": 2},
    )
    serve(cluster, "wrong", versions["serving"], strategy)
    with traffic_to(cluster, "wrong") as traffic:
        traffic.wait_answers(20)
        bump(cluster, "wrong", versions["wrong"])
        # switched; the post-promotion analysis runs (Progressing) while blue stays warm
        cluster.wait_phase("wrong", "Progressing", timeout=120, activeVersion=versions["wrong"],
                           activeColor="green")  # fmt: skip
        traffic.phase("after the switch")
        labelled(cluster, "wrong", 30)
        status = cluster.wait_phase("wrong", "Degraded", timeout=60,
                                    activeVersion=versions["serving"], activeColor="blue")  # fmt: skip
        assert conditions(status)["Degraded"] == ("True", "AnalysisFailed")
        post = status["postPromotionAnalysis"]
        assert (post["phase"], post["version"]) == ("Failed", versions["wrong"])
        failed = post["measurements"][-1]
        assert failed["verdict"] == "Failed" and failed["values"]["quality"] > 100, failed
        traffic.wait_answers(20)  # answered by blue again
        assert traffic.count("after the switch") >= 20
        assert traffic.failures() == []


def test_too_little_traffic_pauses_until_a_person_promotes(
    cluster: Cluster, versions: dict[str, str]
) -> None:
    serve(cluster, "quiet", versions["serving"],
          gated({"count": 2, "minRequests": 20, "shadowAgreementMin": 0.99}))  # fmt: skip
    bump(cluster, "quiet", versions["same"])
    run = pre_promotion(cluster, "quiet", versions["same"])
    assert (run["phase"], run["inconclusive"], run["successful"]) == ("Inconclusive", 1, 0), run
    assert (
        run["measurements"][-1]["message"] == "shadowAgreement: shadowCompared 0 < minRequests 20"
    )
    status = cluster.wait_phase("quiet", "Paused", activeVersion=versions["serving"])
    assert conditions(status)["Progressing"][1] == "AnalysisInconclusive"
    cluster.annotate("quiet", PROMOTE)
    cluster.wait_phase("quiet", "Healthy", timeout=120, activeVersion=versions["same"],
                       activeColor="green")  # fmt: skip
