"""The operator's MLflow adapter against a real MLflow tracking server: resolution by version,
alias and stage, the failures a user sees on ModelResolved, credentials passed per registry,
bounded waits on a registry that is down, version tags and smoke payloads."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from mlflow import MlflowClient

from tests.conftest import Registry, free_port
from turnout_operator.domain import reasons as R
from turnout_operator.domain.observed import Resolved, ResolveFailed
from turnout_operator.domain.spec import ModelRef
from turnout_operator.registry import ModelRegistry
from turnout_operator.registry_http import RegistryError

pytestmark = pytest.mark.slow
TAG = "turnout.dev/test.registry"  # a key no other test writes


def reference(value: object) -> str | None:
    """Test ids: the models:/ URI a case resolves."""
    return value.reference if isinstance(value, ModelRef) else None


@pytest.fixture(scope="module")
def registry(mlflow_registry: Registry) -> ModelRegistry:
    return ModelRegistry(mlflow_registry.uri, {})


@pytest.fixture(scope="module")
def client(mlflow_registry: Registry) -> MlflowClient:
    """MLflow's own client: the reference the adapter's answers are checked against."""
    return MlflowClient(tracking_uri=mlflow_registry.uri)


@pytest.mark.parametrize(
    ("ref", "version"),
    [
        (ModelRef(name="Diabetes", version="3"), "3"),
        (ModelRef(name="Diabetes", alias="champion"), "2"),
        (ModelRef(name="Diabetes", alias="challenger"), "3"),
        (ModelRef(name="Diabetes", stage="Production"), "1"),
        (ModelRef(name="Diabetes", stage="production"), "1"),  # MLflow canonicalises stage names
        (ModelRef(name="Diabetes", stage="latest"), "3"),  # models:/NAME/latest: the newest version
        (ModelRef(name="Iris", alias="champion"), "1"),
    ],
    ids=reference,
)
def test_resolve(
    registry: ModelRegistry, client: MlflowClient, ref: ModelRef, version: str
) -> None:
    run_id = client.get_model_version(ref.name, version).run_id
    assert run_id
    assert registry.resolve(ref) == Resolved(version, f"models:/{ref.name}/{version}", run_id)


@pytest.mark.parametrize(
    ("ref", "reason", "message"),
    [
        (ModelRef(name="Nope", version="1"), R.MODEL_NOT_FOUND, "registered model 'Nope' not found"),
        (ModelRef(name="Nope", alias="champion"), R.MODEL_NOT_FOUND, "registered model 'Nope' not found"),
        (ModelRef(name="Nope", stage="Production"), R.MODEL_NOT_FOUND, "registered model 'Nope' not found"),
        (ModelRef(name="Diabetes", version="9"), R.MODEL_NOT_FOUND, "registered model 'Diabetes' has no version 9"),
        (ModelRef(name="Diabetes", alias="nope"), R.MODEL_NOT_FOUND, "registered model 'Diabetes' has no alias 'nope'"),
        (ModelRef(name="Diabetes", stage="Staging"), R.MODEL_NOT_FOUND, "registered model 'Diabetes' has no version in stage 'Staging'"),
        (ModelRef(name="Diabetes", stage="Prod"), R.INVALID_SPEC, "MLflow registry at {uri}: Invalid Model Version stage: Prod. Value must be one of None, Staging, Production, Archived."),
    ],
    ids=reference,
)  # fmt: skip
def test_resolve_missing(registry: ModelRegistry, ref: ModelRef, reason: str, message: str) -> None:
    assert registry.resolve(ref) == ResolveFailed(reason, message.format(uri=registry.tracking_uri))


def test_a_url_that_is_not_mlflow(mlflow_registry: Registry) -> None:
    uri = f"{mlflow_registry.uri}/not-mlflow"
    assert ModelRegistry(uri).resolve(ModelRef(name="Diabetes", version="1")) == ResolveFailed(
        R.REGISTRY_UNAVAILABLE,
        f"MLflow registry at {uri} answered HTTP 404: is it the URL of an MLflow tracking server?",
    )


def test_registry_down_answers_within_seconds() -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    got = ModelRegistry(uri).resolve(ModelRef(name="Diabetes", alias="champion"))
    elapsed = time.monotonic() - started
    assert isinstance(got, ResolveFailed)
    assert got.reason == R.REGISTRY_UNAVAILABLE
    assert got.message == (
        f"MLflow registry at {uri} is unavailable: "
        "Failed to establish a new connection: [Errno 111] Connection refused"
    )
    assert elapsed < 10, elapsed


def test_registry_that_never_answers_times_out() -> None:
    with socket.socket() as hung:  # accepts connections into its backlog, never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        uri = f"http://127.0.0.1:{hung.getsockname()[1]}"
        started = time.monotonic()
        got = ModelRegistry(uri, timeout_seconds=1, max_retries=1).resolve(
            ModelRef(name="Diabetes", version="1")
        )
        elapsed = time.monotonic() - started
    assert got == ResolveFailed(
        R.REGISTRY_UNAVAILABLE, f"MLflow registry at {uri} is unavailable: no answer within 1 s"
    )
    assert elapsed < 6, elapsed  # one attempt: a request that timed out is not sent again


def test_tag_writes_the_state_on_the_version(registry: ModelRegistry, client: MlflowClient) -> None:
    registry.tag("Iris", "1", TAG, "preview")
    assert client.get_model_version("Iris", "1").tags[TAG] == "preview"
    registry.tag("Iris", "1", TAG, "active")
    registry.tag("Iris", "1", TAG, "active")  # idempotent
    assert client.get_model_version("Iris", "1").tags[TAG] == "active"


def test_tag_failures_say_whether_a_retry_can_help(registry: ModelRegistry) -> None:
    with pytest.raises(RegistryError) as missing:
        registry.tag("Nope", "1", TAG, "rejected")
    assert missing.value.failure.reason == R.MODEL_NOT_FOUND
    down = ModelRegistry(f"http://127.0.0.1:{free_port()}", max_retries=0)
    with pytest.raises(RegistryError) as unavailable:
        down.tag("Iris", "1", TAG, "rejected")
    assert unavailable.value.failure.reason == R.REGISTRY_UNAVAILABLE


def test_smoke_payload_is_what_mlflow_logged(registry: ModelRegistry) -> None:
    payload = registry.smoke_payload("Broken", "1")
    assert payload is not None
    assert json.loads(payload) == {
        "dataframe_split": {"columns": ["age", "bmi"], "data": [[30.0, 22.0], [40.0, 25.0]]}
    }


def test_smoke_payload_matches_the_logged_file(
    registry: ModelRegistry, mlflow_registry: Registry
) -> None:
    client = MlflowClient(tracking_uri=mlflow_registry.uri, registry_uri=mlflow_registry.uri)
    # The fixture's server keeps the artifacts it serves in a local directory: read MLflow's file.
    model_dir = mlflow_registry.artifact_path(
        client.get_model_version_download_uri("Diabetes", "2")
    )
    payload = registry.smoke_payload("Diabetes", "2")
    assert payload == (model_dir / "serving_input_example.json").read_bytes()
    frame = json.loads(payload)["dataframe_split"]
    assert frame["columns"] == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert len(frame["data"]) == 5  # demo_models logs X.head(5)


def test_smoke_payload_without_input_example(registry: ModelRegistry) -> None:
    assert registry.smoke_payload("NoSignature", "1") is None


def test_smoke_payload_for_a_missing_version_raises(registry: ModelRegistry) -> None:
    with pytest.raises(RegistryError) as raised:
        registry.smoke_payload("Diabetes", "9")
    assert raised.value.failure == ResolveFailed(
        R.MODEL_NOT_FOUND,
        f"MLflow registry at {registry.tracking_uri}: "
        "Model Version (name=Diabetes, version=9) not found",
    )


# -- credentials: MLflow behind an authenticating reverse proxy -----------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


ALLOWED = {basic("alice", "s3cret"), "Bearer t0ken"}


@dataclass
class AuthProxy:
    """A real HTTP server in front of MLflow, as nginx or oauth2-proxy would be: 401 without
    valid credentials, 403 for `mallory`, 503 (with a one-hour Retry-After) for `flaky`, else the
    request is forwarded to MLflow. It records each request's Authorization header."""

    url: str
    seen: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture(scope="module")
