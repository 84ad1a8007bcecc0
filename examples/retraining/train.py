"""The retraining Job's trainer: fit the next version on the newest labelled data, register it,
and move the alias only when it beats the version serving now on the same holdout.

The operator runs it as the Job's command (spec.retraining.jobTemplate) and tells it which model
(TURNOUT_MODEL_NAME, TURNOUT_MODEL_ALIAS, TURNOUT_MODEL_VERSION), why (TURNOUT_RETRAIN_REASON,
TURNOUT_RETRAIN_FIGURES), its own Job name (TURNOUT_RETRAINING_JOB), whether the operator moves
the alias itself (TURNOUT_OPERATOR_PROMOTES) and where the registry is (MLFLOW_TRACKING_URI;
MLflow reads MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN from the credentials Secret itself).

Every version is registered, promoted or not, so the registry keeps what each retraining
produced and why it was or was not promoted (the version's `turnout.retraining.*` tags). Bad
input (no data, no target column, too few rows) fails before anything is written: exit 2 and one
line naming what to fix. The decisions (which task, the split, the metrics, whether to promote)
are pure functions; MLflow is only touched in `run`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from turnout_serving.reference import log_reference

Task = Literal["regression", "classification"]
MIN_ROWS = 20  # fewer complete rows than this: too little to train and evaluate on
MAX_CLASSES = 20  # a numeric target of whole numbers with at most this many values is a label
TREES = ["sklearn.tree._tree.Tree"]  # skops must be told to trust a forest's tree storage
TAG = "turnout.retraining."


class TrainingError(Exception):
    """Input the trainer cannot work with; the message says what to fix."""


@dataclass(frozen=True)
class Retraining:
    """What the operator's Job tells the trainer (turnout_operator.domain.retraining_job)."""

    model_name: str
    model_version: str  # the version serving when the retraining started; may be empty
    model_alias: str  # empty: the trainer never moves an alias
    reason: str
    figures: dict[str, Any]
    job: str
    operator_promotes: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Retraining:
        name = env.get("TURNOUT_MODEL_NAME", "")
        if not name:
            raise TrainingError("TURNOUT_MODEL_NAME is not set: which registered model to train")
        try:
            figures = json.loads(env.get("TURNOUT_RETRAIN_FIGURES") or "{}")
        except json.JSONDecodeError as exc:
            raise TrainingError(f"TURNOUT_RETRAIN_FIGURES is not JSON: {exc}") from None
        return cls(
            model_name=name,
            model_version=env.get("TURNOUT_MODEL_VERSION", ""),
            model_alias=env.get("TURNOUT_MODEL_ALIAS", ""),
            reason=env.get("TURNOUT_RETRAIN_REASON", "Requested"),
            figures=figures,
            job=env.get("TURNOUT_RETRAINING_JOB", ""),
            operator_promotes=env.get("TURNOUT_OPERATOR_PROMOTES", "false").lower() == "true",
        )


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="train.py", description=__doc__.splitlines()[0])
    arg = parser.add_argument
    arg("--data", default=env.get("TRAINING_DATA"),
        help="CSV path or URL (anything pandas.read_csv reads): the newest labelled data "
             "[TRAINING_DATA]")  # fmt: skip
    arg("--target", default=env.get("TARGET_COLUMN"), help="the label column [TARGET_COLUMN]")
    arg("--holdout", type=fraction, default=env.get("TRAINING_HOLDOUT", "0.25"),
        help="share of the rows held out to compare the new version with the champion "
             "[TRAINING_HOLDOUT, 0.25]")  # fmt: skip
    arg("--seed", type=int, default=env.get("TRAINING_SEED", "0"),
        help="seed of the split and the model [TRAINING_SEED, 0]")  # fmt: skip
    arg("--min-improvement", type=float, default=env.get("TRAINING_MIN_IMPROVEMENT", "0"),
        help="relative error reduction the new version needs over the champion to be promoted, "
             "e.g. 0.05 for 5 %% [TRAINING_MIN_IMPROVEMENT, 0]")  # fmt: skip
    arg("--estimator", choices=("linear", "forest"),
        default=env.get("TRAINING_ESTIMATOR", "linear"),
        help="ridge/logistic regression, or a forest [TRAINING_ESTIMATOR, linear]")  # fmt: skip
    arg("--experiment", default=env.get("TRAINING_EXPERIMENT"),
        help="MLflow experiment of the runs [TRAINING_EXPERIMENT, the model's name]")  # fmt: skip
    args = parser.parse_args(argv)
    if not args.data:
        parser.error("no training data: pass --data or set TRAINING_DATA")
    if not args.target:
        parser.error("no target column: pass --target or set TARGET_COLUMN")
    return args


# --- pure: data, task, split, metrics, decision ---------------------------------------------------


