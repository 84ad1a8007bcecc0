"""The record of live quality in MLflow: the active pods' figures combined over the pods, read at
most once per interval per ModelDeployment and once more when a version stops being active,
written through the tag writer; a read with no labelled prediction writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from turnout_operator.live_record import LiveRecorder
from turnout_operator.pod_metrics import LiveQuality, Watched, live_quality, live_reading, watched
from turnout_operator.tags import TagWriter

PREFIX = "turnout.live/ml.bikes."
WHEN = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def exposition(version: str, rows: int, **gauges: float) -> str:
    """A pod's /metrics text with its live-quality gauges (as quality_metrics.py exports them)."""
    labels = f'model="Bikes",version="{version}",color="blue"'
    lines = ["# TYPE turnout_live_window_rows gauge",
             f"turnout_live_window_rows{{{labels}}} {rows}"]  # fmt: skip
    for name, value in gauges.items():
        lines += [f"# TYPE turnout_live_{name} gauge", f"turnout_live_{name}{{{labels}}} {value}"]
    return "\n".join(lines) + "\n"


class Pods:
    """The pods of each color and the /metrics text each answers; every read is counted."""

    def __init__(self) -> None:
        self.metrics: dict[str, dict[str, str]] = {"blue": {}, "green": {}}
        self.reads: list[str] = []

    def ready_pods(self, namespace: str, name: str, color: str) -> list[tuple[str, str]]:
        return [(pod, "10.0.0.1") for pod in sorted(self.metrics[color])]

    def pod_request(self, namespace: str, pod: str, ip: str, method: str, path: str,
                    direct: bool, timeout: float, headers: Any = None, body: Any = None,
                    ) -> tuple[int, str]:  # fmt: skip
        assert (method, path) == ("GET", "/metrics")
        self.reads.append(pod)
        for pods in self.metrics.values():
            if pod in pods:
                return 200, pods[pod]
        raise OSError(f"no pod {pod}")


class Registry:
    tracking_uri = "http://mlflow:5000"

    def __init__(self) -> None:
        self.tags: dict[tuple[str, str], str] = {}

    def tag(self, name: str, version: str, key: str, value: str) -> None:
        assert name == "Bikes"
        self.tags[(version, key.removeprefix(PREFIX))] = value


@pytest.fixture
def setup() -> Any:
    pods, registry, writer, now = Pods(), Registry(), TagWriter(), [0.0]
    recorder = LiveRecorder(pods, writer, interval=300.0, timeout=1.0, direct=lambda: True,
                            clock=lambda: now[0], wall=lambda: WHEN)  # fmt: skip
    yield recorder, pods, registry, writer, now
    writer.stop()


def recorded(registry: Registry, writer: TagWriter, version: str) -> dict[str, str]:
    assert writer.idle(timeout=5)
    return {key: value for (v, key), value in registry.tags.items() if v == version}


def test_pods_combine_weighted_by_their_labelled_rows() -> None:
    one = live_reading(exposition("3", 100, mae=2.0, rmse=3.0), "3")
    two = live_reading(exposition("3", 300, mae=4.0, rmse=5.0), "3")
    assert (one.rows, one.mae, one.rmse, one.accuracy) == (100, 2.0, 3.0, None)
    combined = live_quality([one, two, LiveQuality()])
    assert (combined.rows, combined.mae) == (400, 3.5)
    assert combined.rmse == pytest.approx(((100 * 9 + 300 * 25) / 400) ** 0.5)
    assert live_reading(exposition("2", 100, mae=2.0), "3") == LiveQuality()  # another version
    assert live_reading(exposition("3", 0, mae=float("nan")), "3") == LiveQuality()


def test_the_active_version_is_tagged_at_once_then_at_most_once_per_interval(setup: Any) -> None:
    recorder, pods, registry, writer, now = setup
    pods.metrics["blue"] = {"b-0": exposition("3", 100, mae=2.0, rmse=3.0),
                            "b-1": exposition("3", 300, mae=4.0, rmse=4.0)}  # fmt: skip
    recorder.serving("ml", "bikes", "Bikes", "3", "blue", lambda: registry)
    assert recorder.record_due() == 300.0
    assert recorded(registry, writer, "3") == {
        "mae": "3.5", "rmse": "3.77492", "rows": "400", "updated": "2026-05-01T12:00:00+00:00",
    }  # fmt: skip
    now[0] = 299.0
    recorder.serving("ml", "bikes", "Bikes", "3", "blue", lambda: registry)  # a reconcile
    assert recorder.record_due() == pytest.approx(1.0)
    assert pods.reads == ["b-0", "b-1"]  # not read again before the interval
    now[0] = 300.0
    pods.metrics["blue"]["b-1"] = exposition("3", 300, mae=6.0, rmse=6.0)
    recorder.record_due()
    assert recorded(registry, writer, "3")["mae"] == "5"
    assert pods.reads == ["b-0", "b-1"] * 2


