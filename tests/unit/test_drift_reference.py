import mlflow
import numpy as np
import pandas as pd
import pytest

from turnout_serving.domain.drift_profile import ReferenceProfile, build_profile
from turnout_serving.model_source import REFERENCE_ARTIFACT
from turnout_serving.reference import DIGEST_TAG, log_reference


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """One throwaway sqlite tracking store for the module (creating its schema takes seconds)."""
    root = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root}/m.db")
    experiment = mlflow.create_experiment("drift", artifact_location=(root / "a").as_uri())
    yield experiment
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def train():
    x = pd.DataFrame({"x": np.arange(100.0), "c": ["u", "v"] * 50})
    return x, np.arange(100.0) * 2


def logged_profile(run_id: str) -> ReferenceProfile:
    """The profile as the server fetches it: the run's artifact at REFERENCE_ARTIFACT."""
    return ReferenceProfile.from_dict(
        mlflow.artifacts.load_dict(f"runs:/{run_id}/{REFERENCE_ARTIFACT}")
    )


def test_a_logged_reference_comes_back_from_the_run(tracking, train):
    x, predictions = train
    with mlflow.start_run(experiment_id=tracking) as run:
        digest = log_reference(x, predictions)
    assert digest == build_profile(x, predictions).digest
    assert mlflow.get_run(run.info.run_id).data.tags[DIGEST_TAG] == digest
    assert logged_profile(run.info.run_id) == build_profile(x, predictions)


def test_logging_to_a_named_run_outside_any_active_run(tracking, train):
    x, _ = train
    with mlflow.start_run(experiment_id=tracking) as run:
        pass
    digest = log_reference(x, run_id=run.info.run_id)
    assert logged_profile(run.info.run_id).digest == digest


def test_logging_without_a_run_says_what_to_do(train):
    with pytest.raises(RuntimeError, match="start_run"):
        log_reference(train[0])