def prepare(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, pd.Series, int]:
    """Features, target and the number of incomplete rows dropped."""
    if target not in frame.columns:
        raise TrainingError(
            f"the data has no target column {target!r} (columns: {', '.join(map(str, frame))})"
        )
    features = [c for c in frame.columns if c != target]
    if not features:
        raise TrainingError(f"the data has no feature columns besides {target!r}")
    text = [str(c) for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise TrainingError(f"feature columns must be numeric: {', '.join(text)} are not")
    complete = frame.dropna()
    if len(complete) < MIN_ROWS:
        raise TrainingError(
            f"{len(complete)} complete rows ({len(frame)} read): at least {MIN_ROWS} are needed"
        )
    return complete[features], complete[target], len(frame) - len(complete)


def task_of(y: pd.Series) -> Task:
    """Regression for a numeric target with fractions or many values, classification else."""
    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        return "classification"
    whole = bool(np.all(np.mod(y.to_numpy(dtype=float), 1) == 0))
    return "classification" if whole and y.nunique() <= MAX_CLASSES else "regression"


def split(
    X: pd.DataFrame, y: pd.Series, task: Task, holdout: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """X_train, X_holdout, y_train, y_holdout; classes stratified when each has two rows."""
    stratify = y if task == "classification" and y.value_counts().min() >= 2 else None
    try:
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=holdout, random_state=seed, stratify=stratify
        )
    except ValueError as exc:  # e.g. a holdout smaller than the number of classes
        raise TrainingError(f"cannot hold out {holdout} of {len(X)} rows: {exc}") from None
    if task == "classification" and y_train.nunique() < 2:
        raise TrainingError(f"the target {y.name!r} has a single class in the training rows")
    return X_train, X_test, y_train, y_test


def build_model(task: Task, estimator: str, seed: int) -> Pipeline:
    model: Any
    if estimator == "forest":
        forest = RandomForestRegressor if task == "regression" else RandomForestClassifier
        model = forest(n_estimators=100, random_state=seed, n_jobs=1)
    else:
        model = Ridge(alpha=1.0) if task == "regression" else LogisticRegression(max_iter=1000)
    return Pipeline([("scale", StandardScaler()), ("model", model)])


def evaluate(task: Task, y_true: Any, y_pred: Any) -> dict[str, float]:
    if task == "regression":
        return {
            "mae": float(mean_absolute_error(y_true, y_pred)),
            "rmse": float(math.sqrt(mean_squared_error(y_true, y_pred))),
            "r2": float(r2_score(y_true, y_pred)),
        }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro")),
    }


def error_of(task: Task, metrics: Mapping[str, float]) -> float:
    """The figure the comparison (and the operator's quality trigger) uses: MAE, or
    1 - accuracy."""
    return metrics["mae"] if task == "regression" else 1.0 - metrics["accuracy"]


def improvement(new_error: float, champion_error: float) -> float:
    """Relative error reduction of the new version: 0.1 is 10 % lower error than the champion."""
    if champion_error == 0:
        return 0.0 if new_error == 0 else -math.inf
    return (champion_error - new_error) / champion_error


@dataclass(frozen=True)
class Decision:
    promote: bool
    why: str


def decide(
    retraining: Retraining, champion: str | None, gain: float | None, min_improvement: float
) -> Decision:
    """Whether the trainer moves the alias to the new version. `gain` is `improvement(...)`, None
    when the champion could not be scored on the new data."""
    if not retraining.model_alias:
        return Decision(False, "no alias to move (TURNOUT_MODEL_ALIAS is empty)")
    if retraining.operator_promotes:
        return Decision(False, "the operator moves the alias (promote: alias)")
    if champion is None:
        return Decision(True, f"no version at alias {retraining.model_alias!r} yet")
    if gain is None:
        return Decision(False, f"version {champion} cannot score the new data")
    if gain > min_improvement:
        return Decision(True, f"{gain:.1%} lower error than version {champion}")
    return Decision(False, f"{gain:.1%} lower error than version {champion}, needs more than "
                           f"{min_improvement:.1%}")  # fmt: skip


# --- MLflow ---------------------------------------------------------------------------------------


def read_data(source: str) -> pd.DataFrame:
    try:
        return pd.read_csv(source)
    except (OSError, ValueError) as exc:  # missing file, unreachable URL, not a CSV
        raise TrainingError(f"cannot read the training data {source!r}: {exc}") from None


def champion_version(client: MlflowClient, retraining: Retraining) -> str | None:
    """The version at the alias (None when the alias or the model does not exist yet), else the
    version the operator named, else None."""
    if retraining.model_alias:
        try:
            found = client.get_model_version_by_alias(retraining.model_name, retraining.model_alias)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return str(found.version)
    return retraining.model_version or None


def score_champion(name: str, version: str, X: pd.DataFrame) -> Any | None:
    """The champion's predictions on `X`; None when its signature rejects the data (the new
    version's features differ)."""
    champion = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    try:
        return champion.predict(X)
    except MlflowException as exc:
        print(f"version {version} cannot score the new data: {exc.message}", file=sys.stderr)
        return None


