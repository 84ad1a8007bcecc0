"""The operator's one MLflow adapter: resolve a model reference, record rollout state on model
versions, read the input example a preview is smoke-tested with, and, for retraining with
`promote: alias`, find the version a Job registered and move the alias to it.

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

import hashlib
import json
import logging
import posixpath
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import requests

from turnout_operator.domain import reasons
from turnout_operator.domain.observed import Resolved, ResolveFailed
from turnout_operator.domain.retraining import RETRAINING_JOB_TAG, Retrained
from turnout_operator.domain.spec import ModelRef
from turnout_operator.registry_http import (
    API,
    RegistryError,
    answer_failure,
    artifacts_url,
    auth,
    failure,
    json_object,
    session,
    transport_detail,
)

log = logging.getLogger("turnout_operator.registry")

# MLflow 3 writes this next to the model when `log_model(input_example=...)` is given: the exact
# JSON body `mlflow models serve` (and turnout-serve) accept on /invocations.
SERVING_INPUT_FILE = "serving_input_example.json"
SMOKE_CONTENT_TYPE = "application/json"

_ANSWER_FIELDS = {
    "model-versions/get": "model_version",
    "registered-models/alias": "model_version",
    "model-versions/get-download-uri": "artifact_uri",
    "runs/get": "run",
}
RETRAINED_SEARCH_LIMIT = 50  # versions a Job could have registered: it registers one


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
        # Worst case for a registry that accepts connections and never answers: one
        # timeout_seconds (a request that timed out is not retried, see registry_http.session).
        self._timeout = timeout_seconds
        self._retries = max_retries

    @property
    def identity(self) -> str:
        """The tracking URI and a digest of every credential key and value: two registries
        with the same identity give the same answers (the digest keeps the secrets themselves
        out of anything that holds or logs the identity)."""
        creds = json.dumps(sorted(self._credentials.items())).encode()
        return f"{self.tracking_uri} {hashlib.sha256(creds).hexdigest()}"

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

    def tag(self, name: str, version: str, key: str, value: str) -> None:
        """Tag the model version `key=value` (idempotent); raises RegistryError. The operator
        writes these through `tags.TagWriter`, off the reconcile path, with retries."""
        body = {"name": name, "version": version, "key": key, "value": value}
        self._api("POST", "model-versions/set-tag", body)

    def smoke_payload(self, name: str, version: str) -> bytes | None:
        """The `/invocations` body (`SMOKE_CONTENT_TYPE`) MLflow logged with the version's input
        example, or None when it was logged without one. Only that one file is read, never the
        model. Raises RegistryError when the registry or artifact store cannot answer."""
        path = "model-versions/get-download-uri"
        location = self._field(self._api("GET", path, {"name": name, "version": version}), path)
        return self._read_artifact(str(location), SERVING_INPUT_FILE)

    # -- retraining with promote: alias ----------------------------------------------------------

    def retrained(self, name: str, job: str, serving: str | None) -> Retrained:
        """The newest version of `name` tagged `turnout.retraining.job=<job>` (the trainer tags
        the version it registers), with its run's metrics and those of the serving version's
        run. Raises RegistryError."""
        found = self._api("GET", "model-versions/search", {
            "filter": f"tags.`{RETRAINING_JOB_TAG}` = '{job}'",
            "max_results": str(RETRAINED_SEARCH_LIMIT),
        })  # fmt: skip
        mine = [mv for mv in found.get("model_versions", []) if mv.get("name") == name]
        if not mine:
            return Retrained(None)
        newest = max(mine, key=lambda mv: int(mv["version"]))
        serving_run = None
        if serving is not None:
            path = "model-versions/get"
            serving_run = self._model_version(path, name=name, version=serving).get("run_id")
        return Retrained(
            str(newest["version"]),
            self._run_metrics(newest.get("run_id")),
            self._run_metrics(serving_run),
        )

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` of registered model `name` at `version`; raises RegistryError."""
        body = {"name": name, "alias": alias, "version": version}
        self._api("POST", "registered-models/alias", body)

    def _run_metrics(self, run_id: str | None) -> dict[str, float]:
        if not run_id:
            return {}
        run = self._field(self._api("GET", "runs/get", {"run_id": run_id}), "runs/get")
        metrics = (run.get("data") or {}).get("metrics") or []
        return {m["key"]: float(m["value"]) for m in metrics if "key" in m and "value" in m}

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
        answer = json_object(response)
        if response.status_code != 200:
            raise RegistryError(answer_failure(self._where, response, answer))
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
            detail = transport_detail(exc, self._timeout)
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
        missing = answer_failure(self._where, response, json_object(response))
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
