"""Train and register the models the demo, the tests and the benchmarks serve.

Each is trained and registered the way MLflow's tutorials do it: `log_model` with a signature and
an input example inside a run, `registered_model_name`, then an alias or a legacy stage. Drift
references are logged with `turnout_serving.reference.log_reference(X_train)`. Data sets ship
inside scikit-learn: nothing is downloaded.

    python scripts/demo_models.py --tracking-uri http://127.0.0.1:5000 [all|diabetes|...]

prints a JSON object: model name -> {"versions": [...], "aliases": {...}, "stages": {...}}.
"""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Any

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, mean_absolute_error, mean_squared_error, r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from turnout_serving.reference import log_reference

TREES = ["sklearn.tree._tree.Tree"]  # skops must be told to trust tree node storage


def diabetes_frame() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return X, y


def training_metrics(model: Any, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """What a training run logs of its fit: accuracy for a classifier; MAE, RMSE and R² for a
    regressor (turnout-serve exports them as `turnout_training_metric`)."""
    predicted = model.predict(X)
    if is_classifier(model):
        return {"accuracy": float(accuracy_score(y, predicted))}
    return {
        "mae": float(mean_absolute_error(y, predicted)),
        "rmse": float(np.sqrt(mean_squared_error(y, predicted))),
        "r2": float(r2_score(y, predicted)),
    }


def _log_sklearn(
    model: Any, X: pd.DataFrame, name: str, *, reference: bool, y: pd.Series | None = None,
    **kw: Any,
) -> str:  # fmt: skip
    """One run: fit already done; log the model (+ reference, + its metrics on `y`); register;
    return the version."""
    with mlflow.start_run() as run:
        mlflow.log_params({"estimator": type(model).__name__})
        if y is not None:
            mlflow.log_metrics(training_metrics(model, X, y))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X, model.predict(X)),
            input_example=X.head(5),
            registered_model_name=name,
            **kw,
        )
        if reference:
            log_reference(X, predictions=model.predict(X))
        assert run.info.run_id
    return str(info.registered_model_version)


def register_diabetes(name: str = "Diabetes") -> dict[str, Any]:
    """A 100-tree gradient-boosting regressor (v1, stage Production) and a 50-tree one (v2,
    alias `champion`), both with a drift reference; v3 is a ridge model with alias
    `challenger`."""
    X, y = diabetes_frame()
    client = MlflowClient()
    v1 = _log_sklearn(
        GradientBoostingRegressor(n_estimators=100, random_state=0).fit(X, y), X, name, y=y,
        reference=True, skops_trusted_types=TREES,
    )  # fmt: skip
    v2 = _log_sklearn(
        GradientBoostingRegressor(n_estimators=50, random_state=1).fit(X, y), X, name, y=y,
        reference=True, skops_trusted_types=TREES,
    )  # fmt: skip
    v3 = _log_sklearn(Ridge(alpha=0.1).fit(X, y), X, name, y=y, reference=False)
    with warnings.catch_warnings():  # stages are deprecated by MLflow, still in wide use
        warnings.simplefilter("ignore")
        client.transition_model_version_stage(name, v1, "Production")
    client.set_registered_model_alias(name, "champion", v2)
    client.set_registered_model_alias(name, "challenger", v3)
    return {
        "versions": [v1, v2, v3],
        "aliases": {"champion": v2, "challenger": v3},
        "stages": {"Production": v1},
    }


def register_iris(name: str = "Iris") -> dict[str, Any]:
    """A logistic-regression classifier with integer labels, no drift reference."""
    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = [c.replace(" (cm)", "").replace(" ", "_") for c in X.columns]
    model = LogisticRegression(max_iter=500).fit(X, y)
    version = _log_sklearn(model, X, name, y=y, reference=False)
    MlflowClient().set_registered_model_alias(name, "champion", version)
    return {"versions": [version], "aliases": {"champion": version}, "stages": {}}


def register_mixed(name: str = "Mixed") -> dict[str, Any]:
    """A pipeline over a string column and numbers (MLflow's general path), with a reference."""
    X, y = diabetes_frame()
    frame = X[["age", "bmi", "bp"]].copy()
    frame["sex"] = np.where(X["sex"] > 0, "f", "m")
    frame["band"] = pd.cut(X["s5"], 4, labels=["low", "mid", "high", "top"]).astype(str)
    encode = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), ["sex", "band"])], remainder="passthrough"
    )
    model = make_pipeline(encode, Ridge(alpha=0.5)).fit(frame, y)
    version = _log_sklearn(
        model, frame, name, reference=True, y=y, serialization_format="cloudpickle"
    )
    return {"versions": [version], "aliases": {}, "stages": {}}


