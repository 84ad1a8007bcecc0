import mlflow
import numpy as np
import pandas as pd
import pytest

from turnout_serving.domain.drift_profile import build_profile
from turnout_serving.reference import (
    DIGEST_TAG,
    load_reference,
    load_reference_from_dir,
    log_reference,
)


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


def test_a_logged_reference_comes_back_from_the_run(tracking, train, tmp_path):
    x, predictions = train
    with mlflow.start_run(experiment_id=tracking) as run:
        digest = log_reference(x, predictions)
    assert digest == build_profile(x, predictions).digest
    assert mlflow.get_run(run.info.run_id).data.tags[DIGEST_TAG] == digest
    loaded = load_reference(run.info.run_id)
    assert loaded == build_profile(x, predictions)
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, dst_path=tmp_path / "d"
    )
    assert load_reference_from_dir(downloaded) == loaded
    assert load_reference_from_dir(tmp_path / "d" / "turnout") == loaded  # from a subdirectory


def test_a_run_without_reference_loads_none(tracking, tmp_path):
    with mlflow.start_run(experiment_id=tracking) as run:
        mlflow.log_dict({"other": 1}, "turnout/other.json")
    assert load_reference(run.info.run_id) is None
    assert load_reference_from_dir(tmp_path) is None


def test_logging_to_a_named_run_outside_any_active_run(tracking, train):
    x, _ = train
    with mlflow.start_run(experiment_id=tracking) as run:
        pass
    digest = log_reference(x, run_id=run.info.run_id)
    assert load_reference(run.info.run_id).digest == digest


def test_logging_without_a_run_says_what_to_do(train):
    with pytest.raises(RuntimeError, match="start_run"):
        log_reference(train[0])