@dataclass(frozen=True)
class Fit:
    """A model fitted on the training rows and measured on the holdout."""

    task: Task
    model: Pipeline
    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_test: pd.Series
    metrics: dict[str, float]
    dropped: int


def fit(args: argparse.Namespace) -> Fit:
    X, y, dropped = prepare(read_data(args.data), args.target)
    task = task_of(y)
    X_train, X_test, y_train, y_test = split(X, y, task, args.holdout, args.seed)
    model = build_model(task, args.estimator, args.seed).fit(X_train, y_train)
    metrics = evaluate(task, y_test, model.predict(X_test))
    return Fit(task, model, X_train, X_test, y_test, metrics, dropped)


def measure_champion(
    client: MlflowClient, retraining: Retraining, new: Fit
) -> tuple[str | None, dict[str, float], float | None]:
    """The champion's version, its metrics on the new holdout and the new version's
    improvement over it (empty and None when there is none or it cannot score the data)."""
    champion = champion_version(client, retraining)
    if champion is None:
        return None, {}, None
    predicted = score_champion(retraining.model_name, champion, new.X_test)
    if predicted is None:
        return champion, {}, None
    metrics = evaluate(new.task, new.y_test, predicted)
    return (
        champion,
        metrics,
        improvement(error_of(new.task, new.metrics), error_of(new.task, metrics)),
    )


def log_run(
    args: argparse.Namespace, retraining: Retraining, new: Fit, champion: str | None,
    champion_metrics: dict[str, float],
) -> str:  # fmt: skip
    """One MLflow run with the model, its figures and its drift reference; the version it
    registered."""
    mlflow.set_experiment(args.experiment or retraining.model_name)
    with mlflow.start_run(tags={TAG + "job": retraining.job, TAG + "reason": retraining.reason}):
        mlflow.log_params({
            "task": new.task, "estimator": args.estimator, "data": args.data,
            "target": args.target, "holdout": args.holdout, "seed": args.seed,
            "min_improvement": args.min_improvement, "rows_train": len(new.X_train),
            "rows_holdout": len(new.X_test), "rows_dropped": new.dropped,
            "champion_version": champion or "", "retrain_figures": json.dumps(retraining.figures),
        })  # fmt: skip
        champion_figures = {f"champion_{k}": v for k, v in champion_metrics.items()}
        mlflow.log_metrics({**new.metrics, **champion_figures})
        trained = new.model.predict(new.X_train)
        info = mlflow.sklearn.log_model(
            new.model, name="model", input_example=new.X_train.head(5),
            signature=infer_signature(new.X_train, trained),
            registered_model_name=retraining.model_name,
            skops_trusted_types=TREES if args.estimator == "forest" else None,
        )  # fmt: skip
        log_reference(new.X_train, trained)
    return str(info.registered_model_version)


def version_tags(
    retraining: Retraining, task: Task, champion: str | None, gain: float | None,
    decision: Decision,
) -> dict[str, str]:  # fmt: skip
    """The `turnout.retraining.*` tags of the registered version: where it comes from and how it
    compared (`improvement` is null without a finite comparison)."""
    comparison = {"metric": "mae" if task == "regression" else "accuracy",
                  "improvement": gain if gain is not None and math.isfinite(gain) else None,
                  "promoted": decision.promote, "why": decision.why}  # fmt: skip
    tags = {"job": retraining.job, "reason": retraining.reason,
            "champion_version": champion or "", "comparison": json.dumps(comparison)}  # fmt: skip
    return {TAG + key: value for key, value in tags.items()}


def run(args: argparse.Namespace, retraining: Retraining) -> dict[str, Any]:
    new = fit(args)  # bad data fails here, before anything is written
    client = MlflowClient()
    champion, champion_metrics, gain = measure_champion(client, retraining, new)
    decision = decide(retraining, champion, gain, args.min_improvement)
    version = log_run(args, retraining, new, champion, champion_metrics)
    for key, value in version_tags(retraining, new.task, champion, gain, decision).items():
        client.set_model_version_tag(retraining.model_name, version, key, value)
    if decision.promote:
        client.set_registered_model_alias(retraining.model_name, retraining.model_alias, version)
    return {
        "model": retraining.model_name, "version": version, "task": new.task,
        "metrics": new.metrics, "champion_version": champion,
        "champion_metrics": champion_metrics, "promoted": decision.promote, "why": decision.why,
    }  # fmt: skip


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    args = parse_args(sys.argv[1:] if argv is None else argv, env)
    try:
        # MLflow prints links to the run: stdout carries the outcome alone
        with contextlib.redirect_stdout(sys.stderr):
            outcome = run(args, Retraining.from_env(env))
    except TrainingError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(outcome, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
