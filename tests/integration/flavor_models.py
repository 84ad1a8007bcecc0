"""Models of other flavors than scikit-learn, logged as their users log them: an XGBoost regressor
with `mlflow.xgboost.log_model` and a LightGBM classifier with `mlflow.lightgbm.log_model`, each
with a signature, an input example, a registered name and a drift reference
(`log_reference(X_train, predictions)`), in a run of their own. MLflow writes each one's
`requirements.txt` (`xgboost==...`, `lightgbm==...`) beside it.

    python -m tests.integration.flavor_models   # MLFLOW_TRACKING_URI set

prints a JSON object: registered name -> version.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
from mlflow.models import infer_signature

from turnout_serving.reference import log_reference

XGBOOST, LIGHTGBM = "XGBoostDiabetes", "LightGBMIris"


def register(name: str, flavor: Any, model: Any, X: Any) -> str:
    with mlflow.start_run():
        predictions = model.predict(X)
        info = flavor.log_model(
            model,
            name="model",
            signature=infer_signature(X, predictions),
            input_example=X.head(5),
            registered_model_name=name,
        )
        log_reference(X, predictions=predictions)
    return str(info.registered_model_version)


def main() -> None:
    # Here, not above: the parity tests import the names alone, without both libraries.
    import lightgbm
    import mlflow.lightgbm
    import mlflow.xgboost
    import xgboost
    from sklearn.datasets import load_diabetes, load_iris

    mlflow.set_experiment("turnout-flavors")
    diabetes, target = load_diabetes(return_X_y=True, as_frame=True)
    iris, species = load_iris(return_X_y=True, as_frame=True)
    iris.columns = [c.replace(" (cm)", "").replace(" ", "_") for c in iris.columns]
    boosted = xgboost.XGBRegressor(n_estimators=40, max_depth=3, random_state=0)
    leaves = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=8, random_state=0, verbose=-1)
    versions = {
        XGBOOST: register(XGBOOST, mlflow.xgboost, boosted.fit(diabetes, target), diabetes),
        LIGHTGBM: register(LIGHTGBM, mlflow.lightgbm, leaves.fit(iris, species), iris),
    }
    print(json.dumps(versions))


if __name__ == "__main__":
    main()
