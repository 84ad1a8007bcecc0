"""examples/retraining/train.py, its pure part: what it reads from the operator's environment and
its flags, how it checks the data, tells regression from classification, holds rows out,
measures, and decides whether to move the alias. Its MLflow side runs in
tests/integration/test_retraining_example.py."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import load_script

train: ModuleType = load_script("train", "examples/retraining")
OPERATOR_ENV = {
    "TURNOUT_MODEL_NAME": "Diabetes",
    "TURNOUT_MODEL_VERSION": "3",
    "TURNOUT_MODEL_ALIAS": "champion",
    "TURNOUT_MODEL_DEPLOYMENT": "default/diabetes",
    "TURNOUT_RETRAIN_REASON": "Drift",
    "TURNOUT_RETRAIN_FIGURES": '{"psi": 0.42}',
    "TURNOUT_RETRAINING_JOB": "diabetes-retrain-1",
    "TURNOUT_OPERATOR_PROMOTES": "false",
}


def retraining(**changes: Any) -> Any:
    return train.Retraining(**{**vars(train.Retraining.from_env(OPERATOR_ENV)), **changes})


def frame(rows: int, **columns: Any) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    data = {"a": rng.normal(size=rows), "b": rng.normal(size=rows)}
    return pd.DataFrame({**data, **columns})


# --- the environment and the flags ----------------------------------------------------------------


def test_the_operators_environment_is_read_as_the_job_gives_it() -> None:
    assert train.Retraining.from_env(OPERATOR_ENV) == train.Retraining(
        model_name="Diabetes", model_version="3", model_alias="champion", reason="Drift",
        figures={"psi": 0.42}, job="diabetes-retrain-1", operator_promotes=False,
    )  # fmt: skip
    promoting = train.Retraining.from_env({**OPERATOR_ENV, "TURNOUT_OPERATOR_PROMOTES": "true"})
    assert promoting.operator_promotes is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TURNOUT_MODEL_NAME": ""},
            "TURNOUT_MODEL_NAME is not set: which registered model to train",
        ),
        (
            {"TURNOUT_RETRAIN_FIGURES": "{psi"},
            "TURNOUT_RETRAIN_FIGURES is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
    ],
)
def test_a_broken_environment_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(train.TrainingError) as raised:
        train.Retraining.from_env({**OPERATOR_ENV, **env})
    assert str(raised.value) == message


def test_flags_default_to_the_environment_and_override_it() -> None:
    env = {"TRAINING_DATA": "s3://bucket/new.csv", "TARGET_COLUMN": "y", "TRAINING_HOLDOUT": "0.3",
           "TRAINING_SEED": "7", "TRAINING_MIN_IMPROVEMENT": "0.05", "TRAINING_ESTIMATOR": "forest",
           "TRAINING_EXPERIMENT": "nightly"}  # fmt: skip
    from_env = vars(train.parse_args([], env))
    assert from_env == {"data": "s3://bucket/new.csv", "target": "y", "holdout": 0.3, "seed": 7,
                        "min_improvement": 0.05, "estimator": "forest", "experiment": "nightly"}  # fmt: skip
    flags = ["--data", "d.csv", "--target", "label", "--holdout", "0.5", "--seed", "1",
             "--min-improvement", "0", "--estimator", "linear", "--experiment", "x"]  # fmt: skip
    assert vars(train.parse_args(flags, env)) == {
        "data": "d.csv", "target": "label", "holdout": 0.5, "seed": 1, "min_improvement": 0.0,
        "estimator": "linear", "experiment": "x",
    }  # fmt: skip
    defaults = vars(train.parse_args(["--data", "d.csv", "--target", "y"], {}))
    assert defaults == {"data": "d.csv", "target": "y", "holdout": 0.25, "seed": 0,
                        "min_improvement": 0.0, "estimator": "linear", "experiment": None}  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "y"], "no training data: pass --data or set TRAINING_DATA"),
        (["--data", "d.csv"], "no target column: pass --target or set TARGET_COLUMN"),
        (
            ["--data", "d.csv", "--target", "y", "--holdout", "1"],
            "argument --holdout: 1 is not a fraction between 0 and 1",
        ),
        (
            ["--data", "d.csv", "--target", "y", "--estimator", "svm"],
            "argument --estimator: invalid choice: 'svm' (choose from ",
        ),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        train.parse_args(argv, {})
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"train.py: error: {message}")


# --- the data -------------------------------------------------------------------------------------


def test_prepare_keeps_complete_rows_and_counts_the_others() -> None:
    data = frame(30, y=np.arange(30.0))
    data.loc[[3, 7], "a"] = np.nan
    data.loc[11, "y"] = np.nan
    X, y, dropped = train.prepare(data, "y")
    assert dropped == 3
    assert list(X.columns) == ["a", "b"]
    assert list(X.index) == list(y.index) == [i for i in range(30) if i not in (3, 7, 11)]
    assert y.name == "y"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (frame(30, y=0.0), "the data has no target column 'label' (columns: a, b, y)"),
        (pd.DataFrame({"label": range(30)}), "the data has no feature columns besides 'label'"),
        (frame(30, city="Lyon", label=1.0), "feature columns must be numeric: city are not"),
        (frame(19, label=1.0), "19 complete rows (19 read): at least 20 are needed"),
        (
            frame(25, label=[np.nan] * 6 + [1.0] * 19),
            "19 complete rows (25 read): at least 20 are needed",
        ),
    ],
)
def test_data_the_trainer_cannot_use_is_refused_with_the_reason(
    data: pd.DataFrame, message: str
) -> None:
    with pytest.raises(train.TrainingError) as raised:
        train.prepare(data, "label")
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (np.linspace(0, 1, 100), "regression"),
        (np.arange(21) % 21, "regression"),  # 21 whole numbers: a count, not labels
        (np.arange(100) % 20, "classification"),  # 20 whole numbers: labels
        (np.array([0.5, 1.5] * 50), "regression"),  # few values, but fractions
        (np.array([0.0, 1.0] * 50), "classification"),
        (np.array(["setosa", "virginica"] * 50), "classification"),
        (np.array([True, False] * 50), "classification"),
    ],
)
def test_the_task_follows_the_target(values: np.ndarray, task: str) -> None:
    assert train.task_of(pd.Series(values)) == task


def test_the_holdout_is_a_fixed_share_chosen_by_the_seed() -> None:
    X = frame(100)
    y = pd.Series(np.arange(100.0), name="y")
    X_train, X_test, y_train, y_test = train.split(X, y, "regression", 0.25, seed=3)
    assert (len(X_train), len(X_test)) == (75, 25)
    assert sorted([*X_train.index, *X_test.index]) == list(range(100))
    assert list(y_train.index) == list(X_train.index)
    assert list(y_test.index) == list(X_test.index)
    again = train.split(X, y, "regression", 0.25, seed=3)[1]
    other = train.split(X, y, "regression", 0.25, seed=4)[1]
    assert list(again.index) == list(X_test.index)
    assert list(other.index) != list(X_test.index)


def test_classes_keep_their_shares_in_the_holdout() -> None:
    y = pd.Series(["a"] * 60 + ["b"] * 20 + ["c"] * 20, name="y")
    y_test = train.split(frame(100), y, "classification", 0.25, seed=0)[3]
    assert y_test.value_counts().to_dict() == {"a": 15, "b": 5, "c": 5}


def test_a_single_class_cannot_be_trained_on() -> None:
    y = pd.Series(["a"] * 40, name="label")
    with pytest.raises(train.TrainingError) as raised:
        train.split(frame(40), y, "classification", 0.25, seed=0)
    assert str(raised.value) == "the target 'label' has a single class in the training rows"


# --- measuring and deciding -----------------------------------------------------------------------


def test_regressors_are_measured_by_mae_rmse_and_r2() -> None:
    metrics = train.evaluate("regression", [1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert metrics == pytest.approx({"mae": 2 / 3, "rmse": math.sqrt(4 / 3), "r2": -1.0})
    assert train.error_of("regression", metrics) == pytest.approx(2 / 3)


def test_classifiers_are_measured_by_accuracy_and_macro_f1() -> None:
    # a: precision 1/2, recall 1; b: precision 1, recall 1/2: both F1 2/3
    metrics = train.evaluate("classification", ["a", "b", "b"], ["a", "b", "a"])
    assert metrics == pytest.approx({"accuracy": 2 / 3, "f1_macro": 2 / 3})
    assert train.error_of("classification", metrics) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("new", "champion", "gain"),
    [
        (8.0, 10.0, 0.2),
        (10.0, 10.0, 0.0),
        (12.0, 10.0, -0.2),
        (0.0, 0.0, 0.0),
        (0.1, 0.0, -math.inf),
    ],
)
def test_improvement_is_the_relative_error_reduction(
    new: float, champion: float, gain: float
) -> None:
    assert train.improvement(new, champion) == pytest.approx(gain)


@pytest.mark.parametrize(
    ("changes", "champion", "gain", "minimum", "promote", "why"),
    [
        ({}, None, None, 0.0, True, "no version at alias 'champion' yet"),
        ({}, "3", 0.2, 0.0, True, "20.0% lower error than version 3"),
        ({}, "3", 0.2, 0.1, True, "20.0% lower error than version 3"),
        ({}, "3", 0.2, 0.2, False, "20.0% lower error than version 3, needs more than 20.0%"),
        ({}, "3", 0.0, 0.0, False, "0.0% lower error than version 3, needs more than 0.0%"),
        ({}, "3", -0.5, 0.0, False, "-50.0% lower error than version 3, needs more than 0.0%"),
        ({}, "3", None, 0.0, False, "version 3 cannot score the new data"),
        (
            {"operator_promotes": True},
            "3",
            0.2,
            0.0,
            False,
            "the operator moves the alias (promote: alias)",
        ),
        (
            {"operator_promotes": True},
            None,
            None,
            0.0,
            False,
            "the operator moves the alias (promote: alias)",
        ),
        (
            {"model_alias": ""},
            "3",
            0.2,
            0.0,
            False,
            "no alias to move (TURNOUT_MODEL_ALIAS is empty)",
        ),
    ],
)
def test_the_alias_moves_only_to_a_better_version_when_the_trainer_decides(
    changes: dict[str, Any], champion: str | None, gain: float | None, minimum: float,
    promote: bool, why: str,
) -> None:  # fmt: skip
    assert train.decide(retraining(**changes), champion, gain, minimum) == train.Decision(
        promote, why
    )


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("estimator", ["linear", "forest"])
def test_each_model_is_a_scaled_pipeline_that_fits(task: str, estimator: str) -> None:
    X = frame(60)
    y = X["a"] * 3 if task == "regression" else (X["a"] > 0).map({True: "up", False: "down"})
    model = train.build_model(task, estimator, seed=0).fit(X, y)
    assert [name for name, _ in model.steps] == ["scale", "model"]
    expected = {("regression", "linear"): "Ridge", ("classification", "linear"): "LogisticRegression",
                ("regression", "forest"): "RandomForestRegressor",
                ("classification", "forest"): "RandomForestClassifier"}  # fmt: skip
    assert type(model.steps[-1][1]).__name__ == expected[(task, estimator)]
    assert len(model.predict(X)) == 60


def test_the_registered_version_is_tagged_with_its_origin_and_its_comparison() -> None:
    decision = train.Decision(True, "20.0% lower error than version 3")
    assert train.version_tags(retraining(), "regression", "3", 0.2, decision) == {
        "turnout.retraining.job": "diabetes-retrain-1",
        "turnout.retraining.reason": "Drift",
        "turnout.retraining.champion_version": "3",
        "turnout.retraining.comparison": '{"metric": "mae", "improvement": 0.2, "promoted": true, '
        '"why": "20.0% lower error than version 3"}',
    }
    first = train.Decision(True, "no version at alias 'champion' yet")
    tags = train.version_tags(retraining(), "classification", None, None, first)
    assert tags["turnout.retraining.champion_version"] == ""
    assert tags["turnout.retraining.comparison"] == (
        '{"metric": "accuracy", "improvement": null, "promoted": true, '
        '"why": "no version at alias \'champion\' yet"}'
    )
    perfect = train.Decision(False, "-inf% lower error than version 3, needs more than 0.0%")
    tags = train.version_tags(retraining(), "regression", "3", -math.inf, perfect)
    assert '"improvement": null' in tags["turnout.retraining.comparison"]  # JSON has no -inf
