"""The operator's one MLflow adapter: resolve a model reference, record rollout state on model
versions, and read the input example a preview is smoke-tested with.

One operator serves many ModelDeployments, each with its own tracking server and credentials
Secret, from one process and many threads. So nothing here reads or writes `os.environ`, the
`~/.mlflow/credentials` file or MLflow's global tracking URI: every request carries the
`MlflowHostCreds` built from the ModelDeployment's Secret and its own timeout and retry budget.

Why not `MlflowClient`: it builds `RestStore(get_host_creds)` from the process environment, and
its `http_request` reads retries, timeouts, request-header plugins and workspaces from the
environment on every request (defaults: 7 retries with exponential backoff and 120 s timeouts, so
a down registry blocks a reconcile for minutes). Importing any of `mlflow` also costs the operator
~125 MB of resident memory (it imports pandas and FastAPI). So this module speaks MLflow's
documented REST API (`/api/2.0/mlflow/...`) with `requests`, the HTTP library MLflow itself uses,
with MLflow's own retry policy (urllib3 `Retry` on 429/5xx with exponential backoff) but with
the timeout and retry budget of each call given here, and reads the few fields it needs from the
JSON. Retry-After headers are ignored: a 503 asking for an hour must not stall a kopf thread for
an hour.

Artifacts (only the input example is ever read): through the tracking server's artifact proxy
(`mlflow-artifacts:`, with the same credentials), from a local artifact root, from S3 with the
Secret's AWS_* keys and MLFLOW_S3_ENDPOINT_URL given to one boto3 client, or, for other stores, by
MLflow's artifact repository with the operator pod's own cloud identity.

Everything is synchronous (kopf calls it from a thread) and returns values or raises
`RegistryError`; it never decides what a rollout does with the answer.
"""

from __future__ import annotations

import logging
import posixpath
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from turnout_operator.domain import reasons
from turnout_operator.domain.actions import VersionState
from turnout_operator.domain.observed import Resolved, ResolveFailed
from turnout_operator.domain.spec import ModelRef

log = logging.getLogger("turnout_operator.registry")

API = "/api/2.0/mlflow"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})  # MLflow's transient failures
# MLflow 3 writes this next to the model when `log_model(input_example=...)` is given: the exact
# JSON body `mlflow models serve` (and turnout-serve) accept on /invocations.
SERVING_INPUT_FILE = "serving_input_example.json"
SMOKE_CONTENT_TYPE = "application/json"
BACKOFF_FACTOR = 0.5  # urllib3 sleeps 0 s before the first retry, then 1 s, 2 s, ...

