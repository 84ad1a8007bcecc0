"""Each deliberate difference from `mlflow models serve` (tests/parity/protocol.py), asserted as
stated, with both servers running side by side."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.conftest import wait_until
from tests.integration.parity_pair import (
    JSON,
    SEED,
    Models,
    as_json,
    assert_same,
    descendants,
    silent_registry,
)
from tests.integration.protocol_payloads import SPLIT
from tests.parity.protocol import PROTOCOL

pytestmark = pytest.mark.slow
DIFFERENCES = {d.key: d for d in PROTOCOL}


def test_every_difference_is_checked() -> None:
    checked = {name.removeprefix("test_difference_") for name in globals()
               if name.startswith("test_difference_")}  # fmt: skip
    assert checked == set(DIFFERENCES)


def test_difference_stack_trace(pair) -> None:  # type: ignore[no-untyped-def]
    with pair("knn") as both:
        theirs, ours = both.send("text/csv", b"")
    assert theirs.status_code == ours.status_code == 400
    assert theirs.json()["stack_trace"].startswith("Traceback (most recent call last):")
    expected = {k: v for k, v in theirs.json().items() if k != "stack_trace"}
    assert ours.json() == expected


def test_difference_model_raises(pair) -> None:  # type: ignore[no-untyped-def]
    with pair("checks") as both:
        theirs, ours = both.send(*as_json({"inputs": {"x": [1.0, -1.0]}}))
    assert (theirs.status_code, theirs.json()["error_code"]) == (400, "BAD_REQUEST")
    assert theirs.json()["message"].startswith("Encountered an unexpected error while evaluating")
    assert "ValueError: x must not be negative" in theirs.json()["stack_trace"]
    request_id = ours.headers["x-request-id"]
    assert ours.status_code == 500
    assert ours.json() == {
        "error_code": "INTERNAL_ERROR", "error_class": "CLIENT_INTERNAL_ERROR", "sqlstate": "XXM00",
        "message": f"The model failed to predict on this input; quote request id {request_id} "
                   "to the server's operators.", "request_id": request_id}  # fmt: skip
    assert "x must not be negative" in both.turnout.output()


def test_difference_input_rejected(pair) -> None:  # type: ignore[no-untyped-def]
    incompatible = {"dataframe_split": pd.DataFrame(list(range(10))).to_dict(orient="split")}
    with pair("knn") as both:
        theirs, ours = both.send(*as_json(incompatible))
    assert theirs.status_code == ours.status_code == 400
    assert ours.json()["message"].startswith(theirs.json()["message"] + " The model rejected the "
                                             "input: X has 1 features, but KNeighborsClassifier is "
                                             "expecting 2 features")  # fmt: skip
    assert "stack_trace" in theirs.json() and "stack_trace" not in ours.json()
    assert {k: v for k, v in ours.json().items() if k != "message"} == {
        k: v for k, v in theirs.json().items() if k not in ("message", "stack_trace")
    }


def test_difference_no_content_type(pair) -> None:  # type: ignore[no-untyped-def]
    with pair("knn") as both:
        theirs, ours = both.send(None, json.dumps(SPLIT).encode())
    assert (theirs.status_code, theirs.text) == (500, "Internal Server Error")
    assert (ours.status_code, ours.headers["content-type"]) == (415, "text/plain; charset=utf-8")
    assert ours.text == ("This predictor only supports the following content types: Types: "
                         "['text/csv', 'application/json', 'application/vnd.apache.parquet']. "
                         "Got no Content-Type header.")  # fmt: skip


def test_difference_timeout_body(pair) -> None:  # type: ignore[no-untyped-def]
    with pair("slow", "-t", "1") as both:
        theirs, ours = both.send(*as_json({"inputs": {"x": [1.0], "n": [1], "tag": ["a"]}}))
    assert (theirs.status_code, theirs.headers["content-type"], theirs.text) == (
        504,
        JSON,
        "Request processing time exceeded limit",
    )
    assert (ours.status_code, ours.headers["content-type"]) == (504, JSON)
    assert ours.json() == {"error_code": "DEADLINE_EXCEEDED", "request_id": ours.headers["x-request-id"],
                           "message": "Request processing time exceeded limit"}  # fmt: skip


def test_difference_unwritable_output(pair) -> None:  # type: ignore[no-untyped-def]
    with pair("unwritable") as both:
        theirs, ours = both.send(*as_json({"inputs": {"x": [1.0], "n": [1], "tag": ["a"]}}))
    assert (theirs.status_code, theirs.text) == (500, "Internal Server Error")
    assert (ours.status_code, ours.json()["error_code"]) == (500, "INTERNAL_ERROR")
    assert ours.json()["message"] == ("The model returned set output that cannot be written as "
                                      "JSON: Object of type set is not JSON serializable")  # fmt: skip


def test_json_nested_past_the_reader_is_a_400_where_mlflow_answers_500(pair) -> None:  # type: ignore[no-untyped-def]
    """The server-level face of the `deep-nesting` reading difference (tests/parity/parsing.py):
    nesting so deep that the JSON reader itself gives up."""
    with pair("echo") as both:
        theirs, ours = both.send(JSON, b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert (theirs.status_code, theirs.text) == (500, "Internal Server Error")
    assert ours.status_code == 400
    assert ours.json()["error_code"] == "BAD_REQUEST"
    assert ours.json()["message"].startswith("The payload is nested too deeply to read")


def test_difference_ignored_flags(pair) -> None:  # type: ignore[no-untyped-def]
    flags = ("-w", "2", "--no-conda", "--install-mlflow")
    with pair("text", *flags) as both:
        assert_same(*both.send(*as_json({"inputs": {"x": [1.0], "n": [2], "tag": ["t"]}})))
        mlflow_workers = wait_until(lambda: len(descendants(both.mlflow.popen.pid)) >= 3,
                                    timeout=60, what="MLflow's two workers")  # fmt: skip
        turnout_children = descendants(both.turnout.popen.pid)
        log = both.turnout.output()
    assert mlflow_workers and turnout_children == []
    for note in ("--workers 2 ignored: turnout-serve runs one process; add replicas instead",
                 "--no-conda ignored: the model runs in turnout-serve's own environment",
                 "--install-mlflow ignored: turnout-serve runs with its own MLflow"):  # fmt: skip
        assert log.count(note) == 1, log[-2000:]


def test_difference_listens_while_loading(
    pair, protocol_models: Models, mlflow_serve, serve_factory
) -> None:  # type: ignore[no-untyped-def]
    uri = protocol_models.uris["slow_to_load"]
    theirs = mlflow_serve(uri, env=SEED, ready=False)
    ours = serve_factory(uri, env=SEED, ready=False)
    seen: dict[str, list[Any]] = {"mlflow": [], "turnout": []}

    def probe() -> bool:
        for side, proc in (("mlflow", theirs), ("turnout", ours)):
            try:
                answer = httpx.get(f"{proc.url}/ping", timeout=5)
                seen[side].append(
                    (answer.status_code, answer.json() if answer.status_code == 503 else None)
                )
            except httpx.TransportError:
                seen[side].append("refused")
        return seen["mlflow"][-1] == (200, None) and seen["turnout"][-1] == (200, None)

    try:
        wait_until(probe, timeout=180, interval=0.25, what="both servers to load")
    finally:
        theirs.stop()
        ours.stop()
    assert set(seen["mlflow"]) == {"refused", (200, None)}
    assert {s[0] for s in seen["turnout"] if s != "refused"} == {503, 200}
    assert {"status": "loading", "message": "The model is still loading."} in [
        s[1] for s in seen["turnout"] if s != "refused"
    ]


def test_difference_load_failure_exit(protocol_models: Models, mlflow_serve, serve_factory) -> None:  # type: ignore[no-untyped-def]
    uri = protocol_models.uris["unloadable"]
    theirs = mlflow_serve(uri, env=SEED, ready=False)
    ours = serve_factory(uri, env=SEED, ready=False)
    assert theirs.popen.wait(120) == 1
    assert ours.popen.wait(120) == 3
    assert "RuntimeError: the weights file is corrupt" in theirs.output()
    last = ours.output().strip().splitlines()[-1]
    assert last.endswith("exiting: the model cannot be served: the weights file is corrupt")


def test_difference_registry_unreachable(mlflow_serve, serve_factory) -> None:  # type: ignore[no-untyped-def]
    with silent_registry() as registry:
        env = {**SEED, "MLFLOW_TRACKING_URI": registry}
        theirs = mlflow_serve("models:/Diabetes@champion", env=env, ready=False)
        ours = serve_factory("models:/Diabetes@champion", "--registry-timeout", "3", env=env,
                             ready=False)  # fmt: skip
        try:
            assert ours.popen.wait(30) == 2  # 3 s, and a second for the last attempt, and start-up
            still_waiting = theirs.popen.poll() is None
        finally:
            theirs.stop()
    assert still_waiting
    assert f"Cannot resolve 'models:/Diabetes@champion' in the MLflow registry: API request to " \
        f"{registry}/api/2.0/mlflow/registered-models/alias" in ours.output()  # fmt: skip
    assert "(gave up after 3s: see --registry-timeout)" in ours.output()
