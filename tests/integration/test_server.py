"""turnout-serve as a real process against a real MLflow registry: sources, readiness, errors,
auth, feedback and the Open Inference Protocol."""

from __future__ import annotations

import json
import re
import signal
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import Process, Registry, wait_until
from tests.integration.conftest import wait_for_ready

pytestmark = pytest.mark.slow
DIABETES_ROW = {"age": 0.038, "sex": 0.05, "bmi": 0.061, "bp": 0.021, "s1": -0.044,
                "s2": -0.034, "s3": -0.043, "s4": -0.002, "s5": 0.019, "s6": -0.017}  # fmt: skip


def split(*rows: dict[str, float]) -> dict[str, object]:
    columns = list(rows[0])
    return {
        "dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}
    }


def metric(url: str, name: str, **labels: str) -> float | None:
    """One sample from the server's /metrics text, None when absent."""
    wanted = {k: v for k, v in labels.items()}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in wanted.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture(scope="module")
def champion(serve_factory) -> Process:  # type: ignore[no-untyped-def]
    return serve_factory("models:/Diabetes@champion", "--color", "blue")


@pytest.mark.parametrize(
    ("uri", "version"),
    [
        ("models:/Diabetes/1", "1"),
        ("models:/Diabetes@champion", "2"),
        ("models:/Diabetes/Production", "1"),
        ("models:/Diabetes@challenger", "3"),
    ],
)
def test_registry_uris_resolve_to_the_version_they_name(
    serve_factory, mlflow_registry: Registry, uri: str, version: str
) -> None:  # type: ignore[no-untyped-def]
    assert mlflow_registry.models["Diabetes"]["versions"] == ["1", "2", "3"]
    proc = serve_factory(uri)
    info = httpx.get(f"{proc.url}/info").json()
    assert (info["model_name"], info["model_version"], info["ready"]) == ("Diabetes", version, True)
    assert info["model_uri"] == uri
    assert info["resolved_uri"] == f"models:/Diabetes/{version}"
    assert f"resolved {uri} to Diabetes version {version}" in proc.output()
    answer = httpx.post(f"{proc.url}/invocations", json=split(DIABETES_ROW))
    assert answer.status_code == 200
    assert len(answer.json()["predictions"]) == 1


def test_runs_uri_and_local_path_serve_the_same_model(serve_factory, champion: Process) -> None:  # type: ignore[no-untyped-def]
    info = httpx.get(f"{champion.url}/info").json()
    by_run = serve_factory(f"runs:/{info['run_id']}/model")
    expected = httpx.post(f"{champion.url}/invocations", json=split(DIABETES_ROW)).json()
    assert httpx.post(f"{by_run.url}/invocations", json=split(DIABETES_ROW)).json() == expected
    assert httpx.get(f"{by_run.url}/info").json()["run_id"] == info["run_id"]


