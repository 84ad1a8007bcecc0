"""Answer-for-answer parity with `mlflow models serve` on the same registered model.

Both servers run as real processes on the same `models:/` URI; every payload of the battery goes
to both, and the status codes and predictions must agree. The battery covers every accepted
format (dataframe_split, dataframe_records, instances, inputs, params, CSV) and the bad inputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import mlflow
import pytest

from tests.conftest import Process

pytestmark = pytest.mark.slow

ROW = {"age": 0.038, "sex": 0.05, "bmi": 0.061, "bp": 0.021, "s1": -0.044, "s2": -0.034,
       "s3": -0.043, "s4": -0.002, "s5": 0.019, "s6": -0.017}  # fmt: skip
ROW2 = {k: -v for k, v in ROW.items()}
COLS = list(ROW)
JSON = {"content-type": "application/json"}

DIABETES: list[tuple[str, dict[str, str], Any]] = [
    ("split", JSON, {"dataframe_split": {"columns": COLS, "data": [list(ROW.values()),
                                                                  list(ROW2.values())]}}),
    ("split reordered", JSON, {"dataframe_split": {"columns": COLS[::-1],
                                                   "data": [list(ROW.values())[::-1]]}}),
    ("split with index", JSON, {"dataframe_split": {"index": [7], "columns": COLS,
                                                    "data": [list(ROW.values())]}}),
    ("split extra column", JSON, {"dataframe_split": {"columns": [*COLS, "zzz"],
                                                      "data": [[*ROW.values(), 1.0]]}}),
    ("records", JSON, {"dataframe_records": [ROW, ROW2]}),
    ("instances", JSON, {"instances": [ROW, ROW2]}),
    ("inputs columns", JSON, {"inputs": {k: [v, -v] for k, v in ROW.items()}}),
    ("params ignored", JSON, {"dataframe_records": [ROW], "params": {"x": 1}}),
    ("extra top-level key", JSON, {"dataframe_records": [ROW], "unused": 1}),
    ("integers in double columns", JSON, {"dataframe_records": [{k: 0 for k in ROW}]}),
    ("null value", JSON, {"dataframe_records": [{**ROW, "bmi": None}]}),
    ("string value", JSON, {"dataframe_records": [{**ROW, "bmi": "x"}]}),
    ("boolean value", JSON, {"dataframe_records": [{**ROW, "bmi": True}]}),
    ("missing column", JSON, {"dataframe_records": [{"age": 1.0}]}),
    ("two formats", JSON, {"dataframe_records": [ROW], "instances": [ROW]}),
    ("no format", JSON, {"data": [ROW]}),
    ("records not a list", JSON, {"dataframe_records": ROW}),
    ("split not a dict", JSON, {"dataframe_split": [1, 2]}),
    ("empty records", JSON, {"dataframe_records": []}),
    ("top-level list", JSON, [ROW]),
    ("malformed json", JSON, b"{nope"),
    ("csv", {"content-type": "text/csv"},
     (",".join(COLS) + "\n" + ",".join(map(str, ROW.values())) + "\n").encode()),
    ("csv with charset", {"content-type": "text/csv; charset=utf-8"},
     (",".join(COLS) + "\n" + ",".join(map(str, ROW2.values())) + "\n").encode()),
    ("csv missing column", {"content-type": "text/csv"}, b"age,bmi\n1,2\n"),
    ("unsupported type", {"content-type": "text/plain"}, b"hello"),
    ("bad charset", {"content-type": "application/json; charset=latin-1"},
     {"dataframe_records": [ROW]}),
    ("unknown parameter", {"content-type": "application/json; format=pandas-split"},
     {"dataframe_records": [ROW]}),
]  # fmt: skip

MIXED_ROW = {"age": 0.02, "bmi": -0.01, "bp": 0.03, "sex": "f", "band": "mid"}
MIXED: list[tuple[str, dict[str, str], Any]] = [
    ("split", JSON, {"dataframe_split": {"columns": list(MIXED_ROW),
                                         "data": [list(MIXED_ROW.values())]}}),
    ("records", JSON, {"dataframe_records": [MIXED_ROW, {**MIXED_ROW, "sex": "m"}]}),
    ("unseen category", JSON, {"dataframe_records": [{**MIXED_ROW, "band": "new"}]}),
    ("number for string", JSON, {"dataframe_records": [{**MIXED_ROW, "sex": 3}]}),
    ("csv", {"content-type": "text/csv"}, b"age,bmi,bp,sex,band\n0.1,0.2,0.3,m,low\n"),
    ("missing column", JSON, {"dataframe_records": [{"age": 1.0}]}),
]  # fmt: skip

NO_SIGNATURE: list[tuple[str, dict[str, str], Any]] = [
    ("split", JSON, {"dataframe_split": {"columns": COLS, "data": [list(ROW.values())]}}),
    ("instances as tensor", JSON, {"instances": [list(ROW.values())]}),
    ("inputs as tensor", JSON, {"inputs": [list(ROW.values()), list(ROW2.values())]}),
    ("wrong width", JSON, {"inputs": [[1.0, 2.0]]}),
]  # fmt: skip

IRIS_ROW = {"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 5.1, "petal_width": 1.8}
IRIS: list[tuple[str, dict[str, str], Any]] = [
    ("records", JSON, {"dataframe_records": [IRIS_ROW]}),
    ("inputs", JSON, {"inputs": {k: [v] for k, v in IRIS_ROW.items()}}),
]


def post(url: str, headers: dict[str, str], payload: Any) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return httpx.post(f"{url}/invocations", content=body, headers=headers, timeout=60)


def cases(battery: list[tuple[str, dict[str, str], Any]], uri: str) -> list[Any]:
    return [pytest.param(uri, h, p, id=f"{uri.split('/')[1]}-{name}") for name, h, p in battery]


@pytest.mark.parametrize(
    ("uri", "headers", "payload"),
    cases(DIABETES, "models:/Diabetes/1")
    + cases(MIXED, "models:/Mixed/1")
    + cases(NO_SIGNATURE, "models:/NoSignature/1")
    + cases(IRIS, "models:/Iris/1"),
)
def test_same_status_and_predictions_as_mlflow_models_serve(
    mlflow_serve, serve_factory, uri: str, headers: dict[str, str], payload: Any
) -> None:  # type: ignore[no-untyped-def]
    theirs = post(mlflow_serve(uri).url, headers, payload)
    ours = post(_turnout(serve_factory, uri).url, headers, payload)
    assert ours.status_code == theirs.status_code, (theirs.text[:300], ours.text[:300])
    if theirs.status_code == 200:
        assert ours.json() == theirs.json()
    elif theirs.headers.get("content-type", "").startswith("application/json"):
        assert ours.json()["error_code"] == theirs.json()["error_code"]
        assert "stack_trace" not in ours.json()


_servers: dict[str, Process] = {}


def _turnout(serve_factory: Callable[..., Process], uri: str) -> Process:
    if uri not in _servers or _servers[uri].popen.poll() is not None:
        _servers[uri] = serve_factory(uri)
    return _servers[uri]


def test_mlflow_and_turnout_agree_on_health_endpoints(mlflow_serve, serve_factory) -> None:  # type: ignore[no-untyped-def]
    theirs, ours = (
        mlflow_serve("models:/Diabetes/1").url,
        _turnout(serve_factory, "models:/Diabetes/1").url,
    )
    for path, body in (("/ping", "\n"), ("/health", "\n"), ("/version", mlflow.__version__)):
        a, b = httpx.get(theirs + path), httpx.get(ours + path)
        assert (a.status_code, a.text, a.headers["content-type"]) == (
            b.status_code, b.text, b.headers["content-type"]) == (200, body, "application/json")  # fmt: skip
