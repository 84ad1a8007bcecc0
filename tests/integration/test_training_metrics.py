"""turnout-serve exports what the version's training run logged, `turnout_training_metric{metric}`,
read from a real MLflow tracking server at start-up; a run it cannot read costs a log line and
no series, never the serving."""

from __future__ import annotations

from pathlib import Path

import httpx
import mlflow
import mlflow.artifacts
import mlflow.sklearn
import pytest
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

from tests.conftest import Process, Registry, free_port, wait_until
from tests.integration.test_server import DIABETES_ROW, metric, split

pytestmark = pytest.mark.slow
LOGGED = {"mae": 42.125, "rmse": 53.5, "r2": 0.4375, "val/mae": 44.0}


def version_of_run(uri: str, name: str, metrics: dict[str, float]) -> str:
    """A ridge regressor on the diabetes data, registered as `name` from a run that logged
    `metrics` (each twice: the last value is the one that counts)."""
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = Ridge(alpha=0.1).fit(X, y)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run():
            for key, value in metrics.items():
                mlflow.log_metric(key, value - 1.0, step=0)
                mlflow.log_metric(key, value, step=1)
            info = mlflow.sklearn.log_model(
                model, name="model", signature=infer_signature(X, model.predict(X)),
                input_example=X.head(2), registered_model_name=name,
            )  # fmt: skip
    finally:
        mlflow.set_tracking_uri(previous)
    return str(info.registered_model_version)


def training(url: str, **labels: str) -> dict[str, float]:
    """The server's turnout_training_metric series, by metric."""
    found = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("turnout_training_metric{"):
            name = line.split('metric="')[1].split('"')[0]
            value = metric(url, "turnout_training_metric", metric=name, **labels)
            assert value is not None, line
            found[name] = value
    return found


def test_the_training_runs_metrics_are_exported_with_the_model_labels(
    serve_factory, mlflow_registry: Registry
) -> None:  # type: ignore[no-untyped-def]
    version = version_of_run(mlflow_registry.uri, "TrainedFigures", LOGGED)
    proc: Process = serve_factory(f"models:/TrainedFigures/{version}", "--color", "green")
    labels = {"model": "TrainedFigures", "version": version, "color": "green"}
    assert wait_until(lambda: training(proc.url, **labels), timeout=30, what="training metrics") \
        == LOGGED  # fmt: skip
    answer = httpx.post(f"{proc.url}/invocations", json=split(DIABETES_ROW))
    assert answer.status_code == 200


def test_a_run_without_metrics_exports_none_and_serves(
    serve_factory, mlflow_registry: Registry
) -> None:  # type: ignore[no-untyped-def]
    version = version_of_run(mlflow_registry.uri, "NoFigures", {})
    proc: Process = serve_factory(f"models:/NoFigures/{version}")
    wait_until(lambda: "logged no metrics" in proc.output(), timeout=30, what="the log line")
    assert training(proc.url) == {}
    assert httpx.post(f"{proc.url}/invocations", json=split(DIABETES_ROW)).status_code == 200


def test_a_tracking_server_that_does_not_answer_costs_a_log_line(
    serve_factory, mlflow_registry: Registry, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A model copied to a local folder still names its run; the tracking server is gone."""
    client = MlflowClient(tracking_uri=mlflow_registry.uri, registry_uri=mlflow_registry.uri)
    local = mlflow.artifacts.download_artifacts(
        client.get_model_version_download_uri("Diabetes", "1"), dst_path=str(tmp_path),
        tracking_uri=mlflow_registry.uri,
    )  # fmt: skip
    run_id = client.get_model_version("Diabetes", "1").run_id
    gone = f"http://127.0.0.1:{free_port()}"
    proc: Process = serve_factory(local, "--registry-timeout", "2",
                                  env={"MLFLOW_TRACKING_URI": gone})  # fmt: skip
    wait_until(lambda: f"cannot read the metrics of training run {run_id}" in proc.output(),
               timeout=60, what="the log line")  # fmt: skip
    assert training(proc.url) == {}
    assert httpx.post(f"{proc.url}/invocations", json=split(DIABETES_ROW)).status_code == 200