def test_a_restart_reuses_the_artifact_cache(serve_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"
    first = serve_factory("models:/Diabetes/1", "--cache-dir", str(cache))
    assert metric(first.url, "turnout_artifact_download_seconds") > 0  # type: ignore[operator]
    assert (cache / "registry" / "Diabetes" / "1" / "MLmodel").is_file()
    first.stop()
    second = serve_factory("models:/Diabetes/1", "--cache-dir", str(cache))
    assert metric(second.url, "turnout_artifact_download_seconds") == 0
    assert "using cached artifacts for models:/Diabetes/1" in second.output()


def test_metrics_carry_model_version_color_and_count_requests(champion: Process) -> None:
    labels = {"model": "Diabetes", "version": "2", "color": "blue"}
    before = metric(champion.url, "turnout_inference_requests_total", endpoint="invocations",
                    code="200", **labels)  # fmt: skip
    rows_before = metric(champion.url, "turnout_inference_rows_total", **labels)
    httpx.post(f"{champion.url}/invocations", json=split(DIABETES_ROW, DIABETES_ROW, DIABETES_ROW))
    after = metric(champion.url, "turnout_inference_requests_total", endpoint="invocations",
                   code="200", **labels)  # fmt: skip
    assert after == before + 1  # type: ignore[operator]
    assert metric(champion.url, "turnout_inference_rows_total", **labels) == rows_before + 3  # type: ignore[operator]
    assert metric(champion.url, "turnout_model_info", run_id=httpx.get(
        f"{champion.url}/info").json()["run_id"], flavor="sklearn", **labels) == 1  # fmt: skip
    assert metric(champion.url, "turnout_model_ready", **labels) == 1
    # label sets exist before first use: a dashboard reads 0, not "no data"
    assert metric(champion.url, "turnout_inference_requests_total", endpoint="v2_infer",
                  code="500", **labels) == 0  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "body", "status", "fragment"),
    [
        ({"content-type": "application/json"}, b"{not json", 400, "valid JSON"),
        ({"content-type": "application/json"}, b"[1, 2]", 400, "JSON dictionary"),
        ({"content-type": "application/xml"}, b"<a/>", 415, "content types"),
        ({}, b"{}", 415, "Content-Type"),
        ({"content-type": "application/json; charset=latin-1"}, b"{}", 415, "UTF-8"),
        ({"content-type": "application/json"}, json.dumps(
            {"dataframe_records": [{**DIABETES_ROW, "bmi": "fat"}]}).encode(),
         400, "column bmi"),
        ({"content-type": "application/json"}, json.dumps(
            {"inputs": {**{k: [v] for k, v in DIABETES_ROW.items()}, "bmi": [True]}}).encode(),
         400, "Column 'bmi' (double) cannot take row 0's value True"),
        ({"content-type": "application/json"}, json.dumps(
            {"dataframe_records": [{"age": 1.0}]}).encode(), 400, "missing inputs"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_4xx_that_says_why(
    champion: Process, headers: dict[str, str], body: bytes, status: int, fragment: str
) -> None:
    answer = httpx.post(f"{champion.url}/invocations", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert fragment in answer.text
    assert "Traceback" not in answer.text


def test_a_body_over_the_limit_is_413(serve_factory) -> None:  # type: ignore[no-untyped-def]
    proc = serve_factory("models:/Diabetes/1", "--max-body-bytes", "1000")
    big = split(*[DIABETES_ROW] * 20)
    answer = httpx.post(f"{proc.url}/invocations", json=big)
    assert answer.status_code == 413
    assert answer.json()["error_code"] == "PAYLOAD_TOO_LARGE"
    assert httpx.post(f"{proc.url}/invocations", json=split(DIABETES_ROW)).status_code == 200


def test_a_failing_model_is_a_500_with_a_request_id_and_the_server_keeps_serving(
    serve_factory,
) -> None:  # type: ignore[no-untyped-def]
    proc = serve_factory("models:/Broken/1")
    bad = httpx.post(f"{proc.url}/invocations", json={"inputs": {"age": [101.0], "bmi": [20.0]}},
                     headers={"X-Request-Id": "req-42"})  # fmt: skip
    assert bad.status_code == 500
    assert bad.json()["request_id"] == "req-42"
    assert "req-42" in bad.json()["message"]
    assert "Traceback" not in bad.text and "simulated" not in bad.text
    assert "simulated model failure" in proc.output()  # the operator's log has the cause
    good = httpx.post(f"{proc.url}/invocations", json={"inputs": {"age": [30.0], "bmi": [20.0]}})
    assert good.status_code == 200
    assert good.json() == {"predictions": [1.0]}


def test_request_ids_are_echoed_or_generated(champion: Process) -> None:
    given = httpx.post(f"{champion.url}/invocations", json=split(DIABETES_ROW),
                       headers={"X-Request-Id": "abc-123"})  # fmt: skip
    assert given.headers["x-request-id"] == "abc-123"
    fresh = httpx.post(f"{champion.url}/invocations", json=split(DIABETES_ROW),
                       headers={"X-Request-Id": "bad id with spaces"})  # fmt: skip
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])


def test_feedback_gives_exact_live_mae_and_rmse(serve_factory) -> None:  # type: ignore[no-untyped-def]
    proc = serve_factory("models:/Diabetes/1", "--color", "green")
    rows = [DIABETES_ROW, {**DIABETES_ROW, "bmi": -0.05}]
    answer = httpx.post(f"{proc.url}/invocations", json=split(*rows),
                        headers={"X-Request-Id": "fb-1"})  # fmt: skip
    p1, p2 = answer.json()["predictions"]
    result = httpx.post(
        f"{proc.url}/feedback", json={"request_id": "fb-1", "label": [p1 + 3, p2 - 4]}
    )
    assert result.json() == {"results": [{"request_id": "fb-1", "result": "matched"}]}
    more = httpx.post(f"{proc.url}/feedback", json=[
        {"request_id": "fb-1", "label": [1, 2]}, {"request_id": "nope", "label": 1.0}])  # fmt: skip
    assert [r["result"] for r in more.json()["results"]] == ["unknown", "unknown"]
    labels = {"model": "Diabetes", "version": "1", "color": "green"}
    assert metric(proc.url, "turnout_live_mae", **labels) == pytest.approx(3.5)
    assert metric(proc.url, "turnout_live_rmse", **labels) == pytest.approx((12.5) ** 0.5)
    assert metric(proc.url, "turnout_feedback_total", result="matched", **labels) == 1
    assert metric(proc.url, "turnout_feedback_total", result="unknown", **labels) == 2
    bad = httpx.post(f"{proc.url}/feedback", json={"label": 1})
    assert bad.status_code == 400


def test_feedback_gives_exact_live_accuracy_for_a_classifier(serve_factory) -> None:  # type: ignore[no-untyped-def]
    proc = serve_factory("models:/Iris@champion")
    rows = [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
            {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}]  # fmt: skip
    answer = httpx.post(f"{proc.url}/invocations", json={"dataframe_records": rows},
                        headers={"X-Request-Id": "iris-1"})  # fmt: skip
    assert answer.json() == {"predictions": [0, 2]}
    httpx.post(f"{proc.url}/feedback", json={"request_id": "iris-1", "label": [0, 1]})
    assert metric(proc.url, "turnout_live_accuracy", model="Iris") == 0.5
    assert metric(proc.url, "turnout_live_mae", model="Iris") is None


def test_bearer_tokens_guard_inference_but_not_health_or_metrics(
    serve_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret\nother-token\n")
    proc = serve_factory("models:/Diabetes/1", "--auth-token-file", str(tokens))
    url = f"{proc.url}/invocations"
    assert httpx.post(url, json=split(DIABETES_ROW)).status_code == 401
    wrong = httpx.post(url, json=split(DIABETES_ROW), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    for token in ("s3cret", "other-token"):
        ok = httpx.post(url, json=split(DIABETES_ROW), headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        # the header that survives the API server's service proxy (which deletes Authorization)
        ok = httpx.post(url, json=split(DIABETES_ROW), headers={"X-Turnout-Token": token})
        assert ok.status_code == 200
    wrong = httpx.post(url, json=split(DIABETES_ROW), headers={"X-Turnout-Token": "nope"})
    assert (wrong.status_code, wrong.json()["message"]) == (
        401, "A valid bearer token is required (Authorization: Bearer <token>, or "
        "X-Turnout-Token: <token>).",
    )  # fmt: skip
    assert (
        httpx.post(f"{proc.url}/feedback", json={"request_id": "x", "label": 1}).status_code == 401
    )
    assert httpx.get(f"{proc.url}/ping").status_code == 200
    assert httpx.get(f"{proc.url}/metrics").status_code == 200
    assert httpx.get(f"{proc.url}/v2/health/ready").status_code == 200


def test_open_inference_protocol(champion: Process) -> None:
    url = champion.url
    assert httpx.get(f"{url}/v2").json()["name"] == "turnout-serve"
    assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{url}/v2/models/Diabetes/ready").json() == {
        "name": "Diabetes",
        "ready": True,
    }
    meta = httpx.get(f"{url}/v2/models/Diabetes").json()
    assert meta["versions"] == ["2"]
    assert meta["inputs"][0] == {"name": "age", "datatype": "FP64", "shape": [-1]}
    assert httpx.get(f"{url}/v2/models/Other").status_code == 404
    expected = httpx.post(f"{url}/invocations", json=split(DIABETES_ROW)).json()["predictions"]
    by_column = {"id": "q1", "inputs": [
        {"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in DIABETES_ROW.items()]}  # fmt: skip
    answer = httpx.post(f"{url}/v2/models/Diabetes/infer", json=by_column).json()
    assert answer["id"] == "q1" and answer["model_version"] == "2"
    assert answer["outputs"] == [{"name": "predict", "shape": [1], "datatype": "FP64",
                                  "data": expected}]  # fmt: skip
    matrix = {"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP64",
                          "data": [list(DIABETES_ROW.values())]}]}  # fmt: skip
    assert httpx.post(f"{url}/v2/models/Diabetes/versions/2/infer",
                      json=matrix).json()["outputs"][0]["data"] == expected  # fmt: skip
    bad = {"inputs": [{"name": "age", "shape": [2], "datatype": "FP64", "data": [1.0]}]}
    assert httpx.post(f"{url}/v2/models/Diabetes/infer", json=bad).status_code == 400
    wrong = httpx.post(f"{url}/v2/models/Diabetes/versions/9/infer", json=matrix)
    assert wrong.status_code == 404


def test_unknown_models_fail_fast_with_the_reason(serve_factory) -> None:  # type: ignore[no-untyped-def]
    proc = serve_factory("models:/DoesNotExist@champion", ready=False)
    assert proc.popen.wait(60) == 2
    assert "Cannot resolve 'models:/DoesNotExist@champion'" in proc.output()


def test_sigterm_drains_in_flight_requests(serve_factory) -> None:  # type: ignore[no-untyped-def]
    proc = serve_factory("models:/Broken/1")
    results: list[int] = []
    slow = {"inputs": {"age": [-1.0], "bmi": [20.0]}}  # this model sleeps 2 s on a negative age

    def call() -> None:
        results.append(httpx.post(f"{proc.url}/invocations", json=slow, timeout=60).status_code)

    caller = threading.Thread(target=call)
    caller.start()
    wait_until(lambda: (metric(proc.url, "turnout_inference_in_flight") or 0) >= 1, timeout=10,
               interval=0.005, what="the request to be in flight")  # fmt: skip
    proc.popen.send_signal(signal.SIGTERM)
    caller.join(60)
    assert results == [200]
    # uvicorn re-raises the signal once it has drained, so the exit status is SIGTERM's
    assert proc.popen.wait(30) in (0, -signal.SIGTERM)
    assert "Finished server process" in proc.output()


def test_a_request_over_the_timeout_is_504_and_the_server_lives_on(serve_factory) -> None:  # type: ignore[no-untyped-def]
    proc = serve_factory("models:/Broken/1", "--timeout", "0.5")
    slow = httpx.post(f"{proc.url}/invocations", json={"inputs": {"age": [-1.0], "bmi": [1.0]}})
    assert slow.status_code == 504
    assert slow.json()["error_code"] == "DEADLINE_EXCEEDED"
    fast = httpx.post(f"{proc.url}/invocations", json={"inputs": {"age": [1.0], "bmi": [1.0]}})
    assert fast.status_code == 200


def test_readiness_waits_for_the_model(serve_factory) -> None:  # type: ignore[no-untyped-def]
    proc = serve_factory("models:/Diabetes/2", ready=False)
    states = set()

    def probe() -> bool:
        code = httpx.get(f"{proc.url}/ping").status_code
        states.add(code)
        return code == 200

    wait_until(probe, timeout=120, interval=0.05, what="ping 200")
    wait_for_ready(proc)
    assert 503 in states  # it listened before it was ready, and said so
    assert "warm-up prediction on the input example" in proc.output()
