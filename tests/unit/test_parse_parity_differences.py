"""Every deliberate reading difference in tests/parity/parsing.py exists exactly as stated: its
example goes to MLflow's scoring function and to turnout's predictor (fast and general path), and
both answers are asserted."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from mlflow.types import ColSpec, Schema

from tests.parity.inprocess import CSV, JSON, Outcome, mlflow_reads, turnout_reads
from tests.parity.parsing import PARSING


@dataclass(frozen=True)
class Case:
    schema: Schema
    body: bytes
    mlflow: Callable[[Outcome], bool]  # MLflow's answer, as the record states it
    column: str | None = None  # turnout's 400 names this column and row 0 ...
    message: str = ""  # ... or says this
    content_type: str = JSON


def gets(column: str, *values: Any) -> Callable[[Outcome], bool]:
    """MLflow answered 200 and the model received exactly `values` in `column`."""

    def check(outcome: Outcome) -> bool:
        if outcome.status != 200:
            return False
        got = outcome.received[column].tolist()
        return len(got) == len(values) and all(
            type(g) is type(v) and (g == v or (isinstance(v, float) and math.isnan(v)))
            for g, v in zip(got, values, strict=True)
        )

    return check


def crashes(error: str) -> Callable[[Outcome], bool]:
    """MLflow's scoring server lets `error` escape: its app answers 500."""
    return lambda outcome: outcome.status == 500 and outcome.error_code == error


def schema(**kinds: str) -> Schema:
    return Schema([ColSpec(kind, name) for name, kind in kinds.items()])


DEEP = 5000
CASES = {
    "fraction-into-integer": Case(
        schema(season="long"),
        b'{"dataframe_split": {"columns": ["season"], "data": [[3.5]]}}',
        gets("season", 3),
        "season",
    ),
    "string-into-integer": Case(
        schema(season="long"),
        b'{"dataframe_records": [{"season": "3"}]}',
        gets("season", 3),
        "season",
    ),
    "boolean-into-number": Case(
        schema(temp="double"), b'{"inputs": {"temp": [true]}}', gets("temp", 1.0), "temp"
    ),
    "integer-out-of-range": Case(
        schema(count="long"),
        b'{"dataframe_split": {"columns": ["count"], "data": [[9223372036854775808]]}}',
        gets("count", -9223372036854775808),
        "count",
    ),
    "big-integer-beside-floats": Case(
        schema(id="long"),
        b'{"dataframe_records": [{"id": 9007199254740993}, {"id": 3.0}]}',
        gets("id", 9007199254740992, 3),
        "id",
    ),
    "float32-overflow": Case(
        schema(x="float"), b'{"dataframe_records": [{"x": 1e39}]}', gets("x", math.inf), "x"
    ),
    "not-a-boolean": Case(
        schema(member="boolean"),
        b'{"dataframe_records": [{"member": "false"}]}',
        gets("member", True),
        "member",
    ),
    "not-a-string": Case(
        schema(sex="string"), b'{"dataframe_records": [{"sex": 3}]}', gets("sex", 3), "sex"
    ),
    "null-into-string": Case(
        schema(sex="string"), b'{"inputs": {"sex": [null]}}', gets("sex", "None"), "sex"
    ),
    "nested-value": Case(
        schema(sex="string"),
        b'{"dataframe_records": [{"sex": ["f", "m"]}]}',
        gets("sex", ["f", "m"]),
        "sex",
    ),
    "empty-list-into-number": Case(
        schema(temp="double"), b'{"instances": [{"temp": []}]}', gets("temp", math.nan), "temp"
    ),
    "csv-boolean-into-number": Case(
        schema(season="long", temp="double"),
        b"season,temp\ntrue,0.3\n",
        gets("season", 1),
        "season",
        content_type=CSV,
    ),
    "deep-nesting": Case(
        schema(a="double"),
        b'{"inputs": ' + b"[" * DEEP + b"1" + b"]" * DEEP + b"}",
        crashes("RecursionError"),
        message="The payload is nested too deeply to read",
    ),
    "unhashable-column-name": Case(
        schema(season="long", temp="double"),
        b'{"dataframe_split": {"columns": [["season"], "temp"], "data": [[3, 0.3]]}}',
        crashes("TypeError"),
        message="The payload cannot be read as a DataFrame or tensors: TypeError: unhashable",
    ),
}


def test_every_recorded_difference_is_checked_here() -> None:
    assert sorted(d.key for d in PARSING) == sorted(CASES)


@pytest.mark.parametrize("key", sorted(CASES))
@pytest.mark.parametrize("fast_path", [True, False], ids=["fast path", "general path"])
def test_difference_exists_as_recorded(key: str, fast_path: bool) -> None:
    case = CASES[key]
    theirs = mlflow_reads(case.schema, case.body, case.content_type)
    assert case.mlflow(theirs), theirs
    ours = turnout_reads(case.schema, case.body, case.content_type, fast_path=fast_path)
    assert ours.status == 400, ours
    if case.column is not None:
        assert (ours.error_code, ours.field) == ("BAD_REQUEST", case.column), ours
        assert ours.message.startswith(f"Column '{case.column}' ("), ours
        assert "cannot take row 0's value" in ours.message, ours
    else:
        assert ours.message.startswith(case.message), ours