def auth_proxy(mlflow_registry: Registry) -> Iterator[AuthProxy]:
    upstream = httpx.Client(base_url=mlflow_registry.uri, timeout=30)
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            auth = self.headers.get("Authorization", "")
            seen.append((self.path, auth))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if auth == basic("flaky", "x"):
                self._answer(503, b"busy", {"Retry-After": "3600"})
            elif auth == basic("mallory", "x"):
                self._answer(403, b"forbidden")
            elif auth not in ALLOWED:
                self._answer(401, b"unauthorized", {"WWW-Authenticate": 'Basic realm="mlflow"'})
            else:
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                got = upstream.request(self.command, self.path, content=body, headers=headers)
                self._answer(got.status_code, got.content)

        def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _handle

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield AuthProxy(f"http://127.0.0.1:{server.server_address[1]}", seen)
    finally:
        server.shutdown()
        server.server_close()
        upstream.close()


@pytest.mark.parametrize(
    "secret",
    [
        {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "s3cret"},
        {"MLFLOW_TRACKING_TOKEN": "t0ken"},
    ],
)
def test_credentials_are_sent_per_registry(auth_proxy: AuthProxy, secret: dict[str, str]) -> None:
    environ = dict(os.environ)
    got = ModelRegistry(auth_proxy.url, secret).resolve(ModelRef(name="Diabetes", alias="champion"))
    assert isinstance(got, Resolved)
    assert got.version == "2"
    assert auth_proxy.seen[-1][1] in ALLOWED
    assert dict(os.environ) == environ  # nothing was put in the operator's environment


