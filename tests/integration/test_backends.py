"""The operator and turnout-serve against MLflow as teams run it: a tracking server whose backend
store is a real PostgreSQL, or a real MariaDB, and whose artifacts are in S3 (moto's server),
which clients reach directly (`mlflow server --no-serve-artifacts`). The real operator runs
against the Kubernetes API emulator, its pods are real `turnout-serve` processes; the pods
download the model from S3 and the operator reads the smoke test's input example there, both
with the keys and endpoint of the ModelDeployment's registry Secret (neither has any of its own:
a pod's environment is its container's, the operator's has no AWS_* or S3 endpoint)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from tests.conftest import Registry, start_mlflow
from tests.integration.cluster import ROW, Cluster, running_cluster
from tests.stores import BUCKET, S3, Database, aws_env, mariadb, postgres, s3_server

pytestmark = pytest.mark.slow
NAME = "StoredDiabetes"
BACKENDS: dict[str, Callable[[], AbstractContextManager[Database]]] = {
    "postgresql": postgres,
    "mariadb": mariadb,
}

# Two versions (another alpha, so other answers), each with its input example; run in a child
# process so the tracking and S3 environment never leaks into the tests' own.
REGISTER = """
import json, sys
import mlflow, mlflow.sklearn, pandas
from mlflow.models import infer_signature
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

name, row = sys.argv[1], json.loads(sys.argv[2])
X, y = load_diabetes(return_X_y=True, as_frame=True)
found = {}
for alpha in (0.1, 10.0):
    model = Ridge(alpha=alpha).fit(X, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", signature=infer_signature(X, model.predict(X)),
            input_example=X.head(3), registered_model_name=name,
        )
    found[str(info.registered_model_version)] = {
        "model_id": info.model_id,
        "predictions": model.predict(pandas.DataFrame([row])[list(X.columns)]).tolist(),
    }
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with s3_server() as server:
        yield server


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def database(request: pytest.FixtureRequest) -> Iterator[Database]:
    with BACKENDS[request.param]() as started:
        yield started


@pytest.fixture(scope="module")
def registry(
    database: Database, s3: S3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """MLflow on `database`, artifacts under s3://BUCKET/<dialect>/, with the two versions of
    NAME registered; `models` maps each version to its model id and its answer for ROW."""
    home = tmp_path_factory.mktemp(f"mlflow-{database.dialect}")
    aws = aws_env(home, s3.endpoint)
    server = start_mlflow(home, aws, [
        "--backend-store-uri", database.uri,
        "--default-artifact-root", f"s3://{BUCKET}/{database.dialect}", "--no-serve-artifacts",
    ])  # fmt: skip
    try:
        env = {"MLFLOW_TRACKING_URI": server.url}
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
        done = subprocess.run(
            [sys.executable, "-c", REGISTER, NAME, json.dumps(ROW)], capture_output=True,
            text=True, timeout=300, env={**inherited, **aws, **env}, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        yield Registry(server.url, json.loads(done.stdout.strip().splitlines()[-1]), env)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nMLflow log:\n{server.output()[-3000:]}") from None
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from running_cluster(registry, tmp_path_factory.mktemp("cluster"))


@pytest.mark.timeout(900)  # the module's stack starts here: a database, MLflow's migrations
def test_a_model_stored_in_the_database_and_s3_deploys_and_rolls_to_its_second_version(
    cluster: Cluster, database: Database, s3: S3, registry: Registry
) -> None:
    models = registry.models
    cluster.kube.create({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "registry-s3", "namespace": "default"},
        "stringData": {"AWS_ACCESS_KEY_ID": "turnout-test", "AWS_SECRET_ACCESS_KEY": "turnout-test-secret",
                       "AWS_DEFAULT_REGION": "us-east-1", "MLFLOW_S3_ENDPOINT_URL": s3.endpoint},
    })  # fmt: skip
    strategy = {"blueGreen": {"smokeTest": True, "scaleDownDelaySeconds": 0}}
    cluster.apply("stored", {"name": NAME, "version": "1"}, strategy=strategy,
                  registry={"credentialsSecret": "registry-s3"})  # fmt: skip
    status = cluster.wait_phase("stored", "Healthy", timeout=240, activeVersion="1")
    assert status["modelUri"] == f"models:/{NAME}/1"
    first = cluster.predict("stored")
    assert first.status_code == 200, first.text
    assert first.json() == {"predictions": models["1"]["predictions"]}

    cluster.patch_spec("stored", {"model": {"name": NAME, "version": "2"}})
    status = cluster.wait_phase("stored", "Healthy", timeout=240, activeVersion="2",
                                activeColor="green")  # fmt: skip
    second = cluster.predict("stored")
    assert second.status_code == 200, second.text
    assert second.json() == {"predictions": models["2"]["predictions"]}
    assert models["2"]["predictions"] != models["1"]["predictions"]

    # The registry's rows are in the database, each version's files in S3: the pods of its
    # color downloaded the model from there, and the operator read the input example it sent
    # (one GET without the HEAD that starts each file of a download).
    assert database.rows("SELECT version FROM model_versions WHERE name = %s ORDER BY version",
                         NAME) == [(1,), (2,)]  # fmt: skip
    for version in ("1", "2"):  # in experiment 0's artifacts
        artifacts = f"/{BUCKET}/{database.dialect}/0/models/{models[version]['model_id']}/artifacts"
        assert any(f"GET {artifacts}/MLmodel " in line for line in s3.requests), s3.requests
        example = [line.split('"')[1].split()[0] for line in s3.requests
                   if f" {artifacts}/serving_input_example.json " in line]  # fmt: skip
        assert example.count("GET") - example.count("HEAD") == 1, example  # the operator's read
    # the smoke tests: the example POSTed through the preview Service, once per version
    smoke_tests = [call.code for call in cluster.kube.requests
                   if call.subresource == "proxy" and call.name == "stored-preview:http"]  # fmt: skip
    assert smoke_tests == [200, 200]
