"""A real Prometheus scraping real turnout-serve processes and the real operator, with the
shipped rules loaded, after a short bounded scenario that gives every dashboard panel and alert
something to show: traffic with feedback, a drift-inducing shift, shadow traffic, a promotion, an
aborted rollout and a rollout waiting on its pre-promotion analysis.

The scenario (module scope, once for test_live.py):

* `models:/Diabetes/1` served as blue (a regressor with a drift reference, 400-row drift window):
  200 rows as trained, then 400 with `bmi` shifted by one standard deviation (the window is then
  all shifted: drift detected), in 40 requests of 15 rows, 5 malformed requests (4xx), and the
  true targets of all 600 rows on /feedback (live MAE over 600 labels).
* `models:/Iris/1` served as green (a classifier, no reference): 300 rows in 20 requests, all
  labelled (live accuracy), each request's payload logged (sample rate 1, on its stdout).
* Both export what their training runs logged (scripts/demo_models.py logs `mae`, `rmse`, `r2`
  of the regressors and `accuracy` of the classifier): the live figures are compared with them.
* `models:/Diabetes/2` served as green, the preview of a shadow lease: blue mirrors every one of
  its answered prediction requests to it (`PUT /admin/shadow`, 100 %), and it compares them (its
  agreement, the differences, both sides' scoring time). Its only traffic of its own is one
  request of the mirrored rows, to read its predictions; its drift is off (the rows are shifted:
  its drift is not what the scenario shows).
* The operator against the Kubernetes API emulator with pods available at once: ModelDeployment
  `obs-bikes` deploys Diabetes v1 (promoted, blue), then version 2 waits in Paused and is aborted
  by annotation (Degraded; the active version stays 1 on blue). `obs-gated` deploys Diabetes v1
  (promoted, blue), then version 2 with shadow and a pre-promotion analysis whose first
  measurement is an hour away: it stays at step PrePromotionAnalysis, the analysis Running.

Prometheus scrapes every second and evaluates the rules every second. The operator's job is
`turnout-operator` with `honor_labels` and the target label `namespace: turnout-system`, as the
chart's ServiceMonitor must set it up; the serving targets carry `namespace` and `pod`, as the
chart's PodMonitor adds them, under a job name nothing depends on.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris

from tests.conftest import (
    Process,
    Registry,
    require_tool,
    start_prometheus,
    wait_until,
)
from tests.integration.cluster import Cluster, running_cluster

# `serve_factory` lives in tests/integration/conftest.py, out of this directory's sight: imported,
# it is this directory's own (it starts nothing by itself; each server it starts stops at the end
# of the session). `mlflow_registry` comes from tests/conftest.py: one registry for the run.
from tests.integration.conftest import serve_factory, wait_for_ready  # noqa: F401
from tests.observability.promql import RULES
from turnout_serving.settings import ServingSettings

NAMESPACE = "default"  # the serving targets' namespace label, and the ModelDeployment's
MD = "obs-bikes"  # unique in the session: the operator tags MLflow versions with its name
GATED = "obs-gated"  # waits on its pre-promotion analysis at the end of the scenario
ADMIN = "obs-admin"  # the blue Diabetes server's admin token (shadow lease)
DRIFT_WINDOW = 400
BATCH = 15
IRIS_ROWS = 300
IRIS_REQUESTS = float(IRIS_ROWS // BATCH)  # Iris logs every payload: one entry each


@dataclass
class Observed:
    """The running stack after the scenario: Prometheus, and the operator's cluster."""

    prometheus: str
    cluster: Cluster
    live_mae: float = float("nan")  # of the predictions served and the labels sent back
    live_accuracy: float = float("nan")
    mirrored: float = float("nan")  # answered prediction requests blue mirrored to the preview
    # per mirrored row, |preview - active|, and whether they agree (the servers' tolerance)
    shadow_diffs: np.ndarray = field(default_factory=lambda: np.array([]))
    shadow_agreement: float = float("nan")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's series; fails with Prometheus' own message if it does not parse."""
        answer = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=30)
        body = answer.json()
        assert body["status"] == "success", f"{body.get('error')}\n{expr}"
        return list(body["data"]["result"])

    def values(self, expr: str, label: str) -> dict[str, float]:
        return {s["metric"].get(label, ""): float(s["value"][1]) for s in self.query(expr)}

    def api(self, path: str) -> Any:
        body = httpx.get(f"{self.prometheus}/api/v1/{path}", timeout=30).json()
        assert body["status"] == "success", body
        return body["data"]


def scrape_config(operator: str, serving: dict[str, Process]) -> str:
    """Prometheus' configuration: the rules file as shipped, the operator and the model pods."""
    host = lambda url: url.removeprefix("http://")  # noqa: E731
    targets = "".join(
        f"      - {{targets: ['{host(proc.url)}'], labels: {{namespace: {NAMESPACE}, pod: {pod}}}}}\n"
        for pod, proc in serving.items()
    )
    return (
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n"
        "  - job_name: turnout-operator\n"
        "    honor_labels: true\n"
        f"    static_configs: [{{targets: ['{host(operator)}'], "
        "labels: {namespace: turnout-system}}]\n"
        "  - job_name: any-name-for-model-pods\n"
        f"    static_configs:\n{targets}"
    )


