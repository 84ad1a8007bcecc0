"""turnout-serve reads scoring payloads as `mlflow models serve` does: a differential test.

Hypothesis generates payloads over every signature column type (named columns, optional ones,
tensor specs, no signature) x JSON value kinds (integers in and out of range, integral and
fractional floats, NaN/Infinity literals, numeric and other strings, booleans, null, nested and
deeply nested values) x every input format (dataframe_split with and without columns or index,
dataframe_records, instances, inputs as rows and as columns, params, CSV, parquet), with missing,
extra, duplicated and non-string columns and ragged rows. Each payload goes through MLflow's own
scoring function (`tests.parity.inprocess.mlflow_reads`) and through turnout's predictor on the
fast path and on the general path (`turnout_reads`), and the outcomes must be the same: the same
model input (dtypes and values, NaN equal to NaN) or the same 4xx status.

The only departures allowed are the ones recorded in `tests/parity/parsing.py`, each stated here
as an oracle that looks at MLflow's own result: where MLflow accepts a cell but hands the model a
different value (3.5 -> 3 in a `long` column, "3" -> 3, true -> 1, 2**63 -> -2**63, 1e39 -> inf
in a `float` column, "false" -> True in a `boolean` column, null -> "None"), or a value that is
not of its column's type (a number or a list in a `string` column), turnout answers 400 naming
that column and row; where MLflow's server crashes (500), turnout answers 4xx.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.types import ColSpec, Schema

from tests.parity.inprocess import (
    CSV,
    JSON,
    PARQUET,
    as_matrix,
    mlflow_reads,
    same_input,
    turnout_reads,
)
from tests.parity.payloads import (
    NAMES,
    Deep,
    Payload,
    column_schemas,
    csv_payloads,
    json_payloads,
    parquet_body,
    refused_cells,
    tensor_schemas,
)

PARITY = settings(
    max_examples=900,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check(schema: Schema | None, payload: Payload, content_type: str) -> None:
    theirs = mlflow_reads(schema, payload.body, content_type)
    expected = refused_cells(schema, payload, theirs)
    for fast_path in (True, False):
        ours = turnout_reads(schema, payload.body, content_type, fast_path=fast_path)
        where = f"fast_path={fast_path}\n  mlflow:  {theirs}\n  turnout: {ours}"
        assert ours.status < 500, where
        if expected:
            assert ours.status == 400 and ours.error_code == "BAD_REQUEST", where
            assert any(
                ours.field == name and f"row {row}'s value" in ours.message
                for name, row in expected
            ), where
        elif theirs.status >= 500:
            assert 400 <= ours.status < 500, where  # MLflow's server crashes on it
        elif theirs.status == 200:
            assert ours.status == 200, where
            if ours.fast:
                matrix = as_matrix(theirs.received)
                assert matrix is not None, where
                assert np.array_equal(matrix, ours.received, equal_nan=True), where
                assert list(theirs.received.columns) == [s.name for s in schema.inputs], where
            else:
                assert same_input(theirs.received, ours.received), where
        else:
            assert ours.status == theirs.status, where


# --- the tests -----------------------------------------------------------------------------


@PARITY
@given(data=st.data())
def test_json_payloads_for_column_signatures(data: st.DataObject) -> None:
    schema = data.draw(column_schemas())
    check(schema, data.draw(json_payloads(schema)), JSON)


@settings(PARITY, max_examples=300)
@given(data=st.data())
def test_json_payloads_for_tensor_signatures_and_none(data: st.DataObject) -> None:
    schema = data.draw(tensor_schemas())
    check(schema, data.draw(json_payloads(schema)), JSON)


@settings(PARITY, max_examples=300)
@given(data=st.data())
def test_csv_payloads(data: st.DataObject) -> None:
    schema = data.draw(column_schemas() | tensor_schemas())
    check(schema, data.draw(csv_payloads(schema)), CSV)


parquet_columns = st.sampled_from([
    [1, 2], [3.0, 1.5], [True, False], ["x", "y"], [None, 1.0], [2**40, 1], ["1", "2"],
])  # fmt: skip


@settings(PARITY, max_examples=150)
@given(schema=column_schemas() | tensor_schemas(), columns=st.lists(parquet_columns, min_size=1,
                                                                     max_size=3))  # fmt: skip
def test_parquet_payloads(schema: Schema | None, columns: list[list[Any]]) -> None:
    frame = pd.DataFrame({NAMES[i]: values for i, values in enumerate(columns)})
    check(schema, Payload(parquet_body(frame), None, True), PARQUET)


@pytest.mark.parametrize("depth", [10, 900, 1030, 5000])
@pytest.mark.parametrize("where", ["cell", "columns", "records", "inputs", "document"])
def test_nesting_at_every_depth_is_a_400_or_mlflows_answer(where: str, depth: int) -> None:
    deep = "[" * depth + "1" + "]" * depth
    body = {
        "cell": '{"dataframe_split": {"columns": ["a", "b"], "data": [[%s, 1.0]]}}',
        "columns": '{"dataframe_split": {"columns": [%s, "b"], "data": [[1, 1.0]]}}',
        "records": '{"dataframe_records": [{"a": %s, "b": 1.0}]}',
        "inputs": '{"inputs": %s}',
        "document": '{"dataframe_split": %s}',
    }[where] % deep
    sent = {"a": [Deep(depth)], "b": [1.0]} if where in ("cell", "records") else None
    for schema in (Schema([ColSpec("long", "a"), ColSpec("double", "b")]),
                   Schema([ColSpec("string", "a"), ColSpec("double", "b")]), None):  # fmt: skip
        check(schema, Payload(body.encode(), sent, True), JSON)


@pytest.mark.parametrize(
    ("literal", "kind", "status"),
    [
        (b"NaN", "double", 200),
        (b"Infinity", "double", 200),
        (b"-Infinity", "double", 200),
        (b"NaN", "long", 400),
        (b"18446744073709551616", "double", 200),
        (b"18446744073709551616", "long", 400),
    ],
)
def test_json_literals_orjson_refuses_are_read_as_mlflow_reads_them(
    literal: bytes, kind: str, status: int
) -> None:
    """MLflow decodes with Python's json: NaN/Infinity literals and integers past 64 bits."""
    schema = Schema([ColSpec(kind, "a"), ColSpec("double", "b")])
    body = b'{"dataframe_split": {"columns": ["a", "b"], "data": [[%s, 1.0]]}}' % literal
    assert mlflow_reads(schema, body, JSON).status == status
    check(schema, Payload(body, None, True), JSON)
