"""The command line: every option of `mlflow models serve`, read from MLflow's own click command,
is accepted; `--help` shows each setting's environment variable and default."""

from __future__ import annotations

import click
import pytest
from mlflow.models.cli import serve as mlflow_serve

from turnout_serving.cli import parser, settings_from
from turnout_serving.settings import ServingSettings

# MLflow's options that set something turnout also has, and the setting they set
MEANINGFUL = {"model_uri": "model_uri", "port": "port", "host": "host",
              "timeout": "request_timeout_seconds"}  # fmt: skip
OPTIONS = [param for param in mlflow_serve.params if isinstance(param, click.Option)]


def test_mlflow_serve_has_the_options_we_know_of() -> None:
    # a new MLflow option must be looked at: this names them all
    assert {p.name for p in OPTIONS} == {"model_uri", "port", "host", "timeout", "workers",
                                         "env_manager", "no_conda", "install_mlflow"}  # fmt: skip


@pytest.mark.parametrize(
    ("option", "spelling"),
    [(p, s) for p in OPTIONS for s in (*p.opts, *p.secondary_opts)],
    ids=lambda x: x if isinstance(x, str) else x.name,
)
def test_every_mlflow_serve_option_is_accepted(option: click.Option, spelling: str) -> None:
    given = [spelling] if option.is_flag else [spelling, "7"]
    required = [] if option.name == "model_uri" else ["-m", "models:/M/1"]
    settings, notes = settings_from([*required, *given])
    if option.name in MEANINGFUL:
        assert str(getattr(settings, MEANINGFUL[option.name])) in ("7", "7.0")
        assert notes == []
    else:  # accepted, and said once that it changes nothing here
        flag = "--" + str(option.name).replace("_", "-")
        assert [n.split(" ignored: ")[0] for n in notes] == [
            flag if option.is_flag else f"{flag} 7"
        ]


@pytest.mark.parametrize(("given", "notes"), [(["-w", "1"], []), (["--env-manager", "local"], [])])
def test_what_turnout_does_anyway_is_not_reported(given: list[str], notes: list[str]) -> None:
    assert settings_from(["-m", "x", *given])[1] == notes


def test_long_options_take_their_value_after_an_equals_sign() -> None:
    settings, _ = settings_from(["--model-uri=models:/M@a", "--port=5001", "--timeout=3"])
    assert (settings.model_uri, settings.port, settings.request_timeout_seconds) == (
        "models:/M@a", 5001, 3.0)  # fmt: skip


def test_defaults_are_mlflow_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TURNOUT_PORT", "TURNOUT_HOST", "MLFLOW_PORT", "MLFLOW_HOST"):
        monkeypatch.delenv(name, raising=False)
    settings, _ = settings_from(["-m", "x"])
    defaults = {p.name: p.default for p in OPTIONS}
    assert (settings.port, settings.host, settings.request_timeout_seconds) == (
        defaults["port"], defaults["host"], defaults["timeout"])  # fmt: skip


def test_mlflow_environment_variables_count_after_turnouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_PORT", "6001")
    monkeypatch.setenv("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "9")
    assert settings_from(["-m", "x"])[0].port == 6001
    assert settings_from(["-m", "x"])[0].request_timeout_seconds == 9
    monkeypatch.setenv("TURNOUT_PORT", "6002")
    assert settings_from(["-m", "x"])[0].port == 6002
    assert settings_from(["-m", "x", "-p", "6003"])[0].port == 6003


def test_help_shows_every_setting_with_its_variable_and_default() -> None:
    text = " ".join(parser().format_help().split())
    for name, field in ServingSettings.model_fields.items():
        variable = f"TURNOUT_{name.upper()}"
        assert variable in text, name
        assert " ".join(str(field.description).split()) in text, name
    assert "[env: TURNOUT_PORT, MLFLOW_PORT; default: 5000]" in text
    assert "[env: TURNOUT_REGISTRY_TIMEOUT_SECONDS; default: 60.0]" in text
    assert "[env: TURNOUT_DRIFT_ENABLED=false; default: on]" in text
    assert "TURNOUT_FEEDBACK_WINDOW Labelled predictions in the live MAE/RMSE/accuracy window. " \
        "[default: 1000]" in text  # fmt: skip
