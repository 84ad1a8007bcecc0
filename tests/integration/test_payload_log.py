"""The payload log and the rate limit over a real `turnout-serve` process (real MLflow registry):
log entries reach a real HTTP receiver as CloudEvents and stdout as JSON lines, for each input
format and protocol, with columns redacted and hashed; a receiver that is down loses entries
(counted as failed) and no answer; a client over its rate gets a 429 with Retry-After, counted,
while health checks and other clients are not limited."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.http import from_http

from tests.conftest import free_port, wait_until
from tests.integration.test_server import DIABETES_ROW, metric, split
from tests.receiver import Receiver

pytestmark = pytest.mark.slow
SALT = "a-secret-salt"
LABELS = {"model": "Diabetes", "version": "1", "color": "blue"}
ROWS = [DIABETES_ROW, {**DIABETES_ROW, "age": -0.02, "bmi": -0.05}]


def keyed(value: float) -> str:
    return hmac.new(SALT.encode(), str(value).encode(), hashlib.sha256).hexdigest()


def csv(*rows: dict[str, float]) -> str:
    columns = list(rows[0])
    lines = [",".join(columns)] + [",".join(str(r[c]) for c in columns) for r in rows]
    return "\n".join(lines) + "\n"


def send_each_format(url: str) -> dict[str, Any]:
    """One request per input format and protocol, two rows each; their answers by request id."""
    answers = {
        "split": httpx.post(f"{url}/invocations", json=split(*ROWS),
                            headers={"X-Request-Id": "split"}),
        "records": httpx.post(f"{url}/invocations", json={"dataframe_records": ROWS},
                              headers={"X-Request-Id": "records"}),
        "csv": httpx.post(f"{url}/invocations", content=csv(*ROWS),
                          headers={"X-Request-Id": "csv", "content-type": "text/csv"}),
        "v2": httpx.post(f"{url}/v2/models/Diabetes/infer", headers={"X-Request-Id": "v2"},
                         json={"inputs": [{"name": c, "datatype": "FP64", "shape": [2],
                                           "data": [r[c] for r in ROWS]} for c in ROWS[0]]}),
    }  # fmt: skip
    for answer in answers.values():
        assert answer.status_code == 200, answer.text
    return {key: answer.json() for key, answer in answers.items()}


def protected_inputs() -> dict[str, list[Any]]:
    expected: dict[str, list[Any]] = {c: [r[c] for r in ROWS] for c in ROWS[0]}
    expected["bmi"] = ["REDACTED", "REDACTED"]
    expected["age"] = [keyed(r["age"]) for r in ROWS]
    return expected


def logging_flags(tmp_path: Path) -> dict[str, str]:
    salt = tmp_path / "salt"
    salt.write_text(SALT + "\n")
    return {"TURNOUT_PAYLOAD_LOG_SAMPLE_RATE": "1", "TURNOUT_PAYLOAD_LOG_REDACT": "bmi",
            "TURNOUT_PAYLOAD_LOG_HASH": "age", "TURNOUT_PAYLOAD_LOG_HASH_SALT_FILE": str(salt)}  # fmt: skip


def test_cloudevents_of_every_format_reach_the_receiver_protected(
    serve_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    with Receiver() as receiver:
        env = {**logging_flags(tmp_path), "TURNOUT_PAYLOAD_LOG_SINK": "http",
               "TURNOUT_PAYLOAD_LOG_URL": receiver.url,
               "TURNOUT_PAYLOAD_LOG_FORMAT": "cloudevents"}  # fmt: skip
        proc = serve_factory("models:/Diabetes/1", "--color", "blue", env=env)
        answers = send_each_format(proc.url)
        wait_until(lambda: len(receiver.delivered()) == 8, timeout=30, what="eight events")
        events = [from_http(r.headers, r.body) for r in receiver.delivered()]
    by_id: dict[str, dict[str, Any]] = {}
    for event in events:
        assert (event["source"], event["model"], event["version"], event["color"]) == (
            "/models/Diabetes/versions/1", "Diabetes", "1", "blue")  # fmt: skip
        by_id.setdefault(event["id"], {})[event["type"]] = event.data
    assert sorted(by_id) == ["csv", "records", "split", "v2"]
    for request_id, logged in by_id.items():
        request = logged["dev.turnout.inference.request"]
        assert request["inputs"] == protected_inputs(), request_id
        assert logged["dev.turnout.inference.response"] == answers[request_id]
        assert request["protocol"] == ("open_inference" if request_id == "v2" else "mlflow")
    assert metric(proc.url, "turnout_payload_log_total", result="sent", **LABELS) == 4


def test_json_lines_on_stdout(serve_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = serve_factory("models:/Diabetes/1", "--color", "blue", env=logging_flags(tmp_path))
    answers = send_each_format(proc.url)

    def lines() -> list[dict[str, Any]]:
        found = [
            json.loads(line) for line in proc.output().splitlines() if line.startswith('{"id"')
        ]
        return found if len(found) == 4 else []

    logged = {line["id"]: line for line in wait_until(lines, timeout=30, what="four lines")}
    assert sorted(logged) == ["csv", "records", "split", "v2"]
    for request_id, line in logged.items():
        assert line["inputs"] == protected_inputs()
        assert line["response"] == answers[request_id]
        assert (line["model"], line["version"], line["color"]) == ("Diabetes", "1", "blue")


def test_a_receiver_that_is_down_loses_entries_and_a_client_over_its_rate_gets_429(
    serve_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    env = {"TURNOUT_PAYLOAD_LOG_SAMPLE_RATE": "1", "TURNOUT_PAYLOAD_LOG_SINK": "http",
           "TURNOUT_PAYLOAD_LOG_URL": down, "TURNOUT_PAYLOAD_LOG_RETRIES": "1",
           "TURNOUT_RATE_LIMIT_REQUESTS_PER_SECOND": "0.01", "TURNOUT_RATE_LIMIT_BURST": "3",
           "TURNOUT_AUTH_TOKENS": "one,two"}  # fmt: skip
    proc = serve_factory("models:/Diabetes/1", "--color", "blue", env=env)
    one, two = ({"authorization": f"Bearer {t}"} for t in ("one", "two"))
    answers = [httpx.post(f"{proc.url}/invocations", json=split(*ROWS), headers=one)
               for _ in range(3)]  # fmt: skip
    assert [a.status_code for a in answers] == [200, 200, 200]
    refused = httpx.post(f"{proc.url}/invocations", json=split(*ROWS), headers=one)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "100"  # one token at 0.01 a second
    assert refused.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert "retry after 100 s" in refused.json()["message"]
    oip = httpx.post(f"{proc.url}/v2/models/Diabetes/infer", json={}, headers=one)
    assert (oip.status_code, oip.headers["retry-after"]) == (429, "100")
    assert set(oip.json()) == {"error"}
    # another token has its own bucket; health, metrics and feedback are never limited
    assert httpx.post(f"{proc.url}/invocations", json=split(*ROWS), headers=two).status_code == 200
    for _ in range(5):
        assert httpx.get(f"{proc.url}/health").status_code == 200
    feedback = {"request_id": "nope", "label": 1.0}
    assert httpx.post(f"{proc.url}/feedback", json=feedback, headers=one).status_code == 200

    def failed() -> bool:
        return metric(proc.url, "turnout_payload_log_total", result="failed", **LABELS) == 4

    wait_until(failed, timeout=30, what="four entries counted as failed")
    assert metric(proc.url, "turnout_payload_log_total", result="sent", **LABELS) == 0
    assert metric(proc.url, "turnout_inference_requests_total", endpoint="invocations",
                  code="429", **LABELS) == 1  # fmt: skip
    assert metric(proc.url, "turnout_inference_requests_total", endpoint="v2_infer",
                  code="429", **LABELS) == 1  # fmt: skip
    assert metric(proc.url, "turnout_rate_limited_total", endpoint="invocations", **LABELS) == 1
    assert metric(proc.url, "turnout_rate_limited_total", endpoint="v2_infer", **LABELS) == 1
