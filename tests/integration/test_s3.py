"""turnout-serve against an S3 artifact store: moto's S3 server on 127.0.0.1 is a real HTTP S3 API,
reached by boto3 in the server process through MLFLOW_S3_ENDPOINT_URL. The registry is a sqlite
tracking store whose experiment keeps its artifacts in `s3://BUCKET/artifacts`; nothing is mocked
inside the processes under test, and nothing leaves 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BIN, Process, free_port, start, wait_until
from tests.integration.conftest import wait_for_ready
from tests.stores import BUCKET, S3, aws_env, s3_server

pytestmark = pytest.mark.slow
NAME = "S3Diabetes"
Serve = Callable[[dict[str, str], Path], Process]

# Runs in its own process so the S3 and tracking environment never leaks into other tests.
LOG_MODEL = """
import json, sys
import mlflow, mlflow.sklearn
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from turnout_serving.reference import log_reference

name, artifacts = sys.argv[1:]
X, y = load_diabetes(return_X_y=True, as_frame=True)
model = Ridge(alpha=0.1).fit(X, y)
mlflow.set_experiment(experiment_id=mlflow.create_experiment("s3", artifact_location=artifacts))
with mlflow.start_run() as run:
    info = mlflow.sklearn.log_model(
        model, name="model", signature=infer_signature(X, model.predict(X)),
        input_example=X.head(5), registered_model_name=name,
    )
    digest = log_reference(X, predictions=model.predict(X))
