"""Joining labels to predictions: bounded in time and rows, exact live quality."""

from __future__ import annotations

import decimal
import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout_serving.domain.feedback import (
    FeedbackResult,
    LiveQuality,
    PredictionStore,
    QualityWindow,
    labels_for,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_label_matches_once_then_is_expired_not_unknown() -> None:
    store = PredictionStore(ttl_seconds=60, max_rows=10, clock=Clock())
    store.record("r1", np.array([1.0, 2.0]))
    result, predictions = store.take("r1")
    assert result is FeedbackResult.MATCHED
    np.testing.assert_array_equal(predictions, [1.0, 2.0])
    assert store.take("r1") == (FeedbackResult.UNKNOWN, None)
    assert store.take("never-seen") == (FeedbackResult.UNKNOWN, None)


def test_predictions_expire_after_the_ttl() -> None:
    clock = Clock()
    store = PredictionStore(ttl_seconds=60, max_rows=10, clock=clock)
    store.record("old", np.array([1.0]))
    clock.now = 30
    store.record("young", np.array([2.0]))
    clock.now = 61
    assert store.take("old") == (FeedbackResult.EXPIRED, None)
    assert store.take("young")[0] is FeedbackResult.MATCHED


def test_the_row_budget_evicts_the_oldest_requests_first() -> None:
    store = PredictionStore(ttl_seconds=60, max_rows=5, clock=Clock())
    store.record("a", np.zeros(2))
    store.record("b", np.zeros(2))
    store.record("c", np.zeros(2))  # 6 rows > 5: "a" goes
    assert (len(store), store.rows) == (2, 4)
    assert store.take("a")[0] is FeedbackResult.EXPIRED
    assert store.take("b")[0] is FeedbackResult.MATCHED


def test_regression_quality_is_exact_over_the_window() -> None:
    window = QualityWindow(size=3, task="regression")
    assert window.quality() == LiveQuality(rows=0)
    window.add([10.0, 20.0], [12, 20])
    window.add([30.0, 40.0], [27.0, 40.0])  # window keeps the last 3: errors 0, 3, 0
    quality = window.quality()
    assert quality.rows == 3
    assert quality.mae == pytest.approx(1.0)
    assert quality.rmse == pytest.approx(math.sqrt(3.0))
    assert quality.accuracy is None


def test_classification_accuracy_compares_by_value() -> None:
    window = QualityWindow(size=10, task="classification")
    window.add(list(np.array([0, 1, 2, 1])), [0, 1, 1, 1.0])
    assert window.quality() == LiveQuality(rows=4, accuracy=0.75)


@pytest.mark.parametrize(
    ("predictions", "label", "task", "expected"),
    [
        (np.array([1.0]), 2.5, "regression", [2.5]),
        (np.array([1.0, 2.0]), [3, 4.5], "regression", [3, 4.5]),
        (np.array([1.0, 2.0]), 3.0, "regression", None),  # one label for two rows
        (np.array([1.0]), "3", "regression", None),
        (np.array([1.0]), True, "regression", None),
        (np.array(["a"]), "b", "classification", ["b"]),
        (np.array([1]), None, "classification", None),
    ],
)
def test_labels_must_fit_the_rows_and_the_task(
    predictions: np.ndarray, label: object, task: str, expected: list | None
) -> None:
    assert labels_for(predictions, label, task) == expected


def exact_quality(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    """MAE and RMSE in decimal arithmetic with an exponent range far past float64's."""
    with decimal.localcontext() as ctx:
        ctx.prec, ctx.Emax, ctx.Emin = 60, 10**6, -(10**6)
        errors = [abs(decimal.Decimal(p) - decimal.Decimal(y)) for p, y in pairs]
        mae = sum(errors) / len(errors)
        rmse = (sum(e * e for e in errors) / len(errors)).sqrt()
        return float(mae), float(rmse)


finite = st.floats(allow_nan=False, allow_infinity=False)
labels = st.one_of(
    finite, st.floats(1e300, 1.7976931348623157e308), st.floats(-1e-300, 1e-300),
    st.integers(-(2**80), 2**80), st.sampled_from([5e-324, -5e-324, 1.7976931348623157e308]),
)  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True)
@given(pairs=st.lists(st.tuples(st.floats(-1e6, 1e6), labels), min_size=1, max_size=20))
def test_live_quality_is_finite_and_exact_for_any_label_it_accepts(pairs) -> None:
    """Huge (1e308), tiny (5e-324) and integer labels: a label is taken when its error is a
    float64, and then MAE and RMSE are exact to float precision, never +Inf."""
    window = QualityWindow(size=100, task="regression")
    taken = []
    for prediction, label in pairs:
        accepted = labels_for(np.array([prediction]), label, "regression")
        error = decimal.Decimal(prediction) - decimal.Decimal(label)
        assert (accepted is not None) == (abs(error) <= decimal.Decimal(sys.float_info.max))
        if accepted is not None:
            window.add([prediction], accepted)
            taken.append((prediction, float(label)))
    quality = window.quality()
    if not taken:
        assert quality == LiveQuality(rows=0)
        return
    mae, rmse = exact_quality(taken)
    assert math.isfinite(quality.mae) and math.isfinite(quality.rmse)
    assert quality.mae == pytest.approx(mae, rel=1e-12, abs=1e-300)
    assert quality.rmse == pytest.approx(rmse, rel=1e-12, abs=1e-300)


def test_a_label_of_1e308_gives_a_large_finite_rmse() -> None:
    window = QualityWindow(size=10, task="regression")
    for label in (1e308, 1e308, 150.0):
        window.add([150.0], labels_for(np.array([150.0]), label, "regression"))
    quality = window.quality()
    assert quality.rmse == pytest.approx(math.sqrt(2 / 3) * (1e308 - 150.0))
    assert quality.mae == pytest.approx(2 / 3 * 1e308)
    assert labels_for(np.array([-1e308]), 1.7e308, "regression") is None  # error overflows


@pytest.mark.parametrize(
    "label", ["1.5", None, [], {"value": 1.0}, [[1.0]], True, float("nan"), float("inf")]
)
def test_labels_that_are_not_one_finite_number_per_row_are_invalid(label) -> None:
    assert labels_for(np.array([1.0]), label, "regression") is None
