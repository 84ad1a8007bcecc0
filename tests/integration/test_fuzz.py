"""Hypothesis-driven payload fuzzing against real servers: every answer is 2xx or 4xx, never 5xx,
and the process keeps serving. Bounded: a fixed number of examples per model, no deadline games."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Process

pytestmark = pytest.mark.slow

DIABETES_COLUMNS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
MIXED_COLUMNS = ["age", "bmi", "bp", "sex", "band"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
    st.sampled_from(["f", "m", "low", "mid", "1.5", "NaN", ""]),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def tables(columns: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    names = st.lists(st.sampled_from([*columns, "x", ""]), max_size=len(columns) + 2)
    cells = st.one_of(st.floats(-5, 5), st.integers(-3, 3), scalars)
    split = st.builds(
        lambda cols, rows: {"columns": cols, "data": rows},
        names, st.lists(st.lists(cells, max_size=len(columns) + 2), max_size=4),
    )  # fmt: skip
    records = st.lists(st.dictionaries(st.sampled_from([*columns, "x"]), cells, max_size=8),
                       max_size=4)  # fmt: skip
    inputs = st.dictionaries(
        st.sampled_from([*columns, "x"]), st.lists(cells, max_size=3), max_size=8
    )
    body = st.one_of(
        st.builds(lambda v: {"dataframe_split": v}, split | json_values),
        st.builds(lambda v: {"dataframe_records": v}, records | json_values),
        st.builds(lambda v: {"instances": v}, records | json_values),
        st.builds(lambda v: {"inputs": v}, inputs | json_values),
        st.builds(lambda v, p: {"dataframe_records": v, "params": p}, records, json_values),
        json_values,
    )
    return body


content_types = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "text/csv", "text/plain",
    "application/json; charset=latin-1", "application/vnd.apache.parquet",
])  # fmt: skip
raw_bodies = st.one_of(st.binary(max_size=64), st.text(max_size=64).map(str.encode))


def check(proc: Process, body: bytes, content_type: str, path: str = "/invocations") -> None:
    answer = httpx.post(f"{proc.url}{path}", content=body,
                        headers={"content-type": content_type}, timeout=30)  # fmt: skip
    assert answer.status_code < 500, (path, body[:300], content_type, answer.text[:300])
    assert answer.status_code in (200, 400, 413, 415, 422), answer.status_code


datatypes = st.sampled_from(
    ["FP64", "FP32", "INT64", "INT32", "BOOL", "BYTES", "UINT8", "FP16", "x"]
)
oip_tensors = st.fixed_dictionaries(
    {"name": st.sampled_from([*DIABETES_COLUMNS, "input-0", "x"]),
     "shape": st.lists(st.integers(-1, 4), max_size=3) | json_values,
     "datatype": datatypes,
     "data": st.lists(st.one_of(st.floats(-5, 5), scalars), max_size=6) | json_values},
)  # fmt: skip
oip_requests = st.one_of(
    st.builds(lambda t: {"inputs": t}, st.lists(oip_tensors, max_size=11)),
    st.builds(lambda t, p: {"id": "x", "inputs": t, "parameters": p},
              st.lists(oip_tensors, max_size=3), json_values),
    json_values,
)  # fmt: skip
feedback = st.one_of(
    st.fixed_dictionaries({"request_id": scalars, "label": json_values}),
    st.lists(st.fixed_dictionaries({"request_id": scalars, "label": scalars}), max_size=4),
    json_values,
)


FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])  # fmt: skip


@pytest.fixture(scope="module")
def diabetes(serve_factory) -> Process:  # type: ignore[no-untyped-def]
    return serve_factory("models:/Diabetes/1")


@pytest.fixture(scope="module")
def mixed(serve_factory) -> Process:  # type: ignore[no-untyped-def]
    return serve_factory("models:/Mixed/1")


@FUZZ
@given(document=tables(DIABETES_COLUMNS), content_type=content_types)
def test_structured_payloads_never_5xx_numeric_model(
    diabetes: Process, document: Any, content_type: str
) -> None:
    check(diabetes, json.dumps(document).encode(), content_type)


@FUZZ
@given(document=tables(MIXED_COLUMNS), content_type=content_types)
def test_structured_payloads_never_5xx_mixed_model(
    mixed: Process, document: Any, content_type: str
) -> None:
    check(mixed, json.dumps(document).encode(), content_type)


@FUZZ
@given(body=raw_bodies, content_type=content_types)
def test_raw_bytes_never_5xx(diabetes: Process, body: bytes, content_type: str) -> None:
    check(diabetes, body, content_type)


@FUZZ
@given(document=oip_requests)
def test_open_inference_requests_never_5xx(diabetes: Process, document: Any) -> None:
    check(diabetes, json.dumps(document).encode(), "application/json", "/v2/models/Diabetes/infer")


@FUZZ
@given(document=feedback)
def test_feedback_never_5xx(diabetes: Process, document: Any) -> None:
    check(diabetes, json.dumps(document).encode(), "application/json", "/feedback")


def test_servers_still_serve_after_fuzzing(diabetes: Process, mixed: Process) -> None:
    for proc in (diabetes, mixed):
        assert proc.popen.poll() is None
        assert httpx.get(f"{proc.url}/ping").status_code == 200
