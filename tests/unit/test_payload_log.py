"""The payload log (`domain/payload_log.py`, `payload_log.py`): which columns are redacted or
hashed and how, the JSON line and the CloudEvents (read back with the CloudEvents SDK), and that
offering an answer never waits for the sink: while a sink hangs, answers keep coming and the
entries past the queue are dropped and counted. Sinks here are in-process or a real HTTP
receiver on 127.0.0.1 (tests/receiver.py)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest
from cloudevents.http import from_http
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.conftest import wait_until
from tests.receiver import Receiver
from turnout_serving.dataplane import Answer, InferenceProtocol, InferenceRequest
from turnout_serving.domain.payload_log import (
    REDACTED,
    REQUEST_TYPE,
    RESPONSE_TYPE,
    Entry,
    Protection,
    cloud_events,
    json_line,
)
from turnout_serving.payload_log import HttpSink, PayloadLog, PayloadLogConfigError, StdoutSink
from turnout_serving.predictor import Scored
from turnout_serving.settings import ServingSettings

LABELS = {"model": "Churn model", "version": "3", "color": "blue"}
SALT = b"pepper"
COLUMNS = {
    "email": np.array(["a@x.org", "b@x.org", "a@x.org"], dtype=object),
    "ssn": np.array(["123", "456", None], dtype=object),
    "age": np.array([31.0, float("nan"), 40.0]),
}


def entry(request_id: str = "req-1", columns: Any = None) -> Entry:
    return Entry(
        request_id=request_id, time="2025-01-02T03:04:05.000006+00:00", protocol="mlflow",
        path="/invocations", latency_seconds=0.0012345678,
        columns=COLUMNS if columns is None else columns,
        answer=b'{"predictions": [0.5, 0.25, 1.0]}', labels=LABELS,
    )  # fmt: skip


def keyed(value: str) -> str:
    return hmac.new(SALT, value.encode(), hashlib.sha256).hexdigest()


PROTECTED = Protection(redact=frozenset({"ssn"}), hash=frozenset({"email"}), salt=SALT)


# --- redaction and hashing ------------------------------------------------------------------


def test_a_json_line_holds_the_protected_inputs_the_answer_and_what_was_served() -> None:
    assert json.loads(json_line(entry(), PROTECTED)) == {
        "id": "req-1",
        "time": "2025-01-02T03:04:05.000006+00:00",
        "model": "Churn model",
        "version": "3",
        "color": "blue",
        "protocol": "mlflow",
        "path": "/invocations",
        "latencySeconds": 0.001235,
        "inputs": {
            "email": [keyed("a@x.org"), keyed("b@x.org"), keyed("a@x.org")],
            "ssn": [REDACTED, REDACTED, REDACTED],
            "age": [31.0, None, 40.0],
        },
        "response": {"predictions": [0.5, 0.25, 1.0]},
    }


@settings(max_examples=100, deadline=None, derandomize=True)
@given(values=st.lists(st.one_of(st.text(), st.integers(), st.floats(allow_nan=False)), max_size=8))
def test_equal_values_hash_alike_and_a_hash_is_the_keyed_digest_of_the_value_text(
    values: list[Any],
) -> None:
    protection = Protection(hash=frozenset({"c"}), salt=SALT)
    hashed = protection.column("c", values)
    assert hashed == [keyed(str(v)) for v in values]
    for a, value_a in zip(hashed, values, strict=True):
        for b, value_b in zip(hashed, values, strict=True):
            assert (a == b) == (str(value_a) == str(value_b))


def test_another_salt_gives_other_hashes() -> None:
    other = Protection(hash=frozenset({"email"}), salt=b"salt")
    assert other.column("email", ["a@x.org"]) != PROTECTED.column("email", ["a@x.org"])


def test_a_request_not_read_as_a_table_logs_no_inputs() -> None:
    assert json.loads(json_line(entry(columns={}), PROTECTED))["inputs"] is None


def test_a_nan_prediction_as_mlflow_writes_it_logs_as_null() -> None:
    nan = Entry(**{**entry().__dict__, "answer": b'{"predictions": [NaN, 1.0]}'})
    assert json.loads(json_line(nan, PROTECTED))["response"] == {"predictions": [None, 1.0]}


@pytest.mark.parametrize(
    ("protection", "message"),
    [
        (dict(redact=frozenset({"a"}), hash=frozenset({"a"}), salt=SALT),
         "columns both redacted and hashed: a"),
        (dict(hash=frozenset({"a"})), "hashing columns needs a salt"),
    ],
)  # fmt: skip
def test_protection_that_cannot_work_is_refused(protection: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Protection(**protection)


# --- CloudEvents ----------------------------------------------------------------------------


def test_the_request_and_response_events_read_back_with_the_cloudevents_sdk() -> None:
    (request_headers, request_body), (response_headers, response_body) = cloud_events(
        entry(), PROTECTED
    )
    request = from_http(request_headers, request_body)
    response = from_http(response_headers, response_body)
    assert request["specversion"] == "1.0"
    assert (request["id"], request["type"]) == ("req-1", REQUEST_TYPE)
    assert (response["id"], response["type"]) == ("req-1", RESPONSE_TYPE)
    assert request["source"] == response["source"] == "/models/Churn%20model/versions/3"
    # The HTTP binding percent-encodes a space in a header value; this SDK leaves it encoded.
    assert (request["model"], request["version"], request["color"]) == (
        "Churn%20model",
        "3",
        "blue",
    )
    assert unquote(request["model"]) == "Churn model"
    assert request["time"] == "2025-01-02T03:04:05.000006+00:00"
    assert request.data == {
        "protocol": "mlflow",
        "path": "/invocations",
        "inputs": json.loads(json_line(entry(), PROTECTED))["inputs"],
    }
    assert response.data == {"predictions": [0.5, 0.25, 1.0]}


# --- the queue and the sender thread --------------------------------------------------------


class HangingSink:
    """Takes one entry, then hangs on the next until released."""

    def __init__(self) -> None:
        self.written: list[Entry] = []
        self.hanging = threading.Event()
        self.release = threading.Event()

    def write(self, entry: Entry) -> None:
        if self.written:
            self.hanging.set()
            self.release.wait(30)
        self.written.append(entry)

    def close(self) -> None:
        self.release.set()


def live(n: int, live: bool = True) -> InferenceRequest:
    return InferenceRequest(b"{}", "application/json", f"req-{n}", InferenceProtocol.MLFLOW,
                            live=live, path="/invocations")  # fmt: skip


ANSWER = Answer(b'{"predictions": [1.0]}', Scored(raw=None, rows=1, columns={"a": np.array([1.0])},
                                                   predictions=None))  # fmt: skip


def counts(registry: CollectorRegistry) -> dict[str, float | None]:
    return {
        result: registry.get_sample_value("turnout_payload_log_total", {**LABELS, "result": result})
        for result in ("sent", "failed", "dropped")
    }


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def make(sink: Any, registry: CollectorRegistry, **options: Any) -> PayloadLog:
    chosen = {"sample_rate": 1.0, "queue_size": 2, "retries": 0, **options}
    return PayloadLog(sink, registry, LABELS, **chosen)


def test_while_the_sink_hangs_answers_are_offered_at_once_and_the_overflow_is_dropped(
    registry: CollectorRegistry,
) -> None:
    sink = HangingSink()
    payload_log = make(sink, registry)
    payload_log.start()
    payload_log.offer(live(0), ANSWER, 0.001)
    payload_log.offer(live(1), ANSWER, 0.001)
    wait_until(sink.hanging.is_set, timeout=10, what="the sink to hang on the second entry")
    for n in range(2, 12):  # the sink is blocked all along: each offer still returns
        payload_log.offer(live(n), ANSWER, 0.001)
    assert sink.hanging.is_set() and not sink.release.is_set()
    assert counts(registry) == {"sent": 1.0, "failed": 0.0, "dropped": 8.0}  # 2 wait in the queue
    sink.release.set()
    wait_until(lambda: counts(registry)["sent"] == 4.0, timeout=10, what="the queue to drain")
    assert [e.request_id for e in sink.written] == ["req-0", "req-1", "req-2", "req-3"]
    payload_log.close(timeout=5)


def test_only_the_sampled_share_of_live_answers_is_logged(registry: CollectorRegistry) -> None:
    draws = iter([0.1, 0.5, 0.29, 0.3, 0.0])
    stream = io.StringIO()
    payload_log = make(StdoutSink(Protection(), stream), registry, sample_rate=0.3, queue_size=10,
                       draw=lambda: next(draws))  # fmt: skip
    payload_log.start()
    for n in range(5):
        payload_log.offer(live(n), ANSWER, 0.001)
    payload_log.offer(live(9, live=False), ANSWER, 0.001)  # a shadow copy: never logged
    wait_until(lambda: counts(registry)["sent"] == 3.0, timeout=10, what="three lines")
    payload_log.close(timeout=5)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["id"] for line in lines] == ["req-0", "req-2", "req-4"]
    assert lines[0]["inputs"] == {"a": [1.0]}


class FailingSink:
    def __init__(self, failures: int) -> None:
        self.failures, self.attempts = failures, 0

    def write(self, entry: Entry) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise OSError("refused")

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("failures", "sent", "failed"), [(2, 1.0, 0.0), (3, 0.0, 1.0)])
def test_an_entry_is_retried_and_counted_once(
    registry: CollectorRegistry, failures: int, sent: float, failed: float
) -> None:
    sink = FailingSink(failures)
    payload_log = make(sink, registry, retries=2)
    payload_log.start()
    payload_log.offer(live(0), ANSWER, 0.001)
    wait_until(lambda: counts(registry)["sent"] + counts(registry)["failed"] == 1.0,  # type: ignore[operator]
               timeout=10, what="the entry to be counted")  # fmt: skip
    payload_log.close(timeout=5)
    assert counts(registry) == {"sent": sent, "failed": failed, "dropped": 0.0}
    assert sink.attempts == 3


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(answers=[503]) as found:
        yield found


def test_cloudevents_to_a_receiver_retry_only_the_event_not_taken(receiver: Receiver) -> None:
    sink = HttpSink(receiver.url, PROTECTED, cloudevents=True, timeout_seconds=5)
    with pytest.raises(OSError, match="answered 503"):
        sink.write(entry())  # the request event is refused
    sink.write(entry())
    sink.close()
    delivered = [from_http(r.headers, r.body) for r in receiver.delivered()]
    assert [(e["id"], e["type"]) for e in delivered] == [
        ("req-1", REQUEST_TYPE), ("req-1", RESPONSE_TYPE),
    ]  # fmt: skip


def test_settings_that_cannot_log_are_refused() -> None:
    with pytest.raises(ValueError, match="payload_log_sink http needs payload_log_url"):
        ServingSettings(payload_log_sample_rate=1, payload_log_sink="http")
    with pytest.raises(ValueError, match="cloudevents needs payload_log_sink http"):
        ServingSettings(payload_log_sample_rate=1, payload_log_format="cloudevents")
    with pytest.raises(ValueError, match="payload_log_hash needs payload_log_hash_salt_file"):
        ServingSettings(payload_log_sample_rate=1, payload_log_hash="email")


def test_an_unreadable_salt_file_is_refused(tmp_path: Any) -> None:
    settings_ = ServingSettings(payload_log_sample_rate=1, payload_log_hash="email",
                                payload_log_hash_salt_file=tmp_path / "missing")  # fmt: skip
    with pytest.raises(PayloadLogConfigError, match="cannot read the hash salt file"):
        PayloadLog.from_settings(settings_, CollectorRegistry(), LABELS)


def test_logging_off_builds_nothing() -> None:
    assert PayloadLog.from_settings(ServingSettings(), CollectorRegistry(), LABELS) is None
