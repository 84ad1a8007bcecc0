"""Without a tracking server to ask, the training run's metrics are not read: one log line, and
no local MLflow store made in the server's working directory (MLflow's default)."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout_serving.model_source import training_metrics


def test_no_tracking_uri_reads_nothing_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    caplog.set_level("INFO", logger="turnout_serving.model")
    assert training_metrics("0123456789abcdef", 1.0) == {}
    assert caplog.messages == [
        "no tracking server (MLFLOW_TRACKING_URI) to read run 0123456789abcdef's metrics from"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_model_without_a_run_reads_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="turnout_serving.model")
    assert training_metrics("", 1.0) == {}
    assert caplog.messages == ["no training run to read metrics from"]
