"""turnout-serve against bad configuration and hostile clients, as real processes: auth that
would fail open, oversized and never-finished requests on each HTTP implementation uvicorn can
pick, payloads that decode to far more work than their bytes, drift windows of any size, and a
SIGTERM under keep-alive load."""

from __future__ import annotations

import io
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import Process, wait_until
from tests.integration.test_fuzz import DIABETES_COLUMNS, answers_counted
from turnout_operator.domain.manifests import Defaults, build_deployment
from turnout_operator.domain.spec import ModelDeploymentSpec

pytestmark = pytest.mark.slow
IMPLEMENTATIONS = ["httptools", "h11"]
ROW = dict.fromkeys(DIABETES_COLUMNS, 0.01)


def exchange(proc: Process, *chunks: bytes, pause: float = 0.0, timeout: float = 20) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes it."""
    host, port = proc.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:
                break  # the server answered and stopped reading: read what it said
            time.sleep(pause)
        received = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
    return received


def status_of(raw: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", raw)
    assert match, raw[:200]
    return int(match.group(1))


# --- auth fails closed -----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["tokens", "file"])
def test_a_token_source_without_tokens_refuses_to_start(
    serve_factory: Callable[..., Process], tmp_path: Path, source: str
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("\n  \n\t\n")
    env = {"TURNOUT_AUTH_TOKENS": " , "} if source == "tokens" else {}
    flags = ["--auth-token-file", str(tokens)] if source == "file" else []
    proc = serve_factory("models:/Diabetes/1", *flags, env=env, ready=False)
    assert proc.popen.wait(60) == 2
    named = "TURNOUT_AUTH_TOKENS" if source == "tokens" else f"the token file {tokens}"
    assert f"{named} holds no token" in proc.output()
    assert "refusing to serve without auth" in proc.output()


# --- requests that never end, or never stop growing, on both HTTP implementations ----------


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def strict(request: pytest.FixtureRequest, serve_factory: Callable[..., Process]) -> Process:
    return serve_factory("models:/Diabetes/1", env={
        "TURNOUT_HTTP": request.param, "TURNOUT_READ_TIMEOUT_SECONDS": "1",
        "TURNOUT_KEEP_ALIVE_SECONDS": "1", "TURNOUT_MAX_HEADER_BYTES": "16384",
    })  # fmt: skip


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Big: " + b"a" * 16 * 1024 * 1024 + b"\r\n",  # one 16 MiB header
        b"".join(b"X-%d: %s\r\n" % (i, b"b" * 100) for i in range(200)),  # many small ones
    ],
    ids=["one-16MiB-header", "200-headers"],
)
def test_headers_over_the_limit_are_431(strict: Process, headers: bytes) -> None:
    raw = exchange(strict, b"GET /ping HTTP/1.1\r\nHost: t\r\n", headers, b"\r\n")
    assert status_of(raw) == 431
    assert b"exceed 16384 bytes (max_header_bytes, TURNOUT_MAX_HEADER_BYTES)" in raw
    fine = b"X-Fine: " + b"c" * 15000 + b"\r\n"
    assert status_of(exchange(strict, b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                              + fine + b"\r\n")) == 200  # fmt: skip


def test_headers_that_never_end_are_408(strict: Process) -> None:
    raw = exchange(strict, b"GET /ping HTTP/1.1\r\n", b"Host: t\r\n", b"X-Slow: 1\r\n", pause=0.6)
    assert status_of(raw) == 408
    assert b"not received within 1 s" in raw


def test_a_body_that_never_arrives_is_408_and_counted(strict: Process) -> None:
    before = answers_counted(strict)
    raw = exchange(strict, b"POST /invocations HTTP/1.1\r\nHost: t\r\n"
                   b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs\"")  # fmt: skip
    head, _, body = raw.partition(b"\r\n\r\n")
    assert status_of(raw) == 408
    assert b"connection: close" in head.lower()
    assert orjson.loads(body)["error_code"] == "REQUEST_TIMEOUT"
    assert "9 of 1000 bytes arrived" in orjson.loads(body)["message"]
    assert answers_counted(strict) - before == {("invocations", "408"): 1}


def test_a_silent_connection_is_closed_like_an_idle_one(strict: Process) -> None:
    assert exchange(strict, timeout=10) == b""  # closed after the 1 s keep-alive timeout


# --- work bounded per request -------------------------------------------------------------------


def payload(rows: int, fmt: str) -> tuple[bytes, str]:
    frame = pd.DataFrame(np.full((rows, len(DIABETES_COLUMNS)), 0.01), columns=DIABETES_COLUMNS)
    if fmt == "parquet":
        sink = io.BytesIO()
        frame.to_parquet(sink)
        return sink.getvalue(), "application/vnd.apache.parquet"
    if fmt == "csv":
        return frame.to_csv(index=False).encode(), "text/csv"
    document: Any = {
        "split": {"dataframe_split": frame.to_dict(orient="split", index=False)},
        "records": {"dataframe_records": frame.to_dict(orient="records")},
        "inputs": {"inputs": frame.to_dict(orient="list")},
    }[fmt]
    return orjson.dumps(document), "application/json"


@pytest.fixture(scope="module")
def bounded(serve_factory: Callable[..., Process]) -> Process:
    return serve_factory("models:/Diabetes/1", env={"TURNOUT_MAX_ROWS": "1000"})


@pytest.mark.parametrize("fmt", ["parquet", "csv", "split", "records", "inputs"])
def test_rows_over_the_limit_are_a_413_naming_it(bounded: Process, fmt: str) -> None:
    body, content_type = payload(1000, fmt)
    fits = httpx.post(f"{bounded.url}/invocations", content=body,
                      headers={"content-type": content_type}, timeout=60)  # fmt: skip
    assert fits.status_code == 200, fits.text
    assert len(fits.json()["predictions"]) == 1000
    body, content_type = payload(1001, fmt)
    over = httpx.post(f"{bounded.url}/invocations", content=body,
                      headers={"content-type": content_type}, timeout=60)  # fmt: skip
    assert over.status_code == 413
    assert over.json()["error_code"] == "PAYLOAD_TOO_LARGE"
    assert "holds 1001 rows; this server takes at most 1000 rows" in over.json()["message"]
    assert "TURNOUT_MAX_ROWS" in over.json()["message"]


def parquet_bomb(rows: int = 10**7) -> bytes:
    """Ten million rows of the model's ten columns in a few hundred kilobytes."""
    column = pa.array(np.full(rows, 0.01))
    sink = io.BytesIO()
    pq.write_table(pa.table(dict.fromkeys(DIABETES_COLUMNS, column)), sink)
    return sink.getvalue()


