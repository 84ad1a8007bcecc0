"""The numeric fast path reads each payload shape as MLflow would, or defers to MLflow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from turnout_serving.domain.payload import numeric_frame, read_numeric
from turnout_serving.domain.schema import Column, InputSchema
from turnout_serving.errors import BadRequest, SchemaMismatch

SCHEMA = InputSchema((Column("a", "double"), Column("b", "long")))
EXPECTED = np.array([[1.5, 2.0], [3.0, 4.0]])


@pytest.mark.parametrize(
    "document",
    [
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, 2], [3, 4]]}},
        {"dataframe_split": {"columns": ["b", "a"], "data": [[2, 1.5], [4, 3]]}},
        {"dataframe_split": {"columns": ["a", "b", "x"], "index": [0, 1],
                             "data": [[1.5, 2, "extra"], [3, 4, None]]}},
        {"dataframe_records": [{"a": 1.5, "b": 2}, {"b": 4, "a": 3.0}]},
        {"instances": [{"a": 1.5, "b": 2}, {"a": 3, "b": 4}]},
        {"inputs": {"a": [1.5, 3], "b": [2, 4]}},
        {"inputs": {"a": [1.5, 3], "b": [2, 4]}, "params": {}},
    ],
)  # fmt: skip
def test_reads_every_shape_into_signature_order(document: dict) -> None:
    batch = read_numeric(document, SCHEMA)
    assert batch is not None
    np.testing.assert_array_equal(batch.matrix, EXPECTED)
    assert batch.matrix.dtype == np.float64
    assert batch.names == ("a", "b")
    assert batch.rows == 2
    np.testing.assert_array_equal(batch.columns()["b"], [2.0, 4.0])


@pytest.mark.parametrize(
    ("document", "field", "fragment"),
    [
        ({"dataframe_split": {"columns": ["a"], "data": [[1.0]]}}, "b", "missing inputs ['b']"),
        ({"dataframe_records": [{"a": 1.0}]}, "b", "missing inputs"),
        ({"inputs": {"a": [1.0], "b": [1.5]}}, "b", "expects an integer (long)"),
        ({"inputs": {"a": ["1.0"], "b": [1]}}, "a", "row 0 holds '1.0' (str)"),
        ({"inputs": {"a": [1.0], "b": ["2"]}}, "b", "expects an integer (long) but row 0"),
    ],
)
def test_signature_breaks_name_the_field(document: dict, field: str, fragment: str) -> None:
    with pytest.raises(SchemaMismatch) as caught:
        read_numeric(document, SCHEMA)
    assert caught.value.field == field
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    "document",
    [
        [],  # not an object: MLflow's own message
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2]]}, "inputs": {}},
        {"dataframe_split": {"data": [[1.0, 2]]}},  # positional columns
        {"dataframe_split": {"columns": ["a", "b"], "data": [[None, 1]]}},  # null -> NaN
        {"inputs": {"a": [1.0, True], "b": [1, 2]}},  # MLflow casts booleans to numbers
        {"inputs": {"a": [1.0], "b": [False]}},
        {"instances": [[1.0, 2]]},  # tensors
        {"inputs": [[1.0, 2]]},
        {"inputs": {"a": [1.0], "b": [1, 2]}},  # ragged
        {"inputs": {"a": 1.0, "b": 2}},  # scalars
        {"dataframe_records": [{"a": 1.0, "b": 2}], "messages": []},  # unknown key
        {"dataframe_split": {"columns": ["a", "a"], "data": [[1.0, 2.0]]}},
    ],
)
def test_defers_to_mlflow_for_what_it_does_not_read_exactly(document: object) -> None:
    assert read_numeric(document, SCHEMA) is None


def test_non_fast_schemas_always_defer() -> None:
    schema = InputSchema((Column("a", "double"), Column("c", "string")))
    assert read_numeric({"inputs": {"a": [1.0], "c": ["x"]}}, schema) is None
    optional = InputSchema((Column("a", "double", required=False),))
    assert read_numeric({"inputs": {"a": [1.0]}}, optional) is None


def test_empty_payloads_defer_or_are_refused() -> None:
    assert read_numeric({"dataframe_split": {"columns": ["a", "b"], "data": []}}, SCHEMA) is None
    assert read_numeric({"inputs": {"a": [], "b": []}}, SCHEMA) is None
    with pytest.raises(BadRequest, match="no rows"):
        numeric_frame(pd.DataFrame({"a": np.array([], float), "b": np.array([], int)}), SCHEMA)


def test_numeric_frame_takes_exact_dtypes_only() -> None:
    frame = pd.DataFrame({"b": [2, 4], "a": [1.5, 3.0], "extra": ["x", "y"]})
    batch = numeric_frame(frame, SCHEMA)
    assert batch is not None
    np.testing.assert_array_equal(batch.matrix, EXPECTED)
    assert numeric_frame(frame.astype({"b": float}), SCHEMA) is None  # long column got floats
    assert numeric_frame(frame.drop(columns="a"), SCHEMA) is None
    assert numeric_frame(frame, None) is None


DOUBLES = InputSchema((Column("a", "double"), Column("b", "double")))


@pytest.mark.parametrize(
    ("data", "columns", "expected"),
    [
        ([[1.5, 2], [3, 4.25]], ["a", "b"], [[1.5, 2.0], [3.0, 4.25]]),  # one vectorised step
        ([[2, 1.5], [4.25, 3]], ["b", "a"], [[1.5, 2.0], [3.0, 4.25]]),  # reordered
        ([[1.5, 9, 2]], ["a", "x", "b"], [[1.5, 2.0]]),  # an extra column is ignored
        ([[1.5, "x", 2]], ["a", "x", "b"], [[1.5, 2.0]]),  # ... whatever it holds
    ],
)  # fmt: skip
def test_double_signatures_read_split_rows_in_one_step(data, columns, expected) -> None:  # type: ignore[no-untyped-def]
    batch = read_numeric({"dataframe_split": {"columns": columns, "data": data}}, DOUBLES)
    assert batch is not None
    np.testing.assert_array_equal(batch.matrix, expected)


def test_a_string_among_double_split_rows_still_names_its_column() -> None:
    document = {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0], [3.0, "4"]]}}
    with pytest.raises(SchemaMismatch, match=r"Column 'b' expects a number .* row 1") as info:
        read_numeric(document, DOUBLES)
    assert info.value.field == "b"
