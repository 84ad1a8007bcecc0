"""Work limits read from what a payload's format says, before anything is decoded."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout_serving.domain.limits import BatchLimits, csv_size, json_rows, parquet_size
from turnout_serving.errors import PayloadTooLarge

LIMITS = BatchLimits(max_rows=1000, max_cells=4000)
PARQUET = "application/vnd.apache.parquet"


def parquet(rows: int, columns: int, row_group_size: int | None = None) -> bytes:
    column = pa.array(np.zeros(rows))
    table = pa.table({f"c{i}": column for i in range(columns)})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=row_group_size)
    return sink.getvalue()


def test_a_parquet_bomb_is_refused_from_its_footer():
    bomb = parquet(10**7, 10)
    assert len(bomb) < 1024 * 1024  # ten million rows in well under the 10 MiB body limit
    assert parquet_size(bomb) == (10**7, 10)
    with pytest.raises(PayloadTooLarge, match=r"The Parquet payload holds 10000000 rows; .* "
                                              r"at most 1000 rows .*TURNOUT_MAX_ROWS"):  # fmt: skip
        LIMITS.check_scoring_body(bomb, PARQUET)


@pytest.mark.parametrize(("rows", "columns", "refused"), [(1000, 4, False), (1001, 1, True),
                                                          (400, 11, True), (11, 400, True)])  # fmt: skip
def test_parquet_rows_and_values_are_counted_across_row_groups(rows, columns, refused):
    body = parquet(rows, columns, row_group_size=97)
    assert parquet_size(body) == (rows, columns)
    if refused:
        with pytest.raises(PayloadTooLarge):
            LIMITS.check_scoring_body(body, f"{PARQUET}; charset=utf-8")
    else:
        LIMITS.check_scoring_body(body, PARQUET)


def test_bodies_that_are_not_what_they_claim_are_left_to_the_parser():
    LIMITS.check_scoring_body(b"not parquet" * 1000, PARQUET)
    LIMITS.check_scoring_body(b"{" * 5000, "application/json")
    LIMITS.check_scoring_body(b"\x00" * 5000, "application/octet-stream")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(rows=st.integers(0, 1500), columns=st.integers(1, 12), trailing_newline=st.booleans())
def test_csv_rows_are_its_lines_less_the_header(rows, columns, trailing_newline):
    header = ",".join(f"c{i}" for i in range(columns))
    body = "\n".join([header] + [",".join(["1"] * columns)] * rows) + (
        "\n" if trailing_newline else ""
    )
    assert csv_size(body.encode()) == (rows, columns)
    if rows > 1000 or rows * columns > 4000:
        with pytest.raises(PayloadTooLarge, match="The CSV payload"):
            LIMITS.check_scoring_body(body.encode(), "text/csv")
    else:
        LIMITS.check_scoring_body(body.encode(), "text/csv")


formats = st.sampled_from(
    ["dataframe_split", "dataframe_records", "instances", "inputs", "columns"]
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(fmt=formats, rows=st.integers(1, 1400), columns=st.integers(1, 5))
def test_json_rows_and_values_are_exact_for_each_scoring_format(fmt, rows, columns):
    names = [f"c{i}" for i in range(columns)]
    matrix = [[0.5] * columns for _ in range(rows)]
    document = {
        "dataframe_split": {"dataframe_split": {"columns": names, "data": matrix}},
        "dataframe_records": {"dataframe_records": [dict(zip(names, r, strict=True)) for r in matrix]},
        "instances": {"instances": matrix},
        "inputs": {"inputs": matrix},
        "columns": {"inputs": {n: [0.5] * rows for n in names}},
    }[fmt]  # fmt: skip
    assert json_rows(document) == rows
    values = rows * columns + (columns if fmt == "dataframe_split" else 0)  # + the column names
    if rows > 1000 or values > 4000:
        with pytest.raises(PayloadTooLarge, match="The JSON payload"):
            LIMITS.check_scoring_body(orjson.dumps(document), "application/json")
    else:
        LIMITS.check_scoring_body(orjson.dumps(document), "application/json")
