"""The bundled MLflow as teams run it: a PostgreSQL or MySQL backend store and an S3 artifact store,
every credential from a Secret. The rendered pieces are checked as Kubernetes reads them, and
the rendered container is run as the kubelet would start it (Secret values and `$(VAR)`
references put in place) against a real PostgreSQL or MariaDB and moto's S3 server, with the
pinned MLflow (the venv's; the image is its `-full` variant, which has the drivers)."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chart.test_mlflow_process import localized
from tests.conftest import BIN, Process, free_port, wait_until
from tests.manifests import Doc, Helm, one
from tests.stores import (
    BUCKET,
    KEY_ID,
    PASSWORD,
    REGION,
    SECRET,
    USER,
    aws_env,
    mariadb,
    postgres,
    s3_server,
)

SCENARIO = "with-mlflow-stores-values.yaml"
MLFLOW = f"v{importlib.metadata.version('mlflow')}"


def mlflow_pod(docs: list[Doc]) -> Doc:
    return dict(one(docs, "Deployment", "turnout-mlflow")["spec"]["template"]["spec"])


def secret_ref(name: str, key: str) -> dict[str, Any]:
    return {"valueFrom": {"secretKeyRef": {"name": name, "key": key}}}


def kubelet_env(container: Doc, secrets: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The container's environment as the kubelet makes it: Secret keys read, and `$(NAME)` in a
    value replaced by an earlier variable's value (left as it is when there is none)."""
    env: dict[str, str] = {}
    for item in container["env"]:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            env[item["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                       lambda m: env.get(m[1], m[0]), item["value"])  # fmt: skip
    return env


def test_database_and_s3_credentials_come_from_secrets(helm: Helm) -> None:
    docs = helm.template(SCENARIO)
    pod = mlflow_pod(docs)
    [container] = pod["containers"]
    assert container["image"] == f"ghcr.io/mlflow/mlflow:{MLFLOW}-full"
    assert container["command"][:2] == ["mlflow", "server"]
    store_flags = container["command"][2 : container["command"].index("--host")]
    assert store_flags == [
        "--default-artifact-root", "s3://turnout-models/mlflow", "--no-serve-artifacts",
    ]  # fmt: skip
    env = {e["name"]: {k: v for k, v in e.items() if k != "name"} for e in container["env"]}
    assert env["MLFLOW_DB_USERNAME"] == secret_ref("mlflow-database", "username")
    assert env["MLFLOW_DB_PASSWORD"] == secret_ref("mlflow-database", "password")
    assert env["MLFLOW_BACKEND_STORE_URI"] == {
        "value": "postgresql+psycopg2://$(MLFLOW_DB_USERNAME):$(MLFLOW_DB_PASSWORD)"
                 "@postgres.databases.svc:5432/mlflow"
    }  # fmt: skip
    assert env["AWS_ACCESS_KEY_ID"] == secret_ref("mlflow-s3", "AWS_ACCESS_KEY_ID")
    assert env["AWS_SECRET_ACCESS_KEY"] == secret_ref("mlflow-s3", "AWS_SECRET_ACCESS_KEY")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == {"value": "http://minio.storage.svc:9000"}
    assert env["AWS_DEFAULT_REGION"] == {"value": "us-east-1"}
    names = [e["name"] for e in container["env"]]  # a $(NAME) needs NAME defined before it
    assert names.index("MLFLOW_DB_PASSWORD") < names.index("MLFLOW_BACKEND_STORE_URI")
    # nothing on the volume: no claim, and a rolling update (no single writer to wait for)
    assert {v["name"]: v for v in pod["volumes"]}["data"] == {"name": "data", "emptyDir": {}}
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    deployment = one(docs, "Deployment", "turnout-mlflow")
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}


def test_a_database_uri_secret_and_proxied_s3_artifacts(helm: Helm) -> None:
    """A whole URI from one Secret key (no user or password variables), a MySQL database, and
    artifacts MLflow serves from S3 with the pod's own identity (no keys given)."""
    docs = helm.template(None, "mlflow.enabled=true", "mlflow.backendStore.type=mysql",
                         "mlflow.backendStore.uriSecret.name=mlflow-db",
                         "mlflow.backendStore.uriSecret.key=uri", "mlflow.artifactStore.type=s3",
                         "mlflow.artifactStore.s3.bucket=models", "mlflow.artifactStore.s3.prefix=",
                         "mlflow.image.driversSuffix=")  # fmt: skip
    [container] = mlflow_pod(docs)["containers"]
    assert container["image"] == f"ghcr.io/mlflow/mlflow:{MLFLOW}"  # an image of one's own
    command = container["command"]
    assert command[2 : command.index("--host")] == [
        "--artifacts-destination", "s3://models", "--serve-artifacts",
    ]  # fmt: skip
    stores = [e for e in container["env"] if e["name"].startswith(("MLFLOW_B", "MLFLOW_D", "AWS"))]
    assert stores == [{"name": "MLFLOW_BACKEND_STORE_URI", **secret_ref("mlflow-db", "uri")}]


def test_mysql_from_user_and_password_takes_its_default_port(helm: Helm) -> None:
    docs = helm.template(SCENARIO, "mlflow.backendStore.type=mysql")
    [container] = mlflow_pod(docs)["containers"]
    [uri] = [e["value"] for e in container["env"] if e["name"] == "MLFLOW_BACKEND_STORE_URI"]
    assert uri == ("mysql+pymysql://$(MLFLOW_DB_USERNAME):$(MLFLOW_DB_PASSWORD)"
                   "@postgres.databases.svc:3306/mlflow")  # fmt: skip


@pytest.mark.parametrize(
    ("values", "error"),
    [
        (["mlflow.backendStore.type=postgresql"],
         "mlflow.backendStore.host (or uriSecret) is required with the postgresql backend store"),
        (["mlflow.backendStore.type=mysql", "mlflow.backendStore.host=db"],
         "mlflow.backendStore.existingSecret (or uriSecret) is required with the mysql backend store"),
        (["mlflow.artifactStore.type=s3"],
         "mlflow.artifactStore.s3.bucket is required with the s3 artifact store"),
    ],
)  # fmt: skip
def test_a_store_missing_what_it_needs_is_refused_naming_the_value(
    helm: Helm, values: list[str], error: str
) -> None:
    assert error in helm.template_error("mlflow.enabled=true", *values)


def _start(container: Doc, env: dict[str, str], home: Path) -> Process:
    """The container's command, localized (test_mlflow_process.py), with its environment over
    one that keeps boto3 away from any AWS configuration of this machine."""
    port = free_port()
    argv = localized(container["command"], home, port)
    env = {**aws_env(home, ""), **env, "HOME": str(home), "PATH": str(BIN)}
    log = home / "mlflow.log"
    server = Process(f"http://127.0.0.1:{port}", subprocess.Popen(
        argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=home,
    ), log)  # fmt: skip
    wait_until(lambda: server.alive() and httpx.get(server.url + "/health").status_code == 200,
               timeout=180, interval=0.5, what="the bundled MLflow on its stores")  # fmt: skip
    return server


SECRETS = {
    "mlflow-database": {"username": USER, "password": PASSWORD},
    "mlflow-s3": {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET},
}
API = "/api/2.0/mlflow"


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("dialect", "serve_artifacts"), [("postgresql", "false"), ("mysql", "true")]
)
def test_the_rendered_server_runs_on_the_database_and_the_bucket(
    helm: Helm, tmp_path: Path, dialect: str, serve_artifacts: str
) -> None:
    """Its registry lands in the database's tables; an experiment's artifacts go to the bucket,
    which the server writes itself (with the Secret's keys) when it serves artifacts."""
    with s3_server() as s3, (postgres if dialect == "postgresql" else mariadb)() as database:
        docs = helm.template(SCENARIO, f"mlflow.backendStore.type={dialect}",
                             f"mlflow.backendStore.host={database.host}",
                             f"mlflow.backendStore.port={database.port}",
                             f"mlflow.artifactStore.s3.endpointUrl={s3.endpoint}",
                             f"mlflow.artifactStore.s3.region={REGION}",
                             f"mlflow.artifactStore.s3.serveArtifacts={serve_artifacts}")  # fmt: skip
        [container] = mlflow_pod(docs)["containers"]
        env = kubelet_env(container, SECRETS)
        assert env["MLFLOW_BACKEND_STORE_URI"] == database.uri
        server = _start(container, env, tmp_path)
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                made = http.post(f"{API}/registered-models/create", json={"name": "Stored"})
                assert made.status_code == 200, made.text
                created = http.post(f"{API}/experiments/create", json={"name": "stored"})
                assert created.status_code == 200, created.text
                experiment = created.json()["experiment_id"]
                got = http.get(f"{API}/experiments/get", params={"experiment_id": experiment})
                location = got.json()["experiment"]["artifact_location"]
                if serve_artifacts == "true":
                    assert location == f"mlflow-artifacts:/{experiment}"
                    put = http.put(f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/hello.txt",
                                   content=b"stored")  # fmt: skip
                    assert put.status_code == 200, put.text
                    body = s3.client.get_object(Bucket=BUCKET, Key=f"mlflow/{experiment}/hello.txt")
                    assert body["Body"].read() == b"stored"
                else:
                    assert location == f"s3://{BUCKET}/mlflow/{experiment}"
            assert database.rows("SELECT name FROM registered_models") == [("Stored",)]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nMLflow log:\n{server.output()[-4000:]}") from None
        finally:
            server.stop()
