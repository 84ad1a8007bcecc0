"""`turnout-serve`: the command line of `mlflow models serve`, and turnout's own flags.

Every option `mlflow models serve` takes is accepted (`-m/--model-uri`, `-p/--port`, `-h/--host`,
`-t/--timeout`, `-w/--workers`, `--env-manager`, `--no-conda`, `--install-mlflow`), so scripts
written for MLflow run unchanged; those that mean nothing for a one-process server that runs the
model in its own environment are logged once and ignored. Every other flag is a field of
`ServingSettings` (also a `TURNOUT_*` environment variable; flags win), and `--help` shows each
one's variable and default from the settings themselves.

Exit status: 2 when the model URI cannot be resolved (no such model, alias or stage, or a registry
that does not answer within `--registry-timeout`), 3 when the model cannot be loaded or warmed up
(including an artifact store that does not answer within `--artifact-timeout`, and a model whose
package this environment lacks: the reason names it). The reason is also written to the
termination message file when it exists (`/dev/termination-log` in a pod).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import AliasChoices

from turnout_serving.settings import ServingSettings

log = logging.getLogger("turnout_serving")

EXIT_MISCONFIGURED = 2  # as argparse exits on a bad command line
EXIT_UNRESOLVED = 2
EXIT_UNLOADABLE = 3

# MLflow's flags that choose how MLflow builds the model's environment or forks workers: turnout
# runs the model in its own environment, in one process (scale with replicas).
_IGNORED = {
    "workers": "turnout-serve runs one process; add replicas instead",
    "env_manager": "the model runs in turnout-serve's own environment (MLflow's 'local')",
    "no_conda": "the model runs in turnout-serve's own environment",
    "install_mlflow": "turnout-serve runs with its own MLflow",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="turnout-serve",
        description="Serve an MLflow model with metrics, drift and feedback; a drop-in for "
        "`mlflow models serve`.",
        add_help=False,  # -h is --host, as in `mlflow models serve`
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--help", action="help", help="Show this message and exit.")
    setting(p, "-m", "--model-uri", field="model_uri")
    setting(p, "-p", "--port", field="port", type=int)
    setting(p, "-h", "--host", field="host")
    setting(p, "-t", "--timeout", field="request_timeout_seconds", type=float)
    p.add_argument("-w", "--workers", metavar="N",
                   help="Accepted for MLflow compatibility and ignored: one process per server "
                   "(scale with replicas).")  # fmt: skip
    p.add_argument("--env-manager", metavar="NAME",
                   help="Accepted for MLflow compatibility and ignored: the model runs in this "
                   "environment, as with MLflow's 'local'.")  # fmt: skip
    p.add_argument("--no-conda", action="store_true",
                   help="Accepted for MLflow compatibility and ignored.")  # fmt: skip
    p.add_argument("--install-mlflow", action="store_true",
                   help="Accepted for MLflow compatibility and ignored.")  # fmt: skip
    setting(p, "--color", field="color")
    setting(p, "--cache-dir", field="cache_dir")
    setting(p, "--registry-timeout", field="registry_timeout_seconds", type=float)
    setting(p, "--artifact-timeout", field="artifact_timeout_seconds", type=float)
    setting(p, "--max-body-bytes", field="max_body_bytes", type=int)
    setting(p, "--auth-token-file", field="auth_token_file")
    setting(p, "--drift-window-rows", field="drift_window_rows", type=int)
    setting(p, "--no-drift", field="drift_enabled", action="store_const", const=False)
    setting(p, "--no-warmup", field="warmup", action="store_const", const=False)
    setting(p, "--log-level", field="log_level")
    p.epilog = _environment_only(p)
    return p


def setting(p: argparse.ArgumentParser, *flags: str, field: str, **kwargs: Any) -> None:
    """A flag for one `ServingSettings` field, its help taken from the field: description,
    environment variable(s) and default."""
    info = ServingSettings.model_fields[field]
    envs, description = _env_names(field), str(info.description)
    if kwargs.get("action") == "store_const":  # --no-X: sets a boolean setting off
        envs = [f"{envs[0]}={str(kwargs['const']).lower()}"]
        description = f"Switch off what is on by default: {description}"
    else:
        kwargs.setdefault("metavar", flags[-1].lstrip("-").upper().replace("-", "_"))
    text = f"{description} [env: {', '.join(envs)}; default: {_shown(info.default)}]"
    p.add_argument(*flags, dest=field, help=text.replace("%", "%%"), **kwargs)


def _shown(default: Any) -> str:
    if isinstance(default, bool):
        return "on" if default else "off"
    return "none" if default in ("", None) else str(default)


def _env_names(field: str) -> list[str]:
    alias = ServingSettings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"TURNOUT_{field.upper()}"]


def _environment_only(p: argparse.ArgumentParser) -> str:
    flagged = {action.dest for action in p._actions}
    lines = ["settings without a flag (environment only):"]
    for name, info in ServingSettings.model_fields.items():
        if name not in flagged:
            lines.append(f"  {_env_names(name)[0]}  {info.description} "
                         f"[default: {_shown(info.default)}]")  # fmt: skip
    return "\n".join(lines)


def settings_from(argv: Sequence[str] | None) -> tuple[ServingSettings, list[str]]:
    """The settings, and a note for each MLflow option given that turnout ignores."""
    args = parser().parse_args(argv)
    given = vars(args)
    notes = [
        f"{_flag_name(name)} {'' if given[name] is True else given[name] + ' '}ignored: {why}"
        for name, why in _IGNORED.items()
        if given[name] not in (None, False) and not _harmless(name, given[name])
    ]
    overrides = {k: v for k, v in given.items() if v is not None and k not in _IGNORED}
    settings = ServingSettings(**overrides)
    if not settings.model_uri:
        parser().error("a model is required: -m/--model-uri or TURNOUT_MODEL_URI")
    return settings, notes


def _flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _harmless(name: str, value: Any) -> bool:
    """What turnout does anyway: one worker, the local environment."""
    return (name, str(value)) in {("workers", "1"), ("env_manager", "local")}


def main(argv: Sequence[str] | None = None) -> int:
    settings, notes = settings_from(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for note in notes:
        log.warning("%s", note)
    # As with `mlflow models serve` (uvicorn puts it there): a custom model whose code lives in
    # a module of the working directory loads.
    sys.path.insert(0, os.getcwd())
    import uvicorn
    from prometheus_client import CollectorRegistry

    from turnout_serving.app import create_app
    from turnout_serving.connections import server_config
    from turnout_serving.http import AuthConfigError, TokenCheck
    from turnout_serving.model_source import MlflowModelProvider, ModelSourceError, resolve_within
    from turnout_serving.payload_log import PayloadLogConfigError

    try:
        tokens = TokenCheck.from_settings(settings)  # before anything slow: fail closed, fast
        admin = TokenCheck.admin_from_settings(settings)
    except AuthConfigError as exc:
        log.error("%s", exc)
        return EXIT_MISCONFIGURED
    try:
        source = resolve_within(settings.model_uri, settings.registry_timeout_seconds)
    except ModelSourceError as exc:
        log.error("%s", exc)
        termination_message(settings.termination_message_path, str(exc))
        return EXIT_UNRESOLVED
    provider = MlflowModelProvider(source, settings.cache_dir, settings.registry_timeout_seconds)
    try:
        app = create_app(settings, provider, CollectorRegistry(), tokens, admin)
    except PayloadLogConfigError as exc:
        log.error("%s", exc)
        return EXIT_MISCONFIGURED
    server = uvicorn.Server(server_config(app, settings))
    runtime = app.state.runtime
    runtime.on_failure = lambda reason: setattr(server, "should_exit", True)
    server.run()
    if runtime.state.error is not None and not runtime.state.loading:
        log.error("exiting: the model cannot be served: %s", runtime.state.error)
        termination_message(settings.termination_message_path, runtime.state.error)
        return EXIT_UNLOADABLE
    return 0


TERMINATION_MESSAGE_BYTES = 4096  # what the kubelet reads of the file


def termination_message(path: Path, reason: str) -> None:
    """Leave why the server exits where Kubernetes reads it (`terminationMessagePath`), so the
    pod's status says it (and the operator, which reads it there, in the ModelDeployment's). Only
    into a file that exists: the kubelet makes it; outside a pod there is none, and nothing is
    written."""
    if not path.is_file():
        return
    try:
        path.write_bytes(reason.encode()[:TERMINATION_MESSAGE_BYTES])
    except OSError as exc:
        log.warning("cannot write the termination message to %s: %s", path, exc)


if __name__ == "__main__":
    sys.exit(main())
