"""Hypothesis-driven payload fuzzing against real servers: every answer is 2xx or 4xx, never 5xx,
in the protocol of the endpoint asked, and counted; the process keeps serving. Bounded: a fixed
number of examples per model, no deadline games."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
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
    check_error_form(answer)


def check_error_form(answer: httpx.Response) -> None:
    """An error answers in the protocol of the endpoint asked: the Open Inference Protocol's
    `{"error": <message>}` under /v2, MLflow's `{"error_code", "message", ...}` elsewhere."""
    if answer.status_code < 400:
        return
    if answer.status_code == 415 and not answer.request.url.path.startswith("/v2/"):
        assert answer.headers["content-type"].startswith("text/plain"), answer.text[:200]
        return  # MLflow's bare 415 message
    assert answer.headers["content-type"] == "application/json", answer.text[:200]
    error = answer.json()
    if answer.request.url.path.startswith("/v2/"):
        assert list(error) == ["error"] and isinstance(error["error"], str), error
    else:
        assert isinstance(error["error_code"], str) and isinstance(error["message"], str), error
        allowed = {"error_code", "message", "error_class", "sqlstate", "request_id"}
        assert set(error) <= allowed, error


def answers_counted(proc: Process) -> Counter[tuple[str, str]]:
    """`turnout_inference_requests_total` by (endpoint, code), from the server's /metrics."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in httpx.get(f"{proc.url}/metrics").text.splitlines():
        if line.startswith("turnout_inference_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            counts[(labels["endpoint"], labels["code"])] = int(float(line.rsplit(" ", 1)[1]))
    return counts


datatypes = st.sampled_from(
    ["FP64", "FP32", "INT64", "INT32", "BOOL", "BYTES", "UINT8", "FP16", "x"]
)


def nested(depth: int) -> Any:
    data: Any = 0.5
    for _ in range(depth):
        data = [data]
    return data


# Hostile declarations: dimensions past 2**64, products that overflow int64 (2**40 x 2**40 is 0
# in numpy), datatypes that are lists or objects, data nested up to a thousand levels.
dimensions = st.one_of(
    st.integers(-1, 4), st.sampled_from([2**31, 2**32, 2**40, 2**63, 2**64, 2**70]),
    st.booleans(), st.floats(0, 4), st.text(max_size=2),
)  # fmt: skip
oip_tensors = st.fixed_dictionaries(
    {"name": st.sampled_from([*DIABETES_COLUMNS, "input-0", "x"]) | json_values,
     "shape": st.lists(dimensions, max_size=4) | json_values,
     "datatype": datatypes | json_values,
     "data": st.lists(st.one_of(st.floats(-5, 5), scalars), max_size=6)
             | st.integers(1, 1000).map(nested) | json_values},
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


def body_of(document: Any) -> bytes:
    return json.dumps(document).encode()


inference_requests = st.one_of(
    st.tuples(st.just("POST"), st.just("/invocations"), tables(DIABETES_COLUMNS).map(body_of),
              content_types),
    st.tuples(st.just("POST"), st.just("/invocations"), raw_bodies, content_types),
    st.tuples(st.just("POST"), st.sampled_from(["/v2/models/Diabetes/infer",
              "/v2/models/Diabetes/versions/1/infer", "/v2/models/Other/infer",
              "/v2/models/Diabetes/versions/9/infer"]), oip_requests.map(body_of),
              st.just("application/json")),
    st.tuples(st.just("POST"), st.just("/feedback"), feedback.map(body_of),
              st.just("application/json")),
    st.tuples(st.sampled_from(["GET", "PUT", "DELETE"]),
              st.sampled_from(["/invocations", "/feedback", "/v2/models/Diabetes/infer"]),
              st.just(b""), st.just("application/json")),
)  # fmt: skip


@FUZZ
@given(requests=st.lists(inference_requests, min_size=1, max_size=5))
def test_every_answer_is_counted_by_endpoint_and_code(
    diabetes: Process, requests: list[tuple[str, str, bytes, str]]
) -> None:
    """`turnout_inference_requests_total` rises by exactly the answers given, by endpoint and
    code: handler errors, router 404/405s, validation and unexpected errors alike (the
    error-ratio alert divides by it)."""
    before = answers_counted(diabetes)
    answered: Counter[tuple[str, str]] = Counter()
    for method, path, body, content_type in requests:
        answer = httpx.request(method, f"{diabetes.url}{path}", content=body,
                               headers={"content-type": content_type}, timeout=30)  # fmt: skip
        endpoint = "v2_infer" if path.startswith("/v2/") else path.lstrip("/")
        answered[(endpoint, str(answer.status_code))] += 1
        if method == "POST":
            check_error_form(answer)
    after = answers_counted(diabetes)
    assert after - before == answered


labels = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 1.7976931348623157e308, 5e-324, -5e-324, 1e-300]),
    st.integers(-(2**80), 2**80), st.text(max_size=4), json_values,
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=3),
)  # fmt: skip
literals = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "nan", "1e-999"])


@FUZZ
@given(label=labels, literal=literals, as_literal=st.booleans())
def test_any_label_leaves_live_quality_finite(diabetes: Process, label: Any, literal: str,
                                              as_literal: bool) -> None:  # fmt: skip
    """Huge, tiny, non-finite literals, strings, nested values: feedback answers 200 or 400,
    and the live MAE and RMSE stay finite (or NaN before the first accepted label)."""
    request_id = f"label-{abs(hash((repr(label), literal, as_literal)))}"
    scored = httpx.post(f"{diabetes.url}/invocations", headers={"X-Request-Id": request_id},
                        json={"inputs": {c: [0.01] for c in DIABETES_COLUMNS}})  # fmt: skip
    assert scored.status_code == 200
    body = (
        f'{{"request_id": "{request_id}", "label": {literal}}}'.encode()
        if as_literal
        else json.dumps({"request_id": request_id, "label": label}).encode()
    )
    answer = httpx.post(f"{diabetes.url}/feedback", content=body,
                        headers={"content-type": "application/json"})  # fmt: skip
    assert answer.status_code in (200, 400), answer.text
    check_error_form(answer)
    for line in httpx.get(f"{diabetes.url}/metrics").text.splitlines():
        if line.startswith(("turnout_live_rmse{", "turnout_live_mae{")):
            value = float(line.rsplit(" ", 1)[1])
            assert math.isfinite(value) or math.isnan(value), line


def test_servers_still_serve_after_fuzzing(diabetes: Process, mixed: Process) -> None:
    for proc in (diabetes, mixed):
        assert proc.popen.poll() is None
        assert httpx.get(f"{proc.url}/ping").status_code == 200
