"""The MLflow adapter: resolve a model URI, fetch its artifacts once, load it.

This is the only module of the server that talks to MLflow's tracking server, registry or artifact
store. Credentials come from the standard `MLFLOW_*` / `AWS_*` environment that MLflow and boto3
read themselves (S3 stores honour `MLFLOW_S3_ENDPOINT_URL`); nothing here copies them.

Artifacts land in `cache_dir/<key>/`, where the key names an immutable model version
(`registry/NAME/VERSION`, `logged/MODEL_ID`, `runs/RUN_ID/PATH`), so a restarted server finds them
and does not download again (other artifact URIs, whose content may change, are downloaded anew
at each start). A folder is published by an atomic rename only once complete, so a crash mid
download never leaves a half model that a restart would trust.

Resolving a URI asks the registry; `resolve_within` bounds that by a total time, retrying what
may pass (no answer, a 5xx) and failing at once on what will not (no such alias or version).
The training run's metrics (`training_metrics`) are read once, with one bounded request, and
a run that cannot be read only costs a log line: they are figures to compare with, never a
reason not to serve.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from turnout_serving.domain.backoff import Backoff
from turnout_serving.domain.requirements import missing_package
from turnout_serving.domain.schema import Column, InputSchema

log = logging.getLogger("turnout_serving.model")

# Where `reference.log_reference` logs a run's drift reference, and where it is fetched from.
REFERENCE_ARTIFACT = "turnout/reference.json"


class ModelSourceError(Exception):
    """The URI cannot be resolved or loaded; the message says why and what to check."""


class ArtifactsUnavailable(ModelSourceError):
    """The artifact store did not answer (network, endpoint, credentials): worth retrying."""


class RegistryUnavailable(ModelSourceError):
    """The registry did not answer, or answered 5xx: worth retrying until the time is up."""


@dataclass(frozen=True)
class ResolvedSource:
    """What a model URI pointed at when it was resolved."""

    uri: str  # as the user gave it
    download_uri: str  # immutable: models:/NAME/VERSION, runs:/..., or a local path
    cache_key: str | None  # None for local paths: nothing to download
    name: str = ""
    version: str = ""  # registry version, or the logged model's id
    run_id: str = ""
    immutable: bool = True  # False: the URI's content may change, so the cache is not trusted


@dataclass
class LoadedModel:
    """A loaded pyfunc model and what we know about it."""

    source: ResolvedSource
    pyfunc: Any  # mlflow.pyfunc.PyFuncModel
    path: Path
    flavor: str
    input_schema: InputSchema | None
    mlflow_schema: Any  # mlflow.types.Schema | None, for MLflow's own parsing
    input_example: Any  # pandas.DataFrame | dict | None
    reference: dict[str, Any] | None
    load_seconds: float
    download_seconds: float
    predict_fn: str = "predict"
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.source.name or self.path.name

    @property
    def version(self) -> str:
        return self.source.version or self.source.run_id[:8] or "local"


def resolve_within(
    uri: str,
    seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ResolvedSource:
    """`resolve`, retrying with backoff while the registry does not answer, for `seconds` in
    all (each request bounded by the time left); what the registry refuses fails at once."""
    backoff, started = Backoff(seconds), clock()
    attempt = 0
    while True:
        try:
            return resolve(uri, backoff.remaining(clock() - started))
        except RegistryUnavailable as exc:
            delay = backoff.delay(attempt, clock() - started)
            if delay is None:
                raise RegistryUnavailable(
                    f"{exc} (gave up after {seconds:g}s: see --registry-timeout)"
                ) from exc
            log.warning("%s; retrying in %.0fs", exc, delay)
            sleep(delay)
            attempt += 1


def resolve(uri: str, request_seconds: float | None = None) -> ResolvedSource:
    """Pin a model URI to one immutable version (aliases and stages move; versions do not).
    `request_seconds` bounds each registry request (and turns off MLflow's own retries)."""
    scheme = urlparse(uri).scheme
    if scheme == "models":
        return _resolve_models_uri(uri, request_seconds)
    if scheme == "runs":
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        return ResolvedSource(uri, uri, f"runs/{run_id}/{path or 'model'}", run_id=run_id)
    local = Path(uri.removeprefix("file://"))
    if local.is_dir():
        return ResolvedSource(uri, str(local), None, name=local.name)
    if len(scheme) > 1 and scheme in _artifact_schemes():
        digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
        name = Path(urlparse(uri).path.rstrip("/")).name or "model"
        return ResolvedSource(uri, uri, f"uri/{digest}", name=name, immutable=False)
    raise ModelSourceError(
        f"Cannot serve {uri!r}: expected models:/NAME/VERSION, models:/NAME@ALIAS, "
        "models:/NAME/STAGE, models:/MODEL_ID, runs:/RUN_ID/PATH, an artifact URI "
        f"({', '.join(sorted(_artifact_schemes() - {'', 'models', 'runs'}))}) "
        "or an existing local model directory."
    )


def _artifact_schemes() -> set[str]:
    """The URI schemes MLflow can download from (its artifact-repository registry)."""
    from mlflow.store.artifact.artifact_repository_registry import (
        _artifact_repository_registry,
    )

    return set(_artifact_repository_registry._registry)


@contextlib.contextmanager
def _registry_requests(seconds: float | None) -> Iterator[None]:
    """MLflow's HTTP client, for the registry requests made here, waits at most `seconds` and
    does not retry by itself (it would, for minutes): `resolve_within` owns the retries."""
    if seconds is None:
        yield
        return
    bounded = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(seconds))),
               "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}  # fmt: skip
    saved = {key: os.environ.get(key) for key in bounded}
    os.environ.update(bounded)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _resolve_models_uri(uri: str, request_seconds: float | None) -> ResolvedSource:
    """models:/NAME/VERSION, @ALIAS, /STAGE, /latest, and MLflow 3's models:/MODEL_ID, parsed by
    MLflow's own parser."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.utils.models import _parse_model_uri
    from mlflow.tracking import MlflowClient

    try:
        parsed = _parse_model_uri(uri)
    except MlflowException as exc:
        raise ModelSourceError(f"Cannot serve {uri!r}: {exc.message}") from exc
    client, name = MlflowClient(), str(parsed.name)
    try:
        with _registry_requests(request_seconds):
            if parsed.model_id is not None:
                return _logged_model(uri, client.get_logged_model(parsed.model_id))
            if parsed.alias is not None:
                mv = client.get_model_version_by_alias(name, parsed.alias)
            elif parsed.version is not None:
                mv = client.get_model_version(name, parsed.version)
            else:
                mv = _latest_in_stage(client, name, parsed.stage or "latest")
    except MlflowException as exc:
        where = "in the MLflow registry" if parsed.model_id is None else "in MLflow"
        message = f"Cannot resolve {uri!r} {where}: {exc.message}"
        if exc.get_http_status_code() >= 500:
            raise RegistryUnavailable(message) from exc
        raise ModelSourceError(message) from exc
    version = str(mv.version)
    log.info("resolved %s to %s version %s (run %s)", uri, name, version, mv.run_id)
    return ResolvedSource(
        uri,
        f"models:/{name}/{version}",
        f"registry/{name}/{version}",
        name=name,
        version=version,
        run_id=mv.run_id or "",
    )


def _logged_model(uri: str, logged: Any) -> ResolvedSource:
    """A logged model (what `log_model(...).model_uri` names in MLflow 3): immutable once
    logged; named by its own name, versioned by its id, tied to the run that logged it."""
    log.info("resolved %s to logged model %r (run %s)", uri, logged.name, logged.source_run_id)
    return ResolvedSource(
        uri,
        f"models:/{logged.model_id}",
        f"logged/{logged.model_id}",
        name=str(logged.name or logged.model_id),
        version=str(logged.model_id),
        run_id=logged.source_run_id or "",
    )


def _latest_in_stage(client: Any, name: str, stage: str) -> Any:
    """Legacy stages (`Production`, `Staging`, ...) and `latest`: the newest matching version."""
    import warnings

    with warnings.catch_warnings():  # stages are deprecated in MLflow, still widely used
        warnings.simplefilter("ignore")
        stages = None if stage.lower() == "latest" else [stage]
        versions = client.get_latest_versions(name, stages=stages)
    if not versions:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

        raise MlflowException(
            f"Registered model {name!r} has no version in stage {stage!r}.",
            error_code=RESOURCE_DOES_NOT_EXIST,
        )
    return max(versions, key=lambda mv: int(mv.version))


def fetch(source: ResolvedSource, cache_dir: Path) -> tuple[Path, float]:
    """Return a local directory holding the model, downloading it once per version."""
    if source.cache_key is None:
        return Path(source.download_uri), 0.0
    target = cache_dir / source.cache_key
    if source.immutable and (target / "MLmodel").is_file():
        log.info("using cached artifacts for %s at %s", source.download_uri, target)
        return target, 0.0
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    started = time.perf_counter()
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source.download_uri, dst_path=str(staging)
            )
        )
        if not (local / "MLmodel").is_file():
            # MLflow "downloads" an artifact path it cannot see (a local artifact root on
            # another machine) as an empty directory, without an error
            raise ModelSourceError(
                f"No model at {source.download_uri}: its artifacts hold no MLmodel file (an "
                "artifact root that is a local path of the tracking server's machine is not "
                "readable here: serve artifacts through the server, `mlflow server "
                "--artifacts-destination`, or use a shared store such as S3)"
            )
        _fetch_reference(source, local)
        if not source.immutable or not (target / "MLmodel").is_file():
            # mutable content, or what an older process left incomplete (the container restarts
            # with its emptyDir cache kept)
            shutil.rmtree(target, ignore_errors=True)
        local.rename(target)
    except MlflowException as exc:
        raise ArtifactsUnavailable(f"Cannot download {source.download_uri}: {exc.message}") from exc
    except _store_errors() as exc:
        raise ArtifactsUnavailable(
            f"Cannot download {source.download_uri} from the artifact store: {exc}; check "
            "MLFLOW_S3_ENDPOINT_URL and the AWS_* credentials"
        ) from exc
    except OSError as exc:
        if not (target / "MLmodel").is_file():  # a concurrent process may have won the rename
            raise ModelSourceError(f"Cannot store artifacts in {target}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - started
    log.info("downloaded %s in %.2fs to %s", source.download_uri, seconds, target)
    return target, seconds


def _store_errors() -> tuple[type[Exception], ...]:
    """boto3's errors, when boto3 is installed (S3-compatible artifact stores)."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return ()
    return (BotoCoreError, ClientError)