@pytest.mark.parametrize(
    ("secret", "status"),
    [
        ({}, 401),
        ({"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "wrong"}, 401),
        ({"MLFLOW_TRACKING_TOKEN": "expired"}, 401),
        ({"MLFLOW_TRACKING_USERNAME": "mallory", "MLFLOW_TRACKING_PASSWORD": "x"}, 403),
    ],
)
def test_wrong_credentials(auth_proxy: AuthProxy, secret: dict[str, str], status: int) -> None:
    registry = ModelRegistry(auth_proxy.url, secret)
    assert registry.resolve(ModelRef(name="Diabetes", version="1")) == ResolveFailed(
        R.UNAUTHORIZED,
        f"MLflow registry at {auth_proxy.url} rejected the credentials (HTTP {status}); "
        "check spec.registry.credentialsSecret",
    )
    with pytest.raises(RegistryError) as rejected:
        registry.tag("Iris", "1", TAG, "rejected")
    assert rejected.value.failure.reason == R.UNAUTHORIZED


def test_server_errors_are_retried_a_bounded_number_of_times(auth_proxy: AuthProxy) -> None:
    secret = {"MLFLOW_TRACKING_USERNAME": "flaky", "MLFLOW_TRACKING_PASSWORD": "x"}
    before = len(auth_proxy.seen)
    started = time.monotonic()
    got = ModelRegistry(auth_proxy.url, secret, max_retries=2).resolve(
        ModelRef(name="Diabetes", version="1")
    )
    elapsed = time.monotonic() - started
    assert got == ResolveFailed(
        R.REGISTRY_UNAVAILABLE, f"MLflow registry at {auth_proxy.url} is unavailable: HTTP 503"
    )
    assert len(auth_proxy.seen) - before == 3  # one try and two retries
    assert elapsed < 5, elapsed  # the one-hour Retry-After is not honoured


# -- artifacts served by the tracking server (mlflow-artifacts:) ----------------------------------


@pytest.fixture(scope="module")
def proxied_versions(mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A model MLflow saved with an input example, uploaded to the server's artifact proxy and
    registered as version 1 of `Proxied`; version 2 has no example."""
    import mlflow.sklearn
    import pandas as pd
    from sklearn.dummy import DummyRegressor

    X = pd.DataFrame({"x": [1.0, 2.0]})
    model = DummyRegressor().fit(X, [0.0, 1.0])
    client = MlflowClient(tracking_uri=mlflow_registry.uri)
    experiment = client.create_experiment("proxied", artifact_location="mlflow-artifacts:/proxied")
    run = client.create_run(experiment)
    name = "Proxied"
    client.create_registered_model(name)
    for folder, example in (("with", X), ("without", None)):
        local = tmp_path_factory.mktemp("saved") / "model"
        mlflow.sklearn.save_model(
            model, str(local), input_example=example, pip_requirements=["mlflow"],
            serialization_format="cloudpickle",
        )  # fmt: skip
        client.log_artifacts(run.info.run_id, str(local), folder)
        client.create_model_version(
            name, f"{run.info.artifact_uri}/{folder}", run_id=run.info.run_id
        )
    client.set_terminated(run.info.run_id)
    return name


def test_smoke_payload_through_the_artifact_proxy(
    auth_proxy: AuthProxy, proxied_versions: str
) -> None:
    registry = ModelRegistry(auth_proxy.url, {"MLFLOW_TRACKING_TOKEN": "t0ken"})
    before = len(auth_proxy.seen)
    payload = registry.smoke_payload(proxied_versions, "1")
    assert payload is not None
    assert json.loads(payload) == {"dataframe_split": {"columns": ["x"], "data": [[1.0], [2.0]]}}
    artifact_requests = [p for p, _ in auth_proxy.seen[before:] if "mlflow-artifacts" in p]
    assert [p.rsplit("/", 1)[-1] for p in artifact_requests] == ["serving_input_example.json"]
    assert registry.smoke_payload(proxied_versions, "2") is None
    unauthorized = ModelRegistry(auth_proxy.url, {"MLFLOW_TRACKING_TOKEN": "expired"})
    with pytest.raises(RegistryError) as raised:
        unauthorized.smoke_payload(proxied_versions, "1")
    assert raised.value.failure == ResolveFailed(
        R.UNAUTHORIZED,
        f"MLflow registry at {auth_proxy.url} rejected the credentials (HTTP 401); "
        "check spec.registry.credentialsSecret",
    )
