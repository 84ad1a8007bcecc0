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
    "document",
    [
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, 2.0], [3, 4.0]]}},
        {"dataframe_records": [{"a": 1.5, "b": 2.0}, {"b": 4, "a": 3.0}]},
        {"inputs": {"a": [1.5, 3], "b": [2.0, 4.0]}},
    ],
)
def test_integral_floats_in_long_columns_are_their_integers(document: dict) -> None:
    batch = read_numeric(document, SCHEMA)
    assert batch is not None
    np.testing.assert_array_equal(batch.matrix, EXPECTED)


@pytest.mark.parametrize(
    ("document", "field", "message"),
    [
        ({"inputs": {"a": [1.0], "b": [1.5]}}, "b",
         "Column 'b' (long) cannot take row 0's value 1.5: a fractional number would be truncated."),
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2], [1.0, 2**63]]}}, "b",
         "Column 'b' (long) cannot take row 1's value 9223372036854775808: out of the long range, "
         "it would wrap around."),
        ({"dataframe_records": [{"a": True, "b": 1}]}, "a",
         "Column 'a' (double) cannot take row 0's value True: a boolean would become 0.0 or 1.0."),
        ({"inputs": {"a": [1.0], "b": ["2"]}}, "b",
         "Column 'b' (long) cannot take row 0's value '2': a string would be read as a number."),
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[0.5, 2**53 + 1], [1, 2.0]]}}, "b",
         "Column 'b' (long) cannot take row 0's value 9007199254740993: beside numbers written as "
         "floats it would be rounded to a float64."),
        ({"inputs": {"a": [[1.0]], "b": [1]}}, "a",
         "Column 'a' (double) cannot take row 0's value [...]: a list or an object is not a "
         "single value."),
    ],
)  # fmt: skip
def test_values_mlflow_would_change_are_refused_naming_column_and_row(
    document: dict, field: str, message: str
) -> None:
    with pytest.raises(SchemaMismatch) as caught:
        read_numeric(document, SCHEMA)
    assert caught.value.field == field
    assert caught.value.message == message


@pytest.mark.parametrize(
    "document",
    [
        [],  # not an object: MLflow's own message
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2]]}, "inputs": {}},
        {"dataframe_split": {"data": [[1.0, 2]]}},  # positional columns
        {"dataframe_split": {"columns": ["a"], "data": [[1.0]]}},  # missing column: MLflow's say
        {"dataframe_records": [{"a": 1.0}]},
        {"dataframe_split": {"columns": ["a", "b"], "data": [[None, 1]]}},  # null -> NaN
        {"inputs": {"a": ["1.0"], "b": [1]}},  # MLflow reads "1.0" as 1.0 in a double column
        {"inputs": {"a": [1.0], "b": ["x"]}},  # ... and refuses "x" with its own message
        {"inputs": {"a": [1.0], "b": [float("nan")]}},  # ... and NaN in a long column
        {"dataframe_split": {"columns": [["a"], "b"], "data": [[1.0, 2]]}},  # unhashable name
        {"dataframe_split": {"columns": [1, "b"], "data": [[1.0, 2]]}},
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


def test_a_string_among_double_split_rows_defers_to_mlflow() -> None:
    document = {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0], [3.0, "4"]]}}
    assert read_numeric(document, DOUBLES) is None  # MLflow reads "4" as 4.0


def test_tutorial_integral_floats_take_the_vectorised_read() -> None:
    schema = InputSchema((Column("season", "long"), Column("temp", "double")))
    document = {"dataframe_split": {"columns": ["temp", "season"], "data": [[0.3, 3.0]]}}
    batch = read_numeric(document, schema)
    assert batch is not None
    np.testing.assert_array_equal(batch.matrix, [[3.0, 0.3]])
