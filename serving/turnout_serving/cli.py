"""`turnout-serve`: the command line, shaped like `mlflow models serve`.

`turnout-serve -m models:/NAME@ALIAS -p 8080 --host 0.0.0.0` works as the MLflow command does;
MLflow flags that make no sense for a one-model, one-process server (`--env-manager conda`, more
than one worker) are accepted with a warning so scripts keep working. Every flag can also be set
as a `TURNOUT_*` environment variable (see `settings.py`); flags win.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from turnout_serving.settings import ServingSettings

log = logging.getLogger("turnout_serving")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="turnout-serve",
        description="Serve an MLflow model with metrics, drift and feedback.",
        add_help=False,  # -h is --host, as in `mlflow models serve`
    )
    p.add_argument("--help", action="help", help="Show this message and exit.")
    p.add_argument(
        "-m",
        "--model-uri",
        dest="model_uri",
        help="models:/NAME/VERSION, "
        "models:/NAME@ALIAS, models:/NAME/STAGE, runs:/RUN_ID/PATH or a directory.",
    )
    p.add_argument("-p", "--port", type=int)
    p.add_argument("-h", "--host")
    p.add_argument(
        "-t",
        "--timeout",
        dest="request_timeout_seconds",
        type=float,
        help="Seconds a request may take before a 504.",
    )
    p.add_argument(
        "-w",
        "--workers",
        type=int,
        default=1,
        help="Accepted for MLflow compatibility; turnout runs one process (scale with replicas).",
    )
    p.add_argument(
        "--env-manager",
        default="local",
        help="Accepted for MLflow compatibility; only 'local' is meaningful.",
    )
    p.add_argument("--color", help="Blue-green color label for metrics.")
    p.add_argument("--cache-dir", dest="cache_dir")
    p.add_argument("--max-body-bytes", dest="max_body_bytes", type=int)
    p.add_argument("--auth-token-file", dest="auth_token_file")
    p.add_argument("--drift-window-rows", dest="drift_window_rows", type=int)
    p.add_argument("--no-drift", dest="drift_enabled", action="store_const", const=False)
    p.add_argument("--no-warmup", dest="warmup", action="store_const", const=False)
    p.add_argument("--log-level", dest="log_level")
    return p


def settings_from(argv: Sequence[str] | None) -> ServingSettings:
    args = parser().parse_args(argv)
    if args.workers != 1:
        log.warning("--workers %d ignored: turnout-serve runs one process; add replicas instead",
                    args.workers)  # fmt: skip
    if args.env_manager != "local":
        log.warning("--env-manager %s ignored: the model runs in this environment",
                    args.env_manager)  # fmt: skip
    overrides: dict[str, Any] = {
        k: v for k, v in vars(args).items()
        if v is not None and k not in ("workers", "env_manager")
    }  # fmt: skip
    settings = ServingSettings(**overrides)
    if not settings.model_uri:
        parser().error("a model is required: -m/--model-uri or TURNOUT_MODEL_URI")
    return settings


def resolve_with_retry(uri: str, attempts: int = 6) -> Any:
    """The registry may come up after us (one cluster, one `kubectl apply`): back off, then fail."""
    from mlflow.exceptions import MlflowException

    from turnout_serving.model_source import ModelSourceError, resolve

    for attempt in range(attempts):
        try:
            return resolve(uri)
        except ModelSourceError as exc:
            cause = exc.__cause__
            transient = isinstance(cause, MlflowException) and cause.get_http_status_code() >= 500
            if not transient or attempt == attempts - 1:
                raise
            delay = 2**attempt
            log.warning("%s; retrying in %ds", exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def main(argv: Sequence[str] | None = None) -> int:
    settings = settings_from(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import uvicorn
    from prometheus_client import CollectorRegistry

    from turnout_serving.app import create_app
    from turnout_serving.connections import server_config
    from turnout_serving.http import AuthConfigError, TokenCheck
    from turnout_serving.model_source import MlflowModelProvider, ModelSourceError

    try:
        tokens = TokenCheck.from_settings(settings)  # before anything slow: fail closed, fast
    except AuthConfigError as exc:
        log.error("%s", exc)
        return 2
    try:
        source = resolve_with_retry(settings.model_uri)
    except ModelSourceError as exc:
        log.error("%s", exc)
        return 2
    provider = MlflowModelProvider(source, settings.cache_dir)
    app = create_app(settings, provider, CollectorRegistry(), tokens)
    uvicorn.Server(server_config(app, settings)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