def test_health_answers_while_heavy_requests_and_parquet_bombs_arrive(
    serve_factory: Callable[..., Process],
) -> None:
    """Scoring runs in a bounded pool of worker threads and a bomb is refused from its footer:
    /ping keeps answering (within a generous deadline) while clients send the heaviest payloads
    the limits allow, and payloads that decode to ten million rows."""
    proc = serve_factory("models:/Diabetes/1")
    bomb = parquet_bomb()
    heavy, heavy_type = payload(100_000, "parquet")
    answers: list[int] = []
    stop = threading.Event()

    def send(body: bytes, content_type: str) -> None:
        with httpx.Client(timeout=120) as client:
            for _ in range(6):
                if stop.is_set():
                    return
                answers.append(client.post(f"{proc.url}/invocations", content=body,
                                           headers={"content-type": content_type}).status_code)  # fmt: skip

    senders = [threading.Thread(target=send, args=(bomb, "application/vnd.apache.parquet"))
               for _ in range(2)] + [threading.Thread(target=send, args=(heavy, heavy_type))
                                     for _ in range(4)]  # fmt: skip
    for sender in senders:
        sender.start()
    pings = 0
    try:
        while any(s.is_alive() for s in senders) and pings < 200:
            assert httpx.get(f"{proc.url}/ping", timeout=3).status_code == 200
            pings += 1
            time.sleep(0.05)
    finally:
        stop.set()
        for sender in senders:
            sender.join(120)
    assert sorted(set(answers)) == [200, 413]
    assert answers.count(413) == 12 and answers.count(200) == 24


# --- drift windows of any size --------------------------------------------------------------


