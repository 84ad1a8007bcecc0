"""examples/retraining/train.py as the retraining Job runs it (this interpreter, the operator's
environment, a CSV of new data) against a real MLflow tracking server: what it registers, logs
and tags, when it moves the alias and when it must not, what it refuses, and that the version it
registers is served by turnout-serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, Process, Registry, load_script
from tests.integration.test_server import split as dataframe_split
from turnout_serving.domain.drift_profile import ReferenceProfile, build_profile
from turnout_serving.model_source import REFERENCE_ARTIFACT
from turnout_serving.reference import DIGEST_TAG

pytestmark = pytest.mark.slow
TRAIN = ROOT / "examples" / "retraining" / "train.py"
train: ModuleType = load_script("train", "examples/retraining")
TAGS = ("job", "reason", "champion_version", "comparison")


@dataclass
class Outcome:
    returncode: int
    stderr: str
    result: dict[str, Any]


Trainer = Callable[..., Outcome]


def regression_csv(path: Path, rows: int, seed: int, weights: tuple[float, float, float]) -> str:
    """y = weights . (a, b, c) + noise(0.3): another `weights` is another concept to learn."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3))
    y = X @ np.array(weights) + rng.normal(scale=0.3, size=rows)
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y}).to_csv(path, index=False)
    return str(path)


def operator_env(registry: Registry, model: str, **changes: str) -> dict[str, str]:
    """What the operator's retraining Job (turnout_operator.domain.retraining_job) sets."""
    return {
        "MLFLOW_TRACKING_URI": registry.uri,
        "TURNOUT_MODEL_NAME": model,
        "TURNOUT_MODEL_VERSION": "",
        "TURNOUT_MODEL_ALIAS": "champion",
        "TURNOUT_MODEL_DEPLOYMENT": f"default/{model.lower()}",
        "TURNOUT_RETRAIN_REASON": "Drift",
        "TURNOUT_RETRAIN_FIGURES": '{"psi": 0.42}',
        "TURNOUT_RETRAINING_JOB": f"{model.lower()}-retrain-1",
        "TURNOUT_OPERATOR_PROMOTES": "false",
        **changes,
    }


@pytest.fixture(scope="module")
def trainer(mlflow_registry: Registry) -> Trainer:
    def run(model: str, *flags: str, **env: str) -> Outcome:
        done = subprocess.run(
            [sys.executable, str(TRAIN), *flags], capture_output=True, text=True, timeout=300,
            env={**os.environ, **operator_env(mlflow_registry, model, **env)}, check=False,
        )  # fmt: skip
        lines = done.stdout.splitlines()
        result = json.loads(lines[0]) if done.returncode == 0 else {}
        assert len(lines) == (1 if done.returncode == 0 else 0), done.stdout  # stdout: the outcome
        return Outcome(done.returncode, done.stderr, result)

    return run


@pytest.fixture
def client(mlflow_registry: Registry) -> Iterator[MlflowClient]:
    with tracking(mlflow_registry.uri):
        yield MlflowClient()


