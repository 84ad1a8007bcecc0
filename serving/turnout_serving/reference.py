"""Reference profiles in MLflow: one call at training time.

The drift tests need to know what the training data looked like, and the only thing a serving pod
shares with the training job is the MLflow run. So the data scientist logs a reference profile
next to the model, as a small JSON artifact of the run::

    with mlflow.start_run():
        model.fit(X_train, y_train)
        mlflow.sklearn.log_model(model, name="model")
        log_reference(X_train, model.predict(X_train))

and the server fetches it from the run with the model (``model_source``, which keeps it beside the
cached model). A run without a profile is not an error: drift monitoring is then off for that
model, and the server says so. This module is the MLflow adapter of the training side; the profile
itself is built by the pure ``domain.drift_profile``.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient

from turnout_serving.domain.drift_profile import build_profile
from turnout_serving.model_source import REFERENCE_ARTIFACT

DIGEST_TAG = "turnout.reference_digest"


def log_reference(
    X_train: pd.DataFrame,
    predictions: Any | None = None,
    *,
    run_id: str | None = None,
    artifact_file: str = REFERENCE_ARTIFACT,
    top_k: int = 20,
) -> str:
    """Log the reference profile of ``X_train`` to the active run (or ``run_id``); its digest.

    The digest is also set as the run tag ``turnout.reference_digest``, so the registry shows
    which profile a model version will be monitored against.
    """
    if run_id is None:
        active = mlflow.active_run()
        if active is None:
            raise RuntimeError(
                "log_reference needs a run: call it inside `with mlflow.start_run():` "
                "or pass run_id="
            )
        run_id = active.info.run_id
    profile = build_profile(X_train, predictions, top_k=top_k)
    client = MlflowClient()
    client.log_dict(run_id, profile.to_dict(), artifact_file)
    client.set_tag(run_id, DIGEST_TAG, profile.digest)
    return profile.digest
