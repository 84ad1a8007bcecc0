"""How the MLflow adapter names a failed registry call: the reason a user sees on ModelResolved
and the message that says what to check."""

from __future__ import annotations

import pytest
import requests

from turnout_operator.domain import reasons as R
from turnout_operator.domain.observed import ResolveFailed
from turnout_operator.registry_http import artifacts_url, auth, classify, failure

WHERE = "MLflow registry at http://mlflow:5000"


@pytest.mark.parametrize(
    ("status", "error_code", "reason"),
    [
        (None, None, R.REGISTRY_UNAVAILABLE),  # refused, timed out, DNS, TLS
        (401, None, R.UNAUTHORIZED),  # basic-auth app, an auth proxy
        (403, None, R.UNAUTHORIZED),
        (403, "PERMISSION_DENIED", R.UNAUTHORIZED),
        (200, "UNAUTHENTICATED", R.UNAUTHORIZED),
        (404, "RESOURCE_DOES_NOT_EXIST", R.MODEL_NOT_FOUND),
        (400, "INVALID_PARAMETER_VALUE", R.INVALID_SPEC),  # e.g. a stage that does not exist
        (404, None, R.REGISTRY_UNAVAILABLE),  # not MLflow's answer: a wrong URL or a proxy
        (404, "ENDPOINT_NOT_FOUND", R.REGISTRY_UNAVAILABLE),
        (400, None, R.REGISTRY_UNAVAILABLE),
        (429, None, R.REGISTRY_UNAVAILABLE),
        (500, "INTERNAL_ERROR", R.REGISTRY_UNAVAILABLE),
        (502, None, R.REGISTRY_UNAVAILABLE),
        (503, None, R.REGISTRY_UNAVAILABLE),
        (504, None, R.REGISTRY_UNAVAILABLE),
    ],
)
def test_classify(status: int | None, error_code: str | None, reason: str) -> None:
    assert classify(status, error_code) == reason


@pytest.mark.parametrize(
    ("status", "error_code", "detail", "expected"),
    [
        (None, None, "Failed to establish a new connection: [Errno 111] Connection refused",
         ResolveFailed(R.REGISTRY_UNAVAILABLE, f"{WHERE} is unavailable: Failed to establish a new connection: [Errno 111] Connection refused")),
        (None, None, "no answer within 3 s",
         ResolveFailed(R.REGISTRY_UNAVAILABLE, f"{WHERE} is unavailable: no answer within 3 s")),
        (503, None, "",
         ResolveFailed(R.REGISTRY_UNAVAILABLE, f"{WHERE} is unavailable: HTTP 503")),
        (500, "INTERNAL_ERROR", "database is locked",
         ResolveFailed(R.REGISTRY_UNAVAILABLE, f"{WHERE} is unavailable: HTTP 500 (database is locked)")),
        (404, None, "",
         ResolveFailed(R.REGISTRY_UNAVAILABLE, f"{WHERE} answered HTTP 404: is it the URL of an MLflow tracking server?")),
        (401, None, "",
         ResolveFailed(R.UNAUTHORIZED, f"{WHERE} rejected the credentials (HTTP 401); check spec.registry.credentialsSecret")),
        (403, "PERMISSION_DENIED", "no READ permission",
         ResolveFailed(R.UNAUTHORIZED, f"{WHERE} rejected the credentials (HTTP 403); check spec.registry.credentialsSecret")),
        (404, "RESOURCE_DOES_NOT_EXIST", "Registered Model with name=X not found",
         ResolveFailed(R.MODEL_NOT_FOUND, f"{WHERE}: Registered Model with name=X not found")),
        (400, "INVALID_PARAMETER_VALUE", "Invalid Model Version stage: Prod.",
         ResolveFailed(R.INVALID_SPEC, f"{WHERE}: Invalid Model Version stage: Prod.")),
    ],
)  # fmt: skip
def test_failure_messages_name_the_registry_and_what_to_check(
    status: int | None, error_code: str | None, detail: str, expected: ResolveFailed
) -> None:
    assert failure(WHERE, status, error_code, detail) == expected


@pytest.mark.parametrize(
    ("secret", "authorization"),
    [
        ({}, None),
        ({"MLFLOW_TRACKING_TOKEN": "t0ken"}, "Bearer t0ken"),
        ({"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "s3cret"}, "Basic YWxpY2U6czNjcmV0"),
        ({"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "s3cret", "MLFLOW_TRACKING_TOKEN": "t0ken"}, "Basic YWxpY2U6czNjcmV0"),
        ({"MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_TOKEN": ""}, None),  # empty keys
        ({"AWS_ACCESS_KEY_ID": "AKIA", "MLFLOW_S3_ENDPOINT_URL": "http://minio:9000"}, None),
    ],
)  # fmt: skip
def test_credentials_come_from_the_secret_only(
    secret: dict[str, str], authorization: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The operator's own environment must not leak into a ModelDeployment's requests.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "operator-token")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "operator")
    request = requests.Request("GET", "http://mlflow:5000/api", auth=auth(secret)).prepare()
    assert request.headers.get("Authorization") == authorization


@pytest.mark.parametrize(
    ("location", "tracking_uri", "url"),
    [
        ("mlflow-artifacts:/1/abc/artifacts", "http://127.0.0.1:5000", "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts"),
        ("mlflow-artifacts:/models/m-1/artifacts", "http://h:5000/", "http://h:5000/api/2.0/mlflow-artifacts/artifacts/models/m-1/artifacts"),
        ("mlflow-artifacts:/1/abc/artifacts", "https://example.org/mlflow", "https://example.org/mlflow/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts"),
        ("mlflow-artifacts://other:5001/1/abc/artifacts", "http://h:5000", "http://other:5001/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts"),
    ],
)  # fmt: skip
def test_artifact_proxy_urls_resolve_as_mlflow_resolves_them(
    location: str, tracking_uri: str, url: str
) -> None:
    assert artifacts_url(location, tracking_uri) == url