def _fetch_reference(source: ResolvedSource, model_dir: Path) -> None:
    """Copy the run's drift reference beside the model so a restart needs no tracking server."""
    if not source.run_id:
        return
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        got = mlflow.artifacts.download_artifacts(
            run_id=source.run_id,
            artifact_path=REFERENCE_ARTIFACT,
            dst_path=str(model_dir / ".turnout"),
        )
    except (MlflowException, OSError) as exc:
        log.info("no drift reference in run %s (%s)", source.run_id, type(exc).__name__)
        return
    shutil.move(got, model_dir / "turnout-reference.json")


def load(source: ResolvedSource, cache_dir: Path) -> LoadedModel:
    """Download (once) and load the model with MLflow's pyfunc loader."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    path, download_seconds = fetch(source, cache_dir)
    started = time.perf_counter()
    try:
        model = mlflow.pyfunc.load_model(str(path))
    except (MlflowException, OSError, ImportError) as exc:
        missing = _missing_module(exc)
        if missing is not None:
            raise ModelSourceError(missing_package(missing, _requirements(path))) from exc
        raise ModelSourceError(f"Cannot load the model at {path}: {exc}") from exc
    load_seconds = time.perf_counter() - started
    meta = model.metadata
    pyfunc_conf = meta.flavors.get("python_function", {})
    flavor = next((f for f in meta.flavors if f != "python_function"), "python_function")
    if not source.run_id and meta.run_id:
        source = ResolvedSource(**{**source.__dict__, "run_id": meta.run_id})
    mlflow_schema = meta.get_input_schema()
    reference_file = path / "turnout-reference.json"
    return LoadedModel(
        source=source,
        pyfunc=model,
        path=path,
        flavor=flavor,
        input_schema=_input_schema(mlflow_schema),
        mlflow_schema=mlflow_schema,
        input_example=_input_example(meta, path),
        reference=json.loads(reference_file.read_text()) if reference_file.is_file() else None,
        load_seconds=load_seconds,
        download_seconds=download_seconds,
        predict_fn=pyfunc_conf.get("predict_fn", "predict"),
    )


def _missing_module(exc: BaseException) -> str | None:
    """The module whose absence made loading fail (MLflow may wrap the import's error)."""
    seen: BaseException | None = exc
    for _ in range(8):  # a bounded walk down the causes
        if seen is None:
            return None
        if isinstance(seen, ModuleNotFoundError) and seen.name:
            return seen.name
        seen = seen.__cause__ or seen.__context__
    return None


def _requirements(path: Path) -> str | None:
    """The pip requirements MLflow logged with the model, when it did."""
    try:
        return (path / "requirements.txt").read_text()
    except OSError:
        return None


def _input_schema(schema: Any) -> InputSchema | None:
    """Column-based signatures only; tensor signatures stay with MLflow's enforcement."""
    if schema is None or not schema.has_input_names() or schema.is_tensor_spec():
        return None
    return InputSchema(
        tuple(
            Column(
                str(spec.name),
                str(getattr(spec.type, "name", spec.type)),
                bool(getattr(spec, "required", True)),
            )
            for spec in schema.inputs
        )
    )


def _input_example(meta: Any, path: Path) -> Any:
    try:
        return meta.load_input_example(str(path))
    except Exception as exc:  # a broken example must not stop serving; warm-up is skipped
        log.warning("cannot read the logged input example: %s", exc)
        return None


MAX_TRAINING_METRICS = 64  # a run that logged more exports its first 64 by name


def training_metrics(run_id: str, seconds: float) -> dict[str, float]:
    """The latest value of each metric the run logged (MLflow's client, each request bounded by
    `seconds`, no retries), at most MAX_TRAINING_METRICS of them by name; empty, with a log line,
    when there is no run or tracking server to ask, no such run, no metric, or no answer in
    time."""
    if not run_id:
        log.info("no training run to read metrics from")
        return {}
    from mlflow.environment_variables import MLFLOW_TRACKING_URI
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if not MLFLOW_TRACKING_URI.get():  # MLflow would make a local store here, and find nothing
        log.info("no tracking server (MLFLOW_TRACKING_URI) to read run %s's metrics from", run_id)
        return {}

    try:
        with _registry_requests(seconds):
            logged = dict(MlflowClient().get_run(run_id).data.metrics)
    except (MlflowException, OSError) as exc:
        reason = exc.message if isinstance(exc, MlflowException) else str(exc)
        log.warning("cannot read the metrics of training run %s: %s", run_id, reason)
        return {}
    if not logged:
        log.info("training run %s logged no metrics", run_id)
    elif len(logged) > MAX_TRAINING_METRICS:
        log.warning("training run %s logged %d metrics; exporting the first %d by name",
                    run_id, len(logged), MAX_TRAINING_METRICS)  # fmt: skip
    return {name: float(logged[name]) for name in sorted(logged)[:MAX_TRAINING_METRICS]}


class MlflowModelProvider:
    """Resolved now (labels need the version), loaded later by the server's lifespan."""

    def __init__(
        self, source: ResolvedSource, cache_dir: Path, request_seconds: float = 60.0
    ) -> None:
        self.source = source
        self._cache_dir = cache_dir
        self._request_seconds = request_seconds

    def load(self) -> LoadedModel:
        return load(self.source, self._cache_dir)

    def training_metrics(self, run_id: str) -> dict[str, float]:
        return training_metrics(run_id, self._request_seconds)
