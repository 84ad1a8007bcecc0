"""MLflow's REST conventions, for the registry adapter: how a failed call is classified and
explained, how a Secret's keys become request authentication, the retry policy, and where the
tracking server's artifact proxy serves a `mlflow-artifacts:` location.

Plain `requests`, no `mlflow` import (see registry.py for why).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from turnout_operator.domain import reasons
from turnout_operator.domain.observed import ResolveFailed

API = "/api/2.0/mlflow"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})  # MLflow's transient failures
BACKOFF_FACTOR = 0.5  # urllib3 sleeps 0 s before the first retry, then 1 s, 2 s, ...
_AUTH_ERROR_CODES = frozenset(
    {"UNAUTHENTICATED", "UNAUTHORIZED", "PERMISSION_DENIED", "CUSTOMER_UNAUTHORIZED"}
)


class RegistryError(Exception):
    """The registry could not answer; `failure` says why in ModelResolved terms."""

    def __init__(self, failure: ResolveFailed) -> None:
        super().__init__(failure.message)
        self.failure = failure


def classify(status: int | None, error_code: str | None = None) -> str:
    """The ModelResolved reason for a failed registry call.

    `status` is None when no HTTP answer came at all (refused, timed out, DNS or TLS failure);
    `error_code` is MLflow's JSON `error_code`, when the body had one. Only MLflow's own codes
    count as "not found" or "invalid": a bare 404 or 400 comes from something that is not an MLflow
    registry (a wrong URL, a proxy), which the user fixes like an outage, not by editing the model.
    """
    if status is None:
        return reasons.REGISTRY_UNAVAILABLE
    if status in (401, 403) or error_code in _AUTH_ERROR_CODES:
        return reasons.UNAUTHORIZED
    if error_code == "RESOURCE_DOES_NOT_EXIST":
        return reasons.MODEL_NOT_FOUND
    if error_code == "INVALID_PARAMETER_VALUE":
        return reasons.INVALID_SPEC
    return reasons.REGISTRY_UNAVAILABLE


def failure(
    where: str, status: int | None, error_code: str | None = None, detail: str = ""
) -> ResolveFailed:
    """A ResolveFailed whose message names the server (`where`: "MLflow registry at URI") and
    says what to check; `detail` is the transport error or MLflow's own message."""
    reason = classify(status, error_code)
    if reason == reasons.UNAUTHORIZED:
        message = (
            f"{where} rejected the credentials (HTTP {status}); "
            "check spec.registry.credentialsSecret"
        )
    elif status is None:
        message = f"{where} is unavailable: {detail}"
    elif status == 404 and not error_code:  # a route MLflow does not have
        message = f"{where} answered HTTP 404: is it the URL of an MLflow tracking server?"
    elif reason == reasons.REGISTRY_UNAVAILABLE:
        message = f"{where} is unavailable: HTTP {status}" + (f" ({detail})" if detail else "")
    else:
        message = f"{where}: {detail or f'HTTP {status}'}"
    return ResolveFailed(reason, message)


class _Token(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def auth(credentials: Mapping[str, str]) -> requests.auth.AuthBase | None:
    """The request authentication a Secret's keys ask for: basic auth wins over a token, as in
    MLflow's own client; no keys, no authentication."""
    username = credentials.get("MLFLOW_TRACKING_USERNAME")
    password = credentials.get("MLFLOW_TRACKING_PASSWORD")
    if username and password:
        return requests.auth.HTTPBasicAuth(username, password)
    token = credentials.get("MLFLOW_TRACKING_TOKEN")
    return _Token(token) if token else None


def session(max_retries: int) -> requests.Session:
    """A session that retries refused connections and MLflow's transient statuses `max_retries`
    times with exponential backoff; the last answer comes back to be classified. A request the
    server took and did not answer in time is not sent again at once: a registry that hangs
    costs one timeout per question, and the next question comes with the reconcile's backoff."""
    retry = Retry(
        total=max_retries, connect=max_retries, read=0, redirect=max_retries,
        status=max_retries, status_forcelist=RETRY_STATUSES, backoff_factor=BACKOFF_FACTOR,
        allowed_methods=None,  # MLflow's calls here are idempotent, POSTs (set-tag) included
        raise_on_status=False, respect_retry_after_header=False,
    )  # fmt: skip
    adapter = HTTPAdapter(max_retries=retry)
    http = requests.Session()
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


def artifacts_url(location: str, tracking_uri: str) -> str:
    """The tracking server's artifact-proxy URL of an `mlflow-artifacts:` location
    (`mlflow-artifacts:/1/abc/artifacts` or, naming the server, `mlflow-artifacts://host:port/...`),
    as MLflow's artifact repository resolves it."""
    tracking, parsed = urlparse(tracking_uri), urlparse(location)
    path = re.sub("/+", "/", f"/{tracking.path}/{ARTIFACTS_API}/{parsed.path}")
    return f"{tracking.scheme}://{parsed.netloc or tracking.netloc}{path}".rstrip("/")


def answer_failure(
    where: str, response: requests.Response, answer: dict[str, Any] | None
) -> ResolveFailed:
    """Classify a non-200 answer by its status and MLflow's JSON error, when there is one."""
    answer = answer or {}
    code = answer.get("error_code")
    return failure(where, response.status_code, code, str(answer.get("message", "")))


def json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        answer = response.json()
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def transport_detail(exc: requests.RequestException, timeout: float) -> str:
    """A short reason for a request that got no HTTP answer."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s"
    # urllib3's MaxRetryError carries the last failure as `reason`: "HTTPConnection(host=...,
    # port=...): Failed to establish a new connection: [Errno 111] Connection refused"
    inner = exc.args[0] if exc.args else exc
    reason = getattr(inner, "reason", inner)
    if "timed out" in str(reason).lower():
        return f"no answer within {timeout:g} s"
    return str(reason).split("): ", 1)[-1]
