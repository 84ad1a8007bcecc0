"""The MLflow adapter: resolve a model URI, fetch its artifacts once, load it.

This is the only module of the server that talks to MLflow's tracking server, registry or artifact
store. Credentials come from the standard `MLFLOW_*` / `AWS_*` environment that MLflow and boto3
read themselves (S3 stores honour `MLFLOW_S3_ENDPOINT_URL`); nothing here copies them.

Artifacts land in `cache_dir/<key>/`, where the key names an immutable model version
(`registry/NAME/VERSION`, `runs/RUN_ID/PATH`), so a restarted server finds them and does not
download again. A folder is published by an atomic rename only once complete, so a crash mid
download never leaves a half model that a restart would trust.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turnout_serving.domain.schema import Column, InputSchema

log = logging.getLogger("turnout_serving.model")

REFERENCE_ARTIFACT = "turnout/reference.json"
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<ref>[^/]+))/?$")


class ModelSourceError(Exception):
    """The URI cannot be resolved or loaded; the message says why and what to check."""


class ArtifactsUnavailable(ModelSourceError):
    """The artifact store did not answer (network, endpoint, credentials): worth retrying."""


@dataclass(frozen=True)
class ResolvedSource:
    """What a model URI pointed at when it was resolved."""

    uri: str  # as the user gave it
    download_uri: str  # immutable: models:/NAME/VERSION, runs:/..., or a local path
    cache_key: str | None  # None for local paths: nothing to download
    name: str = ""
    version: str = ""
    run_id: str = ""


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


def resolve(uri: str) -> ResolvedSource:
    """Pin a model URI to one immutable version (aliases and stages move; versions do not)."""
    match = _MODELS_URI.match(uri)
    if match:
        return _resolve_registry(uri, match["name"], match["alias"], match["ref"])
    if uri.startswith("runs:/"):
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        return ResolvedSource(uri, uri, f"runs/{run_id}/{path or 'model'}", run_id=run_id)
    local = Path(uri.removeprefix("file://"))
    if local.is_dir():
        return ResolvedSource(uri, str(local), None, name=local.name)
    raise ModelSourceError(
        f"Cannot serve {uri!r}: expected models:/NAME/VERSION, models:/NAME@ALIAS, "
        "models:/NAME/STAGE, runs:/RUN_ID/PATH or an existing local model directory."
    )


def _resolve_registry(uri: str, name: str, alias: str | None, ref: str | None) -> ResolvedSource:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        if alias is not None:
            mv = client.get_model_version_by_alias(name, alias)
        elif ref is not None and ref.isdigit():
            mv = client.get_model_version(name, ref)
        else:
            mv = _latest_in_stage(client, name, ref or "")
    except MlflowException as exc:
        raise ModelSourceError(
            f"Cannot resolve {uri!r} in the MLflow registry: {exc.message}"
        ) from exc
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


def _latest_in_stage(client: Any, name: str, stage: str) -> Any:
    """Legacy stages (`Production`, `Staging`, ...) and `latest`: the newest matching version."""
    import warnings

    with warnings.catch_warnings():  # stages are deprecated in MLflow, still widely used
        warnings.simplefilter("ignore")
        stages = None if stage.lower() == "latest" else [stage]
        versions = client.get_latest_versions(name, stages=stages)
    if not versions:
        from mlflow.exceptions import MlflowException

        raise MlflowException(f"Registered model {name!r} has no version in stage {stage!r}.")
    return max(versions, key=lambda mv: int(mv.version))


def fetch(source: ResolvedSource, cache_dir: Path) -> tuple[Path, float]:
    """Return a local directory holding the model, downloading it once per version."""
    if source.cache_key is None:
        return Path(source.download_uri), 0.0
    target = cache_dir / source.cache_key
    if (target / "MLmodel").is_file():
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
        _fetch_reference(source, local)
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


class MlflowModelProvider:
    """Resolved now (labels need the version), loaded later by the server's lifespan."""

    def __init__(self, source: ResolvedSource, cache_dir: Path) -> None:
        self.source = source
        self._cache_dir = cache_dir

    def load(self) -> LoadedModel:
        return load(self.source, self._cache_dir)