def traffic(proc: Process, columns: list[str], X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """X in requests of BATCH rows, then the true labels of every request on /feedback; the
    predictions, in order."""
    labels, predictions = [], []
    for first in range(0, len(X), BATCH):
        request_id = uuid.uuid4().hex
        answer = httpx.post(
            f"{proc.url}/invocations", headers={"X-Request-Id": request_id}, timeout=30,
            json={"dataframe_split": {"columns": columns, "data": X[first : first + BATCH].tolist()}},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        predictions += answer.json()["predictions"]
        labels.append({"request_id": request_id, "label": y[first : first + BATCH].tolist()})
    answer = httpx.post(f"{proc.url}/feedback", json=labels, timeout=30)
    assert answer.status_code == 200, answer.text
    assert {r["result"] for r in answer.json()["results"]} == {"matched"}
    return np.array(predictions)


def promote_then_abort(cluster: Cluster) -> None:
    """obs-bikes: Diabetes v1 promoted on blue, then v2 paused in preview and aborted."""
    strategy = {"blueGreen": {"smokeTest": False, "autoPromotionEnabled": False,
                              "scaleDownDelaySeconds": 0, "abortScaleDownDelaySeconds": 0}}  # fmt: skip
    cluster.apply(MD, {"name": "Diabetes", "version": "1"}, strategy=strategy)
    cluster.wait_phase(MD, "Healthy", activeVersion="1", activeColor="blue")
    cluster.patch_spec(MD, {"model": {"name": "Diabetes", "version": "2"}})
    cluster.wait_phase(MD, "Paused", previewVersion="2", previewColor="green")
    cluster.annotate(MD, "turnout.dev/abort")
    cluster.wait_phase(MD, "Degraded", activeVersion="1", activeColor="blue")


def wait_on_analysis(cluster: Cluster) -> None:
    """obs-gated: Diabetes v1 promoted on blue, then v2 analysed before its switch, for an hour."""
    gate = {"intervalSeconds": 3600, "count": 1, "errorRatioMax": 0.01}
    strategy = {"blueGreen": {"smokeTest": False, "shadow": {"percent": 10},
                              "analysis": {"prePromotion": gate}}}  # fmt: skip
    cluster.apply(GATED, {"name": "Diabetes", "version": "1"}, strategy=strategy)
    cluster.wait_phase(GATED, "Healthy", activeVersion="1", activeColor="blue")
    cluster.patch_spec(GATED, {"model": {"name": "Diabetes", "version": "2"}})

    def analysing() -> bool:
        status = cluster.status(GATED)
        run = (status.get("rollout") or {}).get("prePromotionAnalysis") or {}
        return run.get("phase") == "Running"

    wait_until(analysing, timeout=60, interval=0.2, what=f"{GATED}'s pre-promotion analysis")


def mirror(active: Process, preview: Process) -> None:
    """Every answered prediction request of `active` copied to `preview` for a minute."""
    lease = {"target": preview.url, "percent": 100, "maxRequestsPerSecond": 1000,
             "ttlSeconds": 60}  # fmt: skip
    answer = httpx.put(f"{active.url}/admin/shadow", json=lease, timeout=30,
                       headers={"Authorization": f"Bearer {ADMIN}"})  # fmt: skip
    assert answer.status_code == 200, answer.text


def drive_serving(seen: Observed, diabetes: Process, iris: Process, preview: Process) -> None:
    """The serving half of the scenario (module docstring); records the live quality sent, and
    how the preview's answers to the mirrored rows differ (asked of it directly: its own
    requests show in no shadow series)."""
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    columns = list(X.columns)
    rng = np.random.default_rng(11)
    picked = rng.integers(0, len(X), 600)
    rows, targets = X.to_numpy()[picked], y.to_numpy()[picked]
    rows[200:, columns.index("bmi")] += X["bmi"].std()  # a one-sigma shift of one feature
    predicted = traffic(diabetes, columns, rows, targets)
    seen.live_mae = float(np.mean(np.abs(predicted - targets)))
    seen.mirrored = len(range(0, len(rows), BATCH))  # answered requests only: not the malformed
    previewed = httpx.post(f"{preview.url}/invocations", timeout=30, json={
        "dataframe_split": {"columns": columns, "data": rows.tolist()}}).json()["predictions"]  # fmt: skip
    seen.shadow_diffs = np.abs(np.array(previewed) - predicted)
    tolerance = ServingSettings.model_fields["shadow_tolerance"].default
    larger = np.maximum(np.abs(predicted), np.abs(previewed))
    seen.shadow_agreement = float(np.mean(seen.shadow_diffs <= tolerance * larger))
    for _ in range(5):
        bad = httpx.post(f"{diabetes.url}/invocations", content=b"{not json",
                         headers={"content-type": "application/json"}, timeout=30)  # fmt: skip
        assert bad.status_code == 400
    iris_X, iris_y = load_iris(return_X_y=True)
    picked = rng.integers(0, len(iris_X), IRIS_ROWS)
    iris_columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    predicted = traffic(iris, iris_columns, iris_X[picked], iris_y[picked])
    seen.live_accuracy = float(np.mean(predicted == iris_y[picked]))


@pytest.fixture(scope="module")
def observed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Observed]:
    require_tool("prometheus", "/usr/bin/prometheus")
    registry: Registry = request.getfixturevalue("mlflow_registry")
    serve: Callable[..., Process] = request.getfixturevalue("serve_factory")
    window = ("--drift-window-rows", str(DRIFT_WINDOW))
    diabetes = serve("models:/Diabetes/1", "--color", "blue", *window, ready=False,
                     env={"TURNOUT_ADMIN_TOKEN": ADMIN})  # fmt: skip
    iris = serve(
        "models:/Iris/1",
        "--color",
        "green",
        ready=False,
        env={"TURNOUT_PAYLOAD_LOG_SAMPLE_RATE": "1.0"},
    )  # every request logged, on stdout
    preview = serve("models:/Diabetes/2", "--color", "green", "--no-drift", ready=False)
    with contextlib.ExitStack() as stack:  # unwinds Prometheus, then the operator and emulator
        cluster = stack.enter_context(contextlib.contextmanager(running_cluster)(
            registry, tmp_path_factory.mktemp("cluster"), pods="available"))  # fmt: skip
        for proc in (diabetes, iris, preview):
            wait_for_ready(proc)
        config = scrape_config(cluster.operator.url, {"diabetes-blue-0": diabetes,
                                                      "iris-green-0": iris,
                                                      "diabetes-green-0": preview})  # fmt: skip
        prometheus = start_prometheus(tmp_path_factory.mktemp("prometheus"), config)
        stack.callback(prometheus.stop)
        seen = Observed(prometheus.url, cluster)
        # Rates need a sample from before the traffic: the series exist from the start at 0.
        wait_until(lambda: seen.values("sum(up)", "") == {"": 4.0}, timeout=60, interval=0.2,
                   what="prometheus to scrape all four targets")  # fmt: skip
        promote_then_abort(cluster)
        wait_on_analysis(cluster)
        mirror(diabetes, preview)
        drive_serving(seen, diabetes, iris, preview)

        # Everything sent is in Prometheus once the last numbers show there.
        def caught_up() -> bool:
            labelled = seen.values('turnout_live_window_rows{version="1"}', "model")
            drift = seen.values('turnout_drift_window_rows{version="1"}', "model")
            info = f'turnout_operator_modeldeployment_info{{modeldeployment="{MD}"}}'
            compared = 'turnout_shadow_requests_total{result="compared", version="2"}'
            trained = 'turnout_training_metric{version="1", metric=~"mae|accuracy"}'
            logged = 'turnout_payload_log_total{model="Iris", result="sent"}'
            return (labelled == {"Diabetes": 600.0, "Iris": 300.0}
                    and drift == {"Diabetes": float(DRIFT_WINDOW)}
                    and seen.values(info, "phase") == {"Degraded": 1.0}
                    and seen.values(compared, "model") == {"Diabetes": seen.mirrored}
                    and set(seen.values(trained, "model")) == {"Diabetes", "Iris"}
                    and seen.values(logged, "model") == {"Iris": IRIS_REQUESTS})  # fmt: skip

        wait_until(caught_up, timeout=60, interval=0.5, what="prometheus to see the scenario")
        yield seen