@contextmanager
def tracking(uri: str) -> Iterator[None]:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def holdout(csv: str, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """The rows a run held out, chosen as the trainer chooses them (its split is unit-tested)."""
    X, y, _ = train.prepare(pd.read_csv(csv), "y")
    _, X_test, _, y_test = train.split(X, y, train.task_of(y), 0.25, seed)
    return X_test, y_test


def measured(model: str, version: str, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """MAE, RMSE and R² of the registered version on (X, y), computed here from its predictions."""
    predicted = mlflow.pyfunc.load_model(f"models:/{model}/{version}").predict(X)
    error = np.asarray(y) - np.asarray(predicted)
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": float(1 - np.sum(error**2) / np.sum((y - y.mean()) ** 2)),
    }


def version_tags(client: MlflowClient, model: str, version: str) -> dict[str, Any]:
    tags = client.get_model_version(model, version).tags
    found = {key: tags[f"turnout.retraining.{key}"] for key in TAGS}
    return {**found, "comparison": json.loads(found["comparison"])}


def alias(client: MlflowClient, model: str) -> str:
    return str(client.get_model_version_by_alias(model, "champion").version)


# --- a first run, then one on data whose concept moved -------------------------------------------


@dataclass
class History:
    first: Outcome
    shifted: Outcome
    first_csv: str
    shifted_csv: str
    alias_after_first: str


@pytest.fixture(scope="module")
def history(
    trainer: Trainer, mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> History:
    home = tmp_path_factory.mktemp("retrain")
    first_csv = regression_csv(home / "first.csv", 400, seed=0, weights=(3.0, -2.0, 0.0))
    shifted_csv = regression_csv(home / "shifted.csv", 400, seed=1, weights=(-3.0, 0.0, 2.0))
    first = trainer("RetrainShift", "--data", first_csv, TARGET_COLUMN="y")
    with tracking(mlflow_registry.uri):
        after_first = alias(MlflowClient(), "RetrainShift")
    shifted = trainer("RetrainShift", "--data", shifted_csv, TARGET_COLUMN="y")
    return History(first, shifted, first_csv, shifted_csv, after_first)


def test_the_first_run_registers_version_1_and_points_the_alias_at_it(
    history: History, client: MlflowClient
) -> None:
    first = history.first
    assert first.returncode == 0, first.stderr
    expected = measured("RetrainShift", "1", *holdout(history.first_csv))
    assert first.result == {
        "model": "RetrainShift", "version": "1", "task": "regression",
        "metrics": pytest.approx(expected, rel=1e-9), "champion_version": None,
        "champion_metrics": {}, "promoted": True, "why": "no version at alias 'champion' yet",
    }  # fmt: skip
    assert expected["r2"] > 0.95  # the linear model learned the concept
    assert history.alias_after_first == "1"
    assert version_tags(client, "RetrainShift", "1") == {
        "job": "retrainshift-retrain-1", "reason": "Drift", "champion_version": "",
        "comparison": {"metric": "mae", "improvement": None, "promoted": True,
                       "why": "no version at alias 'champion' yet"},
    }  # fmt: skip
    run = client.get_run(client.get_model_version("RetrainShift", "1").run_id)
    assert run.data.metrics == pytest.approx(expected, rel=1e-9)
    assert run.data.params["rows_train"] == "300"
    assert run.data.params["rows_holdout"] == "100"
    assert run.data.params["retrain_figures"] == '{"psi": 0.42}'
    assert run.data.tags["turnout.retraining.job"] == "retrainshift-retrain-1"
    reference = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{REFERENCE_ARTIFACT}")
    X, y, _ = train.prepare(pd.read_csv(history.first_csv), "y")
    X_train = train.split(X, y, "regression", 0.25, 0)[0]
    trained = mlflow.pyfunc.load_model("models:/RetrainShift/1").predict(X_train)
    assert reference == build_profile(X_train, trained).to_dict()  # the training rows' profile
    assert run.data.tags[DIGEST_TAG] == ReferenceProfile.from_dict(reference).digest


def test_a_run_on_shifted_data_registers_version_2_and_moves_the_alias(
    history: History, client: MlflowClient
) -> None:
    shifted = history.shifted
    assert shifted.returncode == 0, shifted.stderr
    X, y = holdout(history.shifted_csv)
    new, champion = measured("RetrainShift", "2", X, y), measured("RetrainShift", "1", X, y)
    gain = (champion["mae"] - new["mae"]) / champion["mae"]
    assert gain > 0.9  # version 1 learned the old concept: far worse on the new one
    assert shifted.result == {
        "model": "RetrainShift", "version": "2", "task": "regression",
        "metrics": pytest.approx(new, rel=1e-9), "champion_version": "1",
        "champion_metrics": pytest.approx(champion, rel=1e-9), "promoted": True,
        "why": f"{gain:.1%} lower error than version 1",
    }  # fmt: skip
    assert alias(client, "RetrainShift") == "2"
    tags = version_tags(client, "RetrainShift", "2")
    assert tags["champion_version"] == "1"
    assert tags["comparison"] == {"metric": "mae", "improvement": pytest.approx(gain, rel=1e-9),
                                  "promoted": True, "why": shifted.result["why"]}  # fmt: skip
    run = client.get_run(client.get_model_version("RetrainShift", "2").run_id)
    logged = {**new, **{f"champion_{key}": value for key, value in champion.items()}}
    assert run.data.metrics == pytest.approx(logged, rel=1e-9)
    assert run.data.params["champion_version"] == "1"


# --- versions registered without moving the alias -------------------------------------------------


def test_a_version_that_does_not_beat_the_champion_enough_is_registered_not_promoted(
    trainer: Trainer, client: MlflowClient, tmp_path: Path
) -> None:
    assert trainer("RetrainSame", "--data", regression_csv(tmp_path / "1.csv", 400, 0, (3.0, -2.0, 0.0)),
                   TARGET_COLUMN="y").returncode == 0  # fmt: skip
    same = regression_csv(tmp_path / "2.csv", 400, 2, (3.0, -2.0, 0.0))  # the same concept
    second = trainer("RetrainSame", "--data", same, "--min-improvement", "0.5", TARGET_COLUMN="y")
    assert second.returncode == 0, second.stderr
    X, y = holdout(same)
    new, champion = measured("RetrainSame", "2", X, y), measured("RetrainSame", "1", X, y)
    gain = (champion["mae"] - new["mae"]) / champion["mae"]
    assert abs(gain) < 0.1  # two fits of one concept: neither is much better
    assert second.result["version"] == "2"
    assert second.result["champion_metrics"] == pytest.approx(champion, rel=1e-9)
    assert second.result["promoted"] is False
    assert second.result["why"] == f"{gain:.1%} lower error than version 1, needs more than 50.0%"
    assert alias(client, "RetrainSame") == "1"
    assert version_tags(client, "RetrainSame", "2")["comparison"]["promoted"] is False


def test_when_the_operator_promotes_the_trainer_never_moves_the_alias(
    trainer: Trainer, client: MlflowClient, tmp_path: Path
) -> None:
    old = regression_csv(tmp_path / "old.csv", 400, 0, (3.0, -2.0, 0.0))
    new = regression_csv(tmp_path / "new.csv", 400, 1, (-3.0, 0.0, 2.0))
    first = trainer("RetrainByOperator", "--data", old, TARGET_COLUMN="y",
                    TURNOUT_OPERATOR_PROMOTES="true")  # fmt: skip
    assert (first.returncode, first.result["version"], first.result["promoted"]) == (0, "1", False)
    assert client.get_registered_model("RetrainByOperator").aliases == {}  # not even the first
    client.set_registered_model_alias("RetrainByOperator", "champion", "1")  # as the operator would
    second = trainer("RetrainByOperator", "--data", new, TARGET_COLUMN="y",
                     TURNOUT_OPERATOR_PROMOTES="true")  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert second.result["version"] == "2"
    assert second.result["champion_version"] == "1"
    assert second.result["metrics"]["mae"] < second.result["champion_metrics"]["mae"] / 10
    assert (second.result["promoted"], second.result["why"]) == (
        False, "the operator moves the alias (promote: alias)")  # fmt: skip
    assert alias(client, "RetrainByOperator") == "1"
    run = client.get_run(client.get_model_version("RetrainByOperator", "2").run_id)
    assert run.data.metrics["champion_mae"] == second.result["champion_metrics"]["mae"]


def test_without_an_alias_the_serving_version_is_the_champion_and_no_alias_is_set(
    trainer: Trainer, client: MlflowClient, tmp_path: Path
) -> None:
    old = regression_csv(tmp_path / "old.csv", 400, 0, (3.0, -2.0, 0.0))
    new = regression_csv(tmp_path / "new.csv", 400, 1, (-3.0, 0.0, 2.0))
    first = trainer("RetrainPinned", "--data", old, TARGET_COLUMN="y", TURNOUT_MODEL_ALIAS="")
    assert (first.returncode, first.result["version"], first.result["promoted"]) == (0, "1", False)
    second = trainer("RetrainPinned", "--data", new, TARGET_COLUMN="y", TURNOUT_MODEL_ALIAS="",
                     TURNOUT_MODEL_VERSION="1")  # fmt: skip
    assert second.returncode == 0, second.stderr
    X, y = holdout(new)
    assert second.result["champion_version"] == "1"
    assert second.result["champion_metrics"] == pytest.approx(
        measured("RetrainPinned", "1", X, y), rel=1e-9
    )
    assert (second.result["promoted"], second.result["why"]) == (
        False, "no alias to move (TURNOUT_MODEL_ALIAS is empty)")  # fmt: skip
    assert client.get_registered_model("RetrainPinned").aliases == {}


def test_a_champion_that_cannot_score_the_new_columns_keeps_the_alias(
    trainer: Trainer, client: MlflowClient, tmp_path: Path
) -> None:
    old = regression_csv(tmp_path / "old.csv", 400, 0, (3.0, -2.0, 0.0))
    trainer("RetrainColumns", "--data", old, TARGET_COLUMN="y")
    new = tmp_path / "new.csv"
    pd.read_csv(old).drop(columns="c").to_csv(new, index=False)  # version 1 needs c
    second = trainer("RetrainColumns", "--data", str(new), TARGET_COLUMN="y")
    assert second.returncode == 0, second.stderr
    assert (second.result["version"], second.result["champion_metrics"]) == ("2", {})
    assert (second.result["promoted"], second.result["why"]) == (
        False, "version 1 cannot score the new data")  # fmt: skip
    assert "version 1 cannot score the new data: " in second.stderr
    assert alias(client, "RetrainColumns") == "1"


# --- bad input ------------------------------------------------------------------------------------


def test_a_missing_target_column_fails_and_registers_nothing(
    trainer: Trainer, client: MlflowClient, tmp_path: Path
) -> None:
    data = regression_csv(tmp_path / "new.csv", 400, 0, (3.0, -2.0, 0.0))
    failed = trainer("RetrainNoTarget", "--data", data, TARGET_COLUMN="label")
    assert failed.returncode == 2
    assert failed.stderr.splitlines()[-1] == (
        "train.py: error: the data has no target column 'label' (columns: a, b, c, y)")  # fmt: skip
    assert client.search_model_versions("name = 'RetrainNoTarget'") == []
    assert client.get_experiment_by_name("RetrainNoTarget") is None  # no run either


def test_missing_data_fails_naming_the_file(trainer: Trainer, tmp_path: Path) -> None:
    failed = trainer("RetrainNoData", "--data", str(tmp_path / "absent.csv"), TARGET_COLUMN="y")
    assert failed.returncode == 2
    last = failed.stderr.splitlines()[-1]
    assert last.startswith(
        f"train.py: error: cannot read the training data '{tmp_path / 'absent.csv'}': "
    )


# --- a classifier, served ------------------------------------------------------------------------


def test_a_forest_classifier_is_registered_and_served_by_turnout_serve(
    trainer: Trainer, serve_factory: Callable[..., Process], mlflow_registry: Registry,
    tmp_path: Path,
) -> None:  # fmt: skip
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 2))
    label = np.where(X[:, 0] > 0.5, "high", np.where(X[:, 0] < -0.5, "low", "mid"))
    data = tmp_path / "species.csv"
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "y": label}).to_csv(data, index=False)
    first = trainer(
        "RetrainForest", "--data", str(data), "--estimator", "forest", TARGET_COLUMN="y"
    )
    assert first.returncode == 0, first.stderr
    X_test, y_test = holdout(str(data))
    with tracking(mlflow_registry.uri):
        predicted = mlflow.pyfunc.load_model("models:/RetrainForest/1").predict(X_test)
    accuracy = float(np.mean(np.asarray(predicted) == y_test.to_numpy()))
    assert accuracy > 0.9
    assert first.result["task"] == "classification"
    assert first.result["metrics"]["accuracy"] == pytest.approx(accuracy, rel=1e-9)
    assert sorted(first.result["metrics"]) == ["accuracy", "f1_macro"]
    server = serve_factory("models:/RetrainForest@champion")
    rows = X_test.to_dict(orient="records")
    answer = httpx.post(f"{server.url}/invocations", json=dataframe_split(*rows), timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": list(predicted)}