def test_a_drift_window_the_operator_sets_to_1001_rows_serves_and_fills(
    serve_factory: Callable[..., Process],
) -> None:
    """`spec.monitoring.drift.windowSize: 1001` reaches the server as TURNOUT_DRIFT_WINDOW_ROWS:
    it becomes ready and its window holds exactly 1001 rows before evicting a block."""
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "Diabetes", "version": "1"},
            "monitoring": {"drift": {"windowSize": 1001}},
        }
    )
    deployment = build_deployment("d", "ml", "blue", "1", "models:/Diabetes/1", 1, spec,
                                  Defaults(image="i", tracking_uri="http://mlflow"))  # fmt: skip
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    window = {e["name"]: e["value"] for e in container["env"]}["TURNOUT_DRIFT_WINDOW_ROWS"]
    assert window == "1001"
    proc = serve_factory("models:/Diabetes/1", env={"TURNOUT_DRIFT_WINDOW_ROWS": window})
    assert httpx.get(f"{proc.url}/info").json()["drift"].startswith("on: reference ")
    split = {"dataframe_split": {"columns": DIABETES_COLUMNS, "data": [[0.01] * 10] * 1001}}
    assert httpx.post(f"{proc.url}/invocations", json=split).status_code == 200
    assert drift_window_rows(proc) == 1001
    assert httpx.post(f"{proc.url}/invocations", json={"inputs": {c: [0.01] for c in DIABETES_COLUMNS}}).status_code == 200  # fmt: skip
    # 20 blocks: one of 51 rows, 19 of 50 (reports are recomputed at most once a second)
    wait_until(lambda: drift_window_rows(proc) == 1001 - 51 + 1, timeout=10, what="eviction")


def drift_window_rows(proc: Process) -> float:
    for line in httpx.get(f"{proc.url}/metrics").text.splitlines():
        if line.startswith("turnout_drift_window_rows{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no turnout_drift_window_rows series")


# --- the API description is served only when asked ---------------------------------------------


@pytest.mark.parametrize("docs", [False, True])
def test_the_api_description_is_off_unless_asked(
    serve_factory: Callable[..., Process], docs: bool
) -> None:
    proc = serve_factory("models:/Diabetes/1", env={"TURNOUT_API_DOCS": str(docs).lower()})
    expected = 200 if docs else 404
    assert httpx.get(f"{proc.url}/openapi.json").status_code == expected
    assert httpx.get(f"{proc.url}/docs").status_code == expected
    if docs:
        assert "/invocations" in httpx.get(f"{proc.url}/openapi.json").json()["paths"]


# --- SIGTERM under keep-alive load ------------------------------------------------------------


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_sigterm_under_keep_alive_load_answers_every_request_it_received(
    serve_factory: Callable[..., Process], implementation: str
) -> None:
    """Sixteen clients send back to back, each on its own keep-alive connection, when SIGTERM
    arrives. Every request the server received is answered (the last with `Connection: close`);
    a client learns the server is going from that answer or a refused new connection, never a
    reset."""
    proc = serve_factory("models:/Diabetes/1", env={"TURNOUT_HTTP": implementation})
    outcomes: dict[str, int] = {"ok": 0, "closed": 0, "refused": 0}
    resets: list[str] = []
    lock = threading.Lock()
    body = orjson.dumps({"inputs": {c: [0.01] for c in DIABETES_COLUMNS}})

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            for _ in range(2000):
                try:
                    answer = http.post(f"{proc.url}/invocations", content=body,
                                       headers={"content-type": "application/json"})  # fmt: skip
                except httpx.ConnectError:
                    outcome = "refused"
                except httpx.TransportError as exc:
                    with lock:
                        resets.append(repr(exc))
                    return
                else:
                    assert answer.status_code == 200, answer.text
                    closing = answer.headers.get("connection", "").lower() == "close"
                    outcome = "closed" if closing else "ok"
                with lock:
                    outcomes[outcome] += 1
                if outcome != "ok":
                    return

    clients = [threading.Thread(target=client) for _ in range(16)]
    for c in clients:
        c.start()
    wait_until(lambda: outcomes["ok"] >= 500, timeout=60, what="keep-alive load to build up")
    proc.popen.send_signal(signal.SIGTERM)
    for c in clients:
        c.join(60)
    assert resets == []
    assert outcomes["closed"] + outcomes["refused"] == 16
    assert outcomes["closed"] >= 1
    assert proc.popen.wait(30) in (0, -signal.SIGTERM)
