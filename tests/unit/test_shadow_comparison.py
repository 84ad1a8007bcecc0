"""How the preview's predictions are compared with the active's (`domain/comparison.py`): read
from the answer bodies the server itself writes, row by row, and kept in the agreement window."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from turnout_serving.domain.comparison import (
    AgreementWindow,
    Incomparable,
    compare,
    predictions_of,
)
from turnout_serving.domain.tensors import encode_output
from turnout_serving.predictor import Scored, predictions_body

NAN = math.nan


def mlflow_answer(raw: object) -> bytes:
    """The body `/invocations` answers for a model that returned `raw`."""
    return predictions_body(Scored(raw=raw, rows=len(raw), columns={}, predictions=None))  # type: ignore[arg-type]


def oip_answer(raw: object) -> bytes:
    return orjson.dumps({"model_name": "m", "model_version": "1", "id": "x",
                         "outputs": [encode_output(raw)]})  # fmt: skip


ANSWERS = {"mlflow": mlflow_answer, "open_inference": oip_answer}


# --- reading answers ------------------------------------------------------------------------


outputs = st.one_of(
    hnp.arrays(np.float64, st.integers(0, 20), elements=st.floats(allow_infinity=False)),
    hnp.arrays(np.int64, st.integers(0, 20), elements=st.integers(-(2**53), 2**53)),
    hnp.arrays(np.bool_, st.integers(1, 20)),
    st.lists(st.text(max_size=8), min_size=1, max_size=20).map(np.array),
    hnp.arrays(np.float64, st.tuples(st.integers(1, 10), st.integers(2, 4)),
               elements=st.floats(0, 1)),
)  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True)
@given(raw=outputs, protocol=st.sampled_from(sorted(ANSWERS)))
def test_predictions_read_back_from_either_protocols_answer_as_the_model_returned_them(
    raw: np.ndarray, protocol: str
) -> None:
    read = predictions_of(protocol, ANSWERS[protocol](raw))
    assert read.shape == raw.shape
    if raw.dtype.kind == "f":
        np.testing.assert_array_equal(read.astype(float), raw)  # NaN where NaN
    else:
        assert read.tolist() == raw.tolist()


@pytest.mark.parametrize(
    ("protocol", "body", "why"),
    [
        ("mlflow", b"not json", "the answer is not JSON"),
        ("mlflow", b'{"choices": [{"text": "hi"}]}', "has no `predictions`"),
        ("mlflow", b'{"predictions": {"a": [1, 2]}}', "the predictions are a dict, not a list"),
        ("mlflow", b'{"predictions": [{"a": 1}, {"a": 2}]}', "not one value or one row of scores per row"),
        ("mlflow", b'{"predictions": [[1, 2], [3]]}', "not a regular array"),
        ("mlflow", b'{"predictions": [[[1]], [[2]]]}', "not one value or one row of scores per row"),
        ("open_inference", b'{"outputs": []}', "the answer has no output tensor"),
        ("open_inference", b'{"outputs": [{"name": "p", "shape": [3], "datatype": "FP64", "data": [1.0, 2.0]}]}', "does not fit its shape"),
    ],
)  # fmt: skip
def test_answers_that_hold_no_predictions_per_row_are_incomparable(
    protocol: str, body: bytes, why: str
) -> None:
    with pytest.raises(Incomparable, match=why):
        predictions_of(protocol, body)


# --- comparing ------------------------------------------------------------------------------


def test_regressors_get_the_absolute_and_relative_difference_per_row() -> None:
    active = np.array([100.0, 0.0, -2.0, NAN, 5.0, 10.0, -1.0])
    preview = np.array([101.0, 0.0, -2.0, NAN, NAN, 12.0, 1.0])
    found = compare(active, preview, tolerance=0.01)
    assert found.kind == "regression"
    np.testing.assert_array_equal(found.abs_diff, [1.0, 0.0, 0.0, 0.0, NAN, 2.0, 2.0])
    np.testing.assert_array_equal(found.rel_diff, [1 / 101, 0.0, 0.0, 0.0, NAN, 2 / 12, 2.0])
    assert found.agree.tolist() == [True, True, True, True, False, False, False]
    assert found.summary() == {
        "kind": "regression", "rows": 7, "agreement": 4 / 7,
        "meanAbsDiff": 5 / 6, "maxAbsDiff": 2.0,
        "meanRelDiff": (1 / 101 + 2 / 12 + 2.0) / 6, "maxRelDiff": 2.0,
    }  # fmt: skip
    assert compare(active, preview, tolerance=0.2).agree.tolist() == [True] * 4 + [
        False,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("active", "preview", "agree"),
    [
        ([0, 1, 2, 2], [0, 2, 2, 1], [True, False, True, False]),
        (["setosa", "virginica"], ["setosa", "versicolor"], [True, False]),
        ([True, False], [True, True], [True, False]),
        ([[1], [0]], [1, 1], [True, False]),  # a one-column matrix is one label per row
    ],
)
def test_classifiers_agree_per_row_on_their_labels(
    active: list[object], preview: list[object], agree: list[bool]
) -> None:
    found = compare(np.array(active), np.array(preview), tolerance=0.0)
    assert (found.kind, found.agree.tolist(), found.abs_diff, found.rel_diff) == (
        "classification", agree, None, None)  # fmt: skip
    assert found.summary() == {"kind": "classification", "rows": len(agree),
                               "agreement": sum(agree) / len(agree)}  # fmt: skip


def test_probabilities_get_the_mean_difference_over_the_classes_and_agree_on_the_top_class() -> (
    None
):
    active = np.array([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1]])
    preview = np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1]])
    found = compare(active, preview, tolerance=0.0)
    assert found.kind == "probabilities"
    np.testing.assert_allclose(found.abs_diff, [0.2 / 3, 0.4 / 3])
    assert found.agree.tolist() == [True, False]
    assert found.summary()["agreement"] == 0.5


def test_integer_labels_against_float_values_are_compared_as_numbers() -> None:
    found = compare(np.array([1, 2]), np.array([1.0, 2.5]), tolerance=0.01)
    assert (found.kind, found.agree.tolist(), found.abs_diff.tolist()) == (  # type: ignore[union-attr]
        "regression", [True, False], [0.0, 0.5])  # fmt: skip


@pytest.mark.parametrize(
    ("active", "preview", "why"),
    [
        ([1.0, 2.0], [1.0], r"the active answered shape \[2\], the preview \[1\]"),
        ([[0.5, 0.5]], [1.0], r"the active answered shape \[1, 2\], the preview \[1\]"),
        ([["a", "b"]], [["a", "c"]], "a matrix of predictions that are not numbers"),
    ],
)
def test_answers_of_other_shapes_are_incomparable(
    active: list[object], preview: list[object], why: str
) -> None:
    with pytest.raises(Incomparable, match=why):
        compare(np.array(active), np.array(preview), tolerance=0.01)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(raw=outputs, tolerance=st.floats(0, 1))
def test_a_preview_that_answers_alike_agrees_on_every_row_with_no_difference(
    raw: np.ndarray, tolerance: float
) -> None:
    found = compare(raw, raw.copy(), tolerance)
    assert found.agree.all()
    assert found.rows == len(raw)
    if found.abs_diff is not None:
        assert (found.abs_diff == 0).all()


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    pair=hnp.arrays(np.float64, st.tuples(st.just(2), st.integers(1, 20)),
                    elements=st.floats(-1e6, 1e6)),
    tolerance=st.floats(0, 1),
)  # fmt: skip
def test_the_comparison_of_regressors_is_symmetric_and_follows_the_tolerance(
    pair: np.ndarray, tolerance: float
) -> None:
    active, preview = pair
    there, back = compare(active, preview, tolerance), compare(preview, active, tolerance)
    assert there.agree.tolist() == back.agree.tolist()
    np.testing.assert_array_equal(there.abs_diff, back.abs_diff)
    for a, p, agreed in zip(active, preview, there.agree, strict=True):
        assert agreed == (a == p or abs(p - a) <= tolerance * max(abs(a), abs(p)))


# --- the agreement window -------------------------------------------------------------------


def test_the_window_holds_the_last_rows_compared() -> None:
    window = AgreementWindow(4)
    assert math.isnan(window.ratio()) and window.rows == 0
    window.add(np.array([True, False]))
    assert (window.ratio(), window.rows) == (0.5, 2)
    window.add(np.array([True, True, True]))  # wraps: [T, T, T] over the oldest T
    assert (window.ratio(), window.rows) == (0.75, 4)
    window.add(np.array([False, False, False, False, False, True]))  # more than it holds
    assert (window.ratio(), window.rows) == (0.25, 4)
    window.add(np.array([], dtype=bool))
    assert (window.ratio(), window.rows) == (0.25, 4)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(size=st.integers(1, 30), batches=st.lists(st.lists(st.booleans(), max_size=40), max_size=20))
def test_the_window_ratio_is_that_of_the_last_size_rows(
    size: int, batches: list[list[bool]]
) -> None:
    window, seen = AgreementWindow(size), []
    for batch in batches:
        window.add(np.array(batch, dtype=bool))
        seen += batch
    last = seen[-size:]
    assert window.rows == len(last)
    if last:
        assert window.ratio() == sum(last) / len(last)