version = str(info.registered_model_version)
MlflowClient().set_registered_model_alias(name, "champion", version)
rows = X.iloc[[0, 1, 2]]
print(json.dumps({
    "run_id": run.info.run_id, "model_id": info.model_id, "version": version, "digest": digest,
    "rows": {"columns": list(rows.columns), "data": rows.values.tolist()},
    "predictions": model.predict(rows).tolist(),
}))
"""


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def s3_env(s3: S3, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("s3-registry")
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db",
        **aws_env(home, s3.endpoint),
    }


@pytest.fixture(scope="module")
def logged(s3_env: dict[str, str]) -> dict[str, Any]:
    """Train, log (model + drift reference to S3), register and alias, in a child process."""
    done = subprocess.run(
        [sys.executable, "-c", LOG_MODEL, NAME, f"s3://{BUCKET}/artifacts"],
        capture_output=True, text=True, timeout=300, env={**_inherited(), **s3_env}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _inherited() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """Start `turnout-serve` with the given environment and cache; all stop with the module."""
    started: list[Process] = []

    def run(env: dict[str, str], cache: Path) -> Process:
        port, home = free_port(), tmp_path_factory.mktemp("s3-serve")
        argv = [str(BIN / "turnout-serve"), "-m", f"models:/{NAME}@champion", "-p", str(port),
                "-h", "127.0.0.1", "--cache-dir", str(cache)]  # fmt: skip
        proc = Process(f"http://127.0.0.1:{port}", start(argv, home / "serve.log", env),
                       home / "serve.log")  # fmt: skip
        started.append(proc)
        return proc

    yield run
    for proc in started:
        proc.stop()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("s3-cache")


@pytest.fixture(scope="module")
def first(serve: Serve, s3_env: dict[str, str], logged: dict[str, Any], cache: Path) -> Process:
    proc = serve(s3_env, cache)
    wait_for_ready(proc, timeout=60)
    return proc


def download_seconds(proc: Process) -> float:
    families = text_string_to_metric_families(httpx.get(f"{proc.url}/metrics").text)
    family = next(f for f in families if f.name == "turnout_artifact_download_seconds")
    (sample,) = family.samples
    return float(sample.value)


def predict(proc: Process, logged: dict[str, Any]) -> list[float]:
    answer = httpx.post(f"{proc.url}/invocations", json={"dataframe_split": logged["rows"]})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["predictions"])


def test_the_bucket_holds_the_model_and_the_drift_reference(s3: S3, logged: dict[str, Any]) -> None:
    run_artifacts = f"artifacts/{logged['run_id']}/artifacts/"
    model_artifacts = f"artifacts/models/{logged['model_id']}/artifacts/"
    assert s3.keys(run_artifacts) == {f"{run_artifacts}turnout/reference.json"}
    assert {"MLmodel", "model.skops", "input_example.json", "serving_input_example.json"} <= {
        key.removeprefix(model_artifacts) for key in s3.keys(model_artifacts)
    }


def test_first_start_downloads_from_s3_and_serves_the_model(
    first: Process, s3: S3, logged: dict[str, Any]
) -> None:
    model_file = f"GET /{BUCKET}/artifacts/models/{logged['model_id']}/artifacts/MLmodel "
    assert any(model_file in line for line in s3.requests)
    assert predict(first, logged) == logged["predictions"]
    described = httpx.get(f"{first.url}/info").json()
    assert described["model_version"] == logged["version"]
    assert described["resolved_uri"] == f"models:/{NAME}/{logged['version']}"
    assert described["run_id"] == logged["run_id"]
    assert described["drift"] == f"on: reference {logged['digest']}"
    assert download_seconds(first) > 0


def test_a_restart_on_the_same_cache_serves_without_touching_s3(
    first: Process,
    serve: Serve,
    s3: S3,
    s3_env: dict[str, str],
    logged: dict[str, Any],
    cache: Path,
) -> None:
    seen = len(s3.requests)
    second = serve(s3_env, cache)
    wait_for_ready(second, timeout=60)
    assert s3.requests[seen:] == []
    assert download_seconds(second) == 0.0
    assert predict(second, logged) == logged["predictions"]
    assert httpx.get(f"{second.url}/info").json()["drift"] == f"on: reference {logged['digest']}"


def test_an_unreachable_endpoint_keeps_the_server_unready_retrying_and_says_why(
    serve: Serve, s3_env: dict[str, str], logged: dict[str, Any], tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    proc = serve({**s3_env, "MLFLOW_S3_ENDPOINT_URL": nowhere}, tmp_path / "cache")
    failed = wait_until(lambda: _failed(proc), timeout=60, interval=0.2,
                        what="the server to report the failed download")  # fmt: skip
    assert failed["status"] == "loading"  # it retries with backoff: the store may come back
    assert "from the artifact store: Could not connect to the endpoint URL: " in failed["message"]
    assert nowhere in failed["message"] and "MLFLOW_S3_ENDPOINT_URL" in failed["message"]
    assert failed["message"].endswith("(retrying in 2s)")
    assert [path for path in (tmp_path / "cache").rglob("*") if path.is_file()] == []


def test_an_endpoint_that_stays_away_ends_the_server_with_status_3_and_the_reason(
    serve: Serve, s3_env: dict[str, str], logged: dict[str, Any], tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    proc = serve({**s3_env, "MLFLOW_S3_ENDPOINT_URL": nowhere,
                  "TURNOUT_ARTIFACT_TIMEOUT_SECONDS": "4"}, tmp_path / "cache")  # fmt: skip
    assert proc.popen.wait(90) == 3  # 4 s of retries, each attempt as long as boto3 takes
    log = proc.output()
    assert "(retrying in 2s)" in log
    last = log.strip().splitlines()[-1]
    assert "exiting: the model cannot be served: Cannot download" in last
    assert f'Could not connect to the endpoint URL: "{nowhere}' in last
    assert last.endswith("(gave up after 4s: see --artifact-timeout)")


def _failed(proc: Process) -> dict[str, Any] | None:
    """The /ping body once a download has failed; a server that exited fails the test."""
    proc.alive()
    response = httpx.get(f"{proc.url}/ping")
    body = response.json() if response.status_code == 503 else {}
    return body if "retrying" in body.get("message", "") else None