BIKE_COLUMNS = ["season", "holiday", "workingday", "weather", "temp", "atemp", "humidity",
                "windspeed"]  # fmt: skip


def bike_sharing_frame(rows: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Synthetic hourly bike rentals shaped like the bike-sharing tutorials' data: integer
    `season` (1-4), `holiday` and `workingday` (0/1), `weather` (1-4), and normalised float
    weather readings; the count rises with warmth and falls with rain and wind."""
    rng = np.random.default_rng(seed)
    season = rng.integers(1, 5, rows)
    holiday = (rng.random(rows) < 0.03).astype(np.int64)
    workingday = np.where(holiday == 1, 0, (rng.random(rows) < 0.7).astype(np.int64))
    weather = rng.choice([1, 2, 3, 4], rows, p=[0.65, 0.25, 0.09, 0.01])
    temp = np.clip(0.15 * season + rng.normal(0.2, 0.12, rows), 0.02, 1.0)
    X = pd.DataFrame({
        "season": season.astype(np.int64), "holiday": holiday, "workingday": workingday,
        "weather": weather.astype(np.int64), "temp": temp,
        "atemp": np.clip(temp + rng.normal(0, 0.03, rows), 0.0, 1.0),
        "humidity": rng.uniform(0.2, 1.0, rows), "windspeed": rng.uniform(0.0, 0.6, rows),
    })  # fmt: skip
    count = (40 + 300 * X["temp"] + 25 * X["season"] + 60 * X["workingday"] - 45 * X["weather"]
             - 80 * X["humidity"] - 60 * X["windspeed"] + rng.normal(0, 15, rows))  # fmt: skip
    return X, count.clip(lower=0).rename("count")


def register_bike_sharing(name: str = "BikeSharing") -> dict[str, Any]:
    """A gradient-boosting regressor on integer and float columns, logged with an input example
    so the signature has `long` columns: clients send integral floats (3.0) there."""
    X, y = bike_sharing_frame()
    model = GradientBoostingRegressor(n_estimators=60, max_depth=3, random_state=0).fit(X, y)
    version = _log_sklearn(model, X, name, y=y, reference=False, skops_trusted_types=TREES)
    return {"versions": [version], "aliases": {}, "stages": {}}


def register_no_signature(name: str = "NoSignature") -> dict[str, Any]:
    """Logged with neither signature nor input example: served, but unvalidated and not warmed."""
    X, y = diabetes_frame()
    model = Ridge().fit(X.to_numpy(), y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
    return {"versions": [str(info.registered_model_version)], "aliases": {}, "stages": {}}


def register_broken(name: str = "Broken") -> dict[str, Any]:
    """A pyfunc model that raises when an `age` exceeds 100 and takes 2 s when one is negative;
    all else predicts 1.0. The server must answer 500 with a request id (and 504 past its
    timeout) and keep serving."""

    class Fragile(mlflow.pyfunc.PythonModel):  # defined here so cloudpickle stores it by value
        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            import time

            if (model_input["age"] > 100).any():
                raise RuntimeError("simulated model failure")
            if (model_input["age"] < 0).any():
                time.sleep(2)
            return np.ones(len(model_input))

    example = pd.DataFrame({"age": [30.0, 40.0], "bmi": [22.0, 25.0]})
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Fragile(),
            input_example=example,
            signature=infer_signature(example, np.ones(2)),
            registered_model_name=name,
        )
    return {"versions": [str(info.registered_model_version)], "aliases": {}, "stages": {}}


REGISTRARS = {
    "diabetes": register_diabetes,
    "iris": register_iris,
    "mixed": register_mixed,
    "no_signature": register_no_signature,
    "broken": register_broken,
    "bike_sharing": register_bike_sharing,
}
NAMES = {
    "diabetes": "Diabetes",
    "iris": "Iris",
    "mixed": "Mixed",
    "no_signature": "NoSignature",
    "broken": "Broken",
    "bike_sharing": "BikeSharing",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("models", nargs="*", help=f"all (default) or any of {list(REGISTRARS)}")
    args = parser.parse_args()
    unknown = set(args.models) - {"all", *REGISTRARS}
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}")
    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_experiment("turnout-demo")
    chosen = list(REGISTRARS) if not args.models or "all" in args.models else args.models
    print(json.dumps({NAMES[key]: REGISTRARS[key]() for key in chosen}))


if __name__ == "__main__":
    main()