def test_a_version_that_stops_being_active_is_read_once_more(setup: Any) -> None:
    recorder, pods, registry, writer, now = setup
    pods.metrics["blue"] = {"b-0": exposition("3", 10, accuracy=0.9)}
    recorder.serving("ml", "bikes", "Bikes", "3", "blue", lambda: registry)
    recorder.record_due()
    assert recorded(registry, writer, "3")["accuracy"] == "0.9"
    now[0] = 10.0  # labels came in since; then version 4 (green) was promoted
    pods.metrics["blue"] = {"b-0": exposition("3", 50, accuracy=0.8)}
    pods.metrics["green"] = {"g-0": exposition("4", 0)}
    recorder.serving("ml", "bikes", "Bikes", "4", "green", lambda: registry)
    recorder.record_due()
    assert recorded(registry, writer, "3") == {
        "accuracy": "0.8",
        "rows": "50",
        "updated": "2026-05-01T12:00:00+00:00",
    }
    assert recorded(registry, writer, "4") == {}  # no label yet: nothing written
    now[0] = 400.0
    recorder.record_due()
    assert pods.reads == ["b-0", "b-0", "g-0", "g-0"]  # version 3 is not read again


def test_pods_that_cannot_be_read_are_left_out_and_a_deleted_deployment_forgotten(
    setup: Any,
) -> None:
    recorder, pods, registry, writer, now = setup
    pods.metrics["blue"] = {"b-0": exposition("3", 20, mae=1.0), "b-1": "not metrics {"}
    pods.ready_pods = lambda *_: [("b-0", "10.0.0.1"), ("b-1", "10.0.0.2"), ("gone", "10.0.0.3")]  # type: ignore[method-assign]
    recorder.serving("ml", "bikes", "Bikes", "3", "blue", lambda: registry)
    recorder.record_due()
    assert recorded(registry, writer, "3") == {
        "mae": "1",
        "rows": "20",
        "updated": "2026-05-01T12:00:00+00:00",
    }
    recorder.forget("ml", "bikes")
    now[0] = 900.0
    assert recorder.record_due() == 300.0
    assert pods.reads == ["b-0", "b-1", "gone"]


def drift_and_training(version: str, psi: float, rows: int, **trained: float) -> str:
    """A pod's prediction drift gauges and its training run's metrics (drift_metrics.py,
    quality_metrics.py)."""
    labels = f'model="Bikes",version="{version}",color="blue"'
    lines = ["# TYPE turnout_prediction_drift_psi gauge",
             f"turnout_prediction_drift_psi{{{labels}}} {psi}",
             "# TYPE turnout_drift_window_rows gauge",
             f"turnout_drift_window_rows{{{labels}}} {rows}",
             "# TYPE turnout_training_metric gauge"]  # fmt: skip
    lines += [f'turnout_training_metric{{{labels},metric="{m}"}} {v}' for m, v in trained.items()]
    return "\n".join(lines) + "\n"


def test_the_same_read_keeps_what_the_retraining_triggers_see(setup: Any) -> None:
    recorder, pods, registry, _, _ = setup
    pods.metrics["blue"] = {
        "b-0": exposition("3", 100, mae=2.0) + drift_and_training("3", 0.4, 150, mae=1.5, r2=0.9),
        "b-1": exposition("3", 300, mae=4.0) + drift_and_training("3", 0.1, 50, mae=1.5, r2=0.9),
    }  # fmt: skip
    assert recorder.watched("ml", "bikes", "3") is None  # nothing read yet
    recorder.serving("ml", "bikes", "Bikes", "3", "blue", lambda: registry)
    recorder.record_due()
    assert recorder.watched("ml", "bikes", "3") == Watched(
        "3", drift_psi=0.4, drift_rows=200, quality_error=3.5, quality_rows=400,
        training_error=1.5,
    )  # fmt: skip
    assert recorder.watched("ml", "bikes", "4") is None  # figures of another version say nothing
    recorder.forget("ml", "bikes")
    assert recorder.watched("ml", "bikes", "3") is None


def test_a_classifier_s_error_is_one_minus_its_accuracy() -> None:
    text = exposition("3", 40, accuracy=0.75) + drift_and_training("3", 0.0, 0, accuracy=0.9)
    seen = watched([text], "3")
    assert (seen.quality_error, seen.quality_rows) == (0.25, 40)
    assert seen.training_error == pytest.approx(0.1)
    assert (seen.drift_psi, seen.drift_rows) == (None, 0)  # an empty drift window says nothing