_ANSWER_FIELDS = {
    "model-versions/get": "model_version",
    "registered-models/alias": "model_version",
    "model-versions/get-download-uri": "artifact_uri",
}
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
    """A session that retries refused connections, timeouts and MLflow's transient statuses
    `max_retries` times with exponential backoff; the last answer comes back to be classified."""
    retry = Retry(
        total=max_retries, connect=max_retries, read=max_retries, redirect=max_retries,
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


class ModelRegistry:
    """One tracking server seen with one set of credentials. Cheap to build: make one per
    reconcile from the ModelDeployment's registry spec and Secret."""

    def __init__(
        self,
        tracking_uri: str,
        credentials: Mapping[str, str] | None = None,
        *,
        timeout_seconds: float = 3.0,
        max_retries: int = 2,
    ) -> None:
        self.tracking_uri = tracking_uri.rstrip("/")
        self._credentials = dict(credentials or {})
        self._where = f"MLflow registry at {self.tracking_uri}"
        # Worst case for a registry that accepts connections and never answers:
        # (max_retries + 1) * timeout_seconds plus the backoff sleeps.
        self._timeout = timeout_seconds
        self._retries = max_retries

    # -- the three questions the operator asks -------------------------------------------------

    def resolve(self, ref: ModelRef) -> Resolved | ResolveFailed:
        """Pin a version, alias or stage to one immutable `models:/NAME/VERSION`."""
        try:
            found = self._lookup(ref)
        except RegistryError as exc:
            if exc.failure.reason in (reasons.MODEL_NOT_FOUND, reasons.INVALID_SPEC):
                return self._explain_missing(ref, exc.failure)
            return exc.failure
        if found is None:
            return ResolveFailed(
                reasons.MODEL_NOT_FOUND,
                f"registered model {ref.name!r} has no version in stage {ref.stage!r}",
            )
        version = str(found["version"])
        log.info("resolved %s to version %s at %s", ref.reference, version, self.tracking_uri)
        return Resolved(version, f"models:/{ref.name}/{version}", found.get("run_id") or None)

    def tag(self, name: str, version: str, key: str, state: VersionState) -> None:
        """Tag the model version `key=state` (idempotent); raises RegistryError. The operator
        writes these through `tags.TagWriter`, off the reconcile path, with retries."""
        body = {"name": name, "version": version, "key": key, "value": state}
        self._api("POST", "model-versions/set-tag", body)

    def smoke_payload(self, name: str, version: str) -> bytes | None:
        """The `/invocations` body (`SMOKE_CONTENT_TYPE`) MLflow logged with the version's input
        example, or None when it was logged without one. Only that one file is read, never the
        model. Raises RegistryError when the registry or artifact store cannot answer."""
        path = "model-versions/get-download-uri"
        location = self._field(self._api("GET", path, {"name": name, "version": version}), path)
        return self._read_artifact(str(location), SERVING_INPUT_FILE)

    # -- registry lookups ----------------------------------------------------------------------

    def _lookup(self, ref: ModelRef) -> dict[str, Any] | None:
        if ref.version is not None:
            return self._model_version("model-versions/get", name=ref.name, version=ref.version)
        if ref.alias is not None:
            return self._model_version("registered-models/alias", name=ref.name, alias=ref.alias)
        stage = ref.stage or ""
        # `latest` is MLflow's name for the newest version in any stage (models:/NAME/latest).
        body: dict[str, Any] = {"name": ref.name}
        if stage.lower() != "latest":
            body["stages"] = [stage]
        versions = self._api("POST", "registered-models/get-latest-versions", body)
        candidates = versions.get("model_versions", [])
        return max(candidates, key=lambda mv: int(mv["version"])) if candidates else None

    def _model_version(self, path: str, **params: str) -> dict[str, Any]:
        found = self._field(self._api("GET", path, params), path)
        if not isinstance(found, dict) or "version" not in found:
            raise self._unexpected(path)
        return found

    def _explain_missing(self, ref: ModelRef, lookup: ResolveFailed) -> ResolveFailed:
        """MLflow's answers to a failed lookup are ambiguous: a missing model and a missing
        version both read "Model Version (name=X, version=9) not found", and a missing alias is
        a 400 INVALID_PARAMETER_VALUE. Asking for the registered model says which part is
        missing."""
        try:
            self._api("GET", "registered-models/get", {"name": ref.name})
        except RegistryError as exc:
            if exc.failure.reason == reasons.MODEL_NOT_FOUND:
                return ResolveFailed(
                    reasons.MODEL_NOT_FOUND, f"registered model {ref.name!r} not found"
                )
            return exc.failure
        if ref.alias is not None:
            return ResolveFailed(
                reasons.MODEL_NOT_FOUND,
                f"registered model {ref.name!r} has no alias {ref.alias!r}",
            )
        if ref.version is not None:
            return ResolveFailed(
                reasons.MODEL_NOT_FOUND,
                f"registered model {ref.name!r} has no version {ref.version}",
            )
        return lookup  # a stage name the registry rejects; its message lists the valid ones

    # -- HTTP ----------------------------------------------------------------------------------

    def _api(self, method: str, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Call `/api/2.0/mlflow/<path>` and return its JSON object, or raise RegistryError."""
        payload = {"params": body} if method == "GET" else {"json": body}
        response = self._send(self.tracking_uri, f"{API}/{path}", method, **payload)
        answer = _json_object(response)
        if response.status_code != 200:
            raise RegistryError(_answer_failure(self._where, response, answer))
        if answer is None:
            raise self._unexpected(path)
        return answer

    def _field(self, answer: dict[str, Any], path: str) -> Any:
        """The one field an endpoint answers with (`model_version`, `artifact_uri`)."""
        key = _ANSWER_FIELDS[path]
        if key not in answer:
            raise self._unexpected(path)
        return answer[key]

    def _unexpected(self, path: str) -> RegistryError:
        return RegistryError(
            ResolveFailed(
                reasons.REGISTRY_UNAVAILABLE,
                f"{self._where} answered {path} with something other than MLflow's JSON; "
                "is it an MLflow tracking server?",
            )
        )

    def _send(self, base: str, endpoint: str, method: str, **kwargs: Any) -> requests.Response:
        """One request to `base + endpoint` with this registry's credentials and budget; a
        request that gets no HTTP answer raises RegistryError."""
        self._require_http()
        try:
            with session(self._retries) as http:
                return http.request(
                    method, base.rstrip("/") + endpoint, auth=auth(self._credentials),
                    timeout=self._timeout, **kwargs,
                )  # fmt: skip
        except requests.RequestException as exc:
            detail = _transport_detail(exc, self._timeout)
            raise RegistryError(failure(self._where, None, detail=detail)) from exc

    def _require_http(self) -> None:
        if urlparse(self.tracking_uri).scheme not in ("http", "https"):
            raise RegistryError(
                ResolveFailed(
                    reasons.INVALID_SPEC,
                    f"tracking URI {self.tracking_uri!r} is not the http(s) URL of an MLflow "
                    "tracking server",
                )
            )

    # -- artifacts -----------------------------------------------------------------------------

    def _read_artifact(self, location: str, path: str) -> bytes | None:
        """One file under a model's artifact location, or None when it does not exist."""
        scheme = urlparse(location).scheme
        if scheme in ("mlflow-artifacts", "http", "https"):
            return self._read_proxied(location, path)
        if scheme in ("", "file"):
            # A tracking server whose artifact root is a local directory (one machine, or a
            # volume shared with the operator).
            local = Path(unquote(urlparse(location).path) if scheme else location) / path
            return local.read_bytes() if local.is_file() else None
        if scheme == "s3":
            return self._read_s3(location, path)
        return self._read_with_mlflow(location, path)

    def _read_proxied(self, location: str, path: str) -> bytes | None:
        """Artifacts served by the tracking server (`mlflow server --serve-artifacts`, the
        default): the same credentials and budget as the registry calls."""
        base = location
        if location.startswith("mlflow-artifacts:"):
            self._require_http()
            base = artifacts_url(location, self.tracking_uri)
        response = self._send(base, "/" + path, "GET")
        if response.status_code == 200:
            return response.content
        missing = _answer_failure(self._where, response, _json_object(response))
        if missing.reason == reasons.MODEL_NOT_FOUND:  # MLflow's "No such artifact"
            return None
        raise RegistryError(missing)

    def _read_s3(self, location: str, path: str) -> bytes | None:
        """S3 and S3-compatible stores (MinIO) with the Secret's AWS_* keys and
        MLFLOW_S3_ENDPOINT_URL, passed to this one boto3 client rather than the environment.
        boto3 is imported here: only registries with S3 artifact stores need it."""
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        parsed = urlparse(location)
        key = posixpath.join(parsed.path.lstrip("/"), path)
        creds = self._credentials
        client = boto3.client(
            "s3",
            endpoint_url=creds.get("MLFLOW_S3_ENDPOINT_URL") or None,
            aws_access_key_id=creds.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=creds.get("AWS_SECRET_ACCESS_KEY") or None,
            aws_session_token=creds.get("AWS_SESSION_TOKEN") or None,
            region_name=creds.get("AWS_DEFAULT_REGION") or creds.get("AWS_REGION") or None,
            config=Config(
                connect_timeout=self._timeout,
                read_timeout=self._timeout,
                retries={"max_attempts": self._retries + 1, "mode": "standard"},
            ),
        )
        try:
            return bytes(client.get_object(Bucket=parsed.netloc, Key=key)["Body"].read())
        except ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if status == 404:
                return None
            where = f"artifact store at {location}"
            raise RegistryError(failure(where, status, detail=str(exc))) from exc
        except BotoCoreError as exc:
            where = f"artifact store at {location}"
            raise RegistryError(failure(where, None, detail=str(exc))) from exc

    def _read_with_mlflow(self, location: str, path: str) -> bytes | None:
        """Any other store (gs://, wasbs://, ...) through MLflow's artifact repository, which
        uses the operator pod's own cloud identity: per-ModelDeployment keys are not applied.
        MLflow is imported only here: the operator image needs `mlflow-skinny` and the store's
        SDK only for such stores."""
        try:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
        except ImportError as exc:
            detail = f"reading {location} needs the mlflow-skinny package in the operator image"
            raise RegistryError(
                failure(f"artifact store at {location}", None, detail=detail)
            ) from exc

        try:
            repo = get_artifact_repository(location, tracking_uri=self.tracking_uri)
            if path not in {posixpath.basename(f.path) for f in repo.list_artifacts()}:
                return None
            with tempfile.TemporaryDirectory(prefix="turnout-smoke-") as tmp:
                return Path(repo.download_artifacts(path, dst_path=tmp)).read_bytes()
        except Exception as exc:  # cloud SDKs raise their own types; all mean "cannot read"
            detail = f"{type(exc).__name__}: {exc}"
            raise RegistryError(
                failure(f"artifact store at {location}", None, detail=detail)
            ) from exc


def _answer_failure(
    where: str, response: requests.Response, answer: dict[str, Any] | None
) -> ResolveFailed:
    """Classify a non-200 answer by its status and MLflow's JSON error, when there is one."""
    answer = answer or {}
    code = answer.get("error_code")
    return failure(where, response.status_code, code, str(answer.get("message", "")))


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        answer = response.json()
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _transport_detail(exc: requests.RequestException, timeout: float) -> str:
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
