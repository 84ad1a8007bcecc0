"""Reference profiles in MLflow: one call at training time, one look-up at serving time.

The drift tests need to know what the training data looked like, and the only thing a serving pod
shares with the training job is the MLflow run. So the data scientist logs a reference profile
next to the model, as a small JSON artifact of the run::

    with mlflow.start_run():
        model.fit(X_train, y_train)
        mlflow.sklearn.log_model(model, name="model")
        log_reference(X_train, model.predict(X_train))

and the server loads it by run id. A run without a profile is not an error: drift monitoring is
then off for that model, and the caller says so. This module is the MLflow adapter; the profile
itself is built by the pure ``domain.drift_profile``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient

from turnout_serving.domain.drift_profile import ReferenceProfile, build_profile

REFERENCE_ARTIFACT = "turnout/reference.json"
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


def load_reference(run_id: str, artifact_file: str = REFERENCE_ARTIFACT) -> ReferenceProfile | None:
    """The run's reference profile, or None when the run has none (drift is then off)."""
    path = PurePosixPath(artifact_file)
    folder = "" if str(path.parent) == "." else str(path.parent)
    listed = {info.path for info in MlflowClient().list_artifacts(run_id, folder or None)}
    if str(path) not in listed:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=str(path), dst_path=scratch
        )
        return _read(Path(local))


def load_reference_from_dir(directory: Path | str) -> ReferenceProfile | None:
    """The reference profile in a downloaded artifacts directory, or None if it has none.

    Looks for ``turnout/reference.json`` in the directory itself (a run's artifacts downloaded
    whole) and in its parent (the model's own subdirectory of such a download).
    """
    directory = Path(directory)
    for candidate in (directory / REFERENCE_ARTIFACT, directory.parent / REFERENCE_ARTIFACT):
        if candidate.is_file():
            return _read(candidate)
    return None


def _read(path: Path) -> ReferenceProfile:
    return ReferenceProfile.from_dict(json.loads(path.read_text()))
