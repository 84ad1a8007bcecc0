import threading

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from turnout_serving.domain.drift_profile import build_profile
from turnout_serving.domain.drift_stats import compute
from turnout_serving.domain.drift_window import DriftWindow
from turnout_serving.drift_metrics import DriftCollector, wire_drift

HUNDRED = np.arange(1.0, 101.0)
LABELS = {"model": "diabetes", "version": "3", "color": "blue"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def profile():
    frame = pd.DataFrame({"x": HUNDRED, "city": ["a"] * 50 + ["b"] * 50})
    return build_profile(frame, HUNDRED)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def setup(profile, clock):
    window = DriftWindow(profile, window_rows=100, blocks=10)
    collector = DriftCollector(window, profile, LABELS, clock=clock, min_interval=1.0)
    registry = CollectorRegistry()
    registry.register(collector)
    return registry, collector, window


def value(registry, name, **labels):
    return registry.get_sample_value(name, {**LABELS, **labels})


def test_every_series_reads_no_drift_before_any_traffic(setup, profile):
    registry, _, _ = setup
    for feature, test in [("x", "ks"), ("city", "chi2")]:
        assert value(registry, "turnout_feature_drift_p_value", feature=feature, test=test) == 1.0
        assert value(registry, "turnout_feature_drift_statistic", feature=feature, test=test) == 0
        assert value(registry, "turnout_feature_drift_psi", feature=feature) == 0.0
        assert value(registry, "turnout_feature_missing_values_total", feature=feature) == 0.0
        assert value(registry, "turnout_feature_unseen_category_total", feature=feature) == 0.0
    assert value(registry, "turnout_prediction_drift_p_value") == 1.0
    assert value(registry, "turnout_prediction_drift_psi") == 0.0
    assert value(registry, "turnout_drift_detected") == 0.0
    assert value(registry, "turnout_drift_window_rows") == 0.0
    info = {"reference_digest": profile.digest, "reference_rows": "100"}
    assert value(registry, "turnout_drift_reference_info", **info) == 1.0


def test_series_carry_the_report_and_the_lifetime_counters(setup, profile):
    registry, collector, window = setup
    collector.observe(
        {"x": np.r_[HUNDRED[:38], np.nan, np.nan], "city": np.array(["a"] * 39 + ["z"], object)},
        HUNDRED[:40],
    )
    report = collector.report()  # bins the queue
    assert report == compute(window, profile)
    x, city = report.features
    assert value(registry, "turnout_feature_drift_p_value", feature="x", test="ks") == x.p_value
    assert value(registry, "turnout_feature_drift_statistic", feature="x", test="ks") == 0.62
    assert value(registry, "turnout_feature_drift_p_value", feature="city", test="chi2") == (
        city.p_value
    )
    assert value(registry, "turnout_feature_drift_psi", feature="city") == city.psi
    assert value(registry, "turnout_prediction_drift_p_value") == report.prediction.p_value
    assert value(registry, "turnout_feature_missing_values_total", feature="x") == 2.0
    assert value(registry, "turnout_feature_unseen_category_total", feature="city") == 1.0
    assert value(registry, "turnout_drift_window_rows") == 40.0
    assert value(registry, "turnout_drift_detected") == 1.0


def test_the_report_is_recomputed_at_most_once_per_interval(setup, clock):
    registry, collector, _ = setup  # registering did not compute anything
    collector.observe({"x": HUNDRED[:10]})
    assert value(registry, "turnout_drift_window_rows") == 10.0
    collector.observe({"x": HUNDRED[10:20]})
    clock.now = 0.999
    assert value(registry, "turnout_drift_window_rows") == 10.0  # cached
    clock.now = 1.0
    assert value(registry, "turnout_drift_window_rows") == 20.0
    assert collector.report().window_rows == 20


def test_without_predictions_in_the_profile_there_are_no_prediction_series():
    profile = build_profile(pd.DataFrame({"x": HUNDRED}))
    registry = CollectorRegistry()
    registry.register(DriftCollector(DriftWindow(profile, 100, 10), profile, LABELS))
    assert value(registry, "turnout_prediction_drift_p_value") is None
    assert value(registry, "turnout_feature_drift_p_value", feature="x", test="ks") == 1.0


def test_the_model_labels_are_required(profile):
    with pytest.raises(ValueError, match="color"):
        DriftCollector(DriftWindow(profile, 100, 10), profile, {"model": "m", "version": "1"})


def test_observing_while_scraping_from_other_threads_loses_no_row(setup, clock):
    registry, collector, _ = setup
    failures = []

    def observe() -> None:
        try:
            for _ in range(200):
                collector.observe({"x": HUNDRED[:3], "city": np.array(["a", "b", None], object)})
        except Exception as error:  # pragma: no cover - reported below
            failures.append(error)

    threads = [threading.Thread(target=observe) for _ in range(2)]
    for thread in threads:
        thread.start()
    for step in range(50):
        clock.now = float(step)
        list(registry.collect())
    for thread in threads:
        thread.join(timeout=10)
    clock.now = 100.0
    assert failures == []
    assert value(registry, "turnout_feature_missing_values_total", feature="city") == 400.0
    assert value(registry, "turnout_drift_window_rows") == 100.0


def test_queued_batches_bin_exactly_as_batches_observed_one_by_one(profile, clock):
    rng = np.random.default_rng(3)
    batches = []
    for size in (1, 1, 7, 30, 1, 64, 3):
        x = rng.normal(50, 30, size)
        x[rng.random(size) < 0.1] = np.nan
        city = rng.choice(np.array(["a", "b", "zz", None], dtype=object), size)
        batches.append(({"x": x, "city": city}, rng.normal(50, 30, size)))
    batches.insert(3, ({"x": np.array([5.0])}, None))  # another column set breaks the run
    direct = DriftWindow(profile, window_rows=100, blocks=10)
    queued = DriftWindow(profile, window_rows=100, blocks=10)
    collector = DriftCollector(queued, profile, LABELS, clock=clock, flush_rows=10**6)
    for columns, predictions in batches:
        direct.observe(columns, predictions)
        collector.observe(columns, predictions)
    assert queued.rows == 0  # nothing binned before a report
    assert collector.report() == compute(direct, profile)
    assert queued.missing_total == direct.missing_total
    assert queued.unseen_total == direct.unseen_total


def test_the_queue_is_binned_once_it_holds_flush_rows(profile, clock):
    window = DriftWindow(profile, window_rows=100, blocks=10)
    collector = DriftCollector(window, profile, LABELS, clock=clock, flush_rows=5)
    for _ in range(4):
        collector.observe({"x": np.array([1.0])}, None)
    assert window.rows == 0
    collector.observe({"x": np.array([1.0])}, None)
    assert window.rows == 5


def test_a_failure_while_binning_turns_drift_off_instead_of_failing_the_caller(profile, clock):
    """Drift observes the serving path and must never break it: the request that met the
    failure goes on, the caller hears why once, and the drift series are withdrawn."""
    reasons: list[str] = []
    window = DriftWindow(profile, window_rows=100, blocks=10)
    collector = DriftCollector(window, profile, LABELS, clock=clock, flush_rows=1,
                               on_failure=reasons.append)  # fmt: skip
    registry = CollectorRegistry()
    registry.register(collector)
    collector.observe({"x": np.array([1.0, 2.0])}, np.array([1.0, 2.0, 3.0]))  # ragged: raises
    assert reasons == ["ValueError: the columns of one batch differ in length: [2, 3]"]
    assert collector.failure == reasons[0]
    collector.observe({"x": np.array([1.0])}, np.array([1.0]))  # ignored from now on
    assert window.rows == 0
    assert value(registry, "turnout_drift_window_rows") is None
    assert value(registry, "turnout_drift_detected") is None
    assert reasons == [reasons[0]]


def test_a_failure_while_computing_at_scrape_time_turns_drift_off(profile, clock):
    reasons: list[str] = []
    window = DriftWindow(profile, window_rows=100, blocks=10)
    collector = DriftCollector(window, profile, LABELS, clock=clock, flush_rows=10**6,
                               on_failure=reasons.append)  # fmt: skip
    collector.observe({"x": np.array([1.0, 2.0])}, np.array([1.0, 2.0, 3.0]))  # queued only
    assert reasons == []
    registry = CollectorRegistry()
    registry.register(collector)  # registering scrapes nothing: describe() has no samples
    assert value(registry, "turnout_drift_window_rows") is None  # the scrape binned and failed
    assert reasons == ["ValueError: the columns of one batch differ in length: [2, 3]"]


@pytest.mark.parametrize(
    ("enabled", "reference", "status"),
    [
        (False, {"features": []}, "off: disabled by settings"),
        (True, None, "off: no reference profile logged for run r1; "
                     "call turnout_serving.reference.log_reference(X_train) when training"),
        (True, {"features": "not a list"}, "off: the reference profile cannot be used: "),
    ],
)  # fmt: skip
def test_wiring_drift_never_raises_and_says_why_it_is_off(enabled, reference, status):
    collector, said = wire_drift(enabled, reference, "r1", 1001, LABELS, lambda reason: None)
    assert collector is None
    assert said.startswith(status)


@pytest.mark.parametrize("window_rows", [20, 999, 1001, 1003, 2000, 4099])
def test_wiring_drift_takes_any_window_size(profile, window_rows):
    collector, said = wire_drift(True, profile.to_dict(), "r1", window_rows, LABELS, print)
    assert said == f"on: reference {profile.digest}"
    assert collector is not None
    collector.observe({"x": np.ones(window_rows + 7)})
    assert collector.report().window_rows <= window_rows
