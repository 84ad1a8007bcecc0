"""Both servers side by side: `mlflow models serve` and `turnout-serve` on one model, one request
to each, and what a client reads of the answers (for the protocol-parity tests and the
recorded-difference tests)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Process
from turnout_serving.predictor import MODEL_REJECTED

# MLflow writes a set of field names into one message; the same hash seed gives both servers the
# same order.
SEED = {"PYTHONHASHSEED": "0"}
JSON = "application/json"


@dataclass(frozen=True)
class Models:
    home: Path  # holds shouting.py, the module the `shouter` model's class lives in
    uris: dict[str, str]


@dataclass
class Pair:
    mlflow: Process
    turnout: Process

    def send(self, content_type: str | None, body: bytes) -> tuple[httpx.Response, httpx.Response]:
        headers = {"content-type": content_type} if content_type is not None else {}
        return tuple(  # type: ignore[return-value]
            httpx.post(f"{p.url}/invocations", content=body, headers=headers, timeout=60)
            for p in (self.mlflow, self.turnout)
        )

    def same(self, content_type: str | None, body: bytes) -> None:
        theirs, ours = self.send(content_type, body)
        assert_same(theirs, ours)


def view(response: httpx.Response, mlflow_side: bool) -> tuple[int, str, Any]:
    """What a client reads: status, content type, and the JSON (NaN kept comparable) or text."""
    content_type = response.headers.get("content-type", "")
    if content_type != JSON:
        return response.status_code, content_type, response.text
    try:
        body = json.loads(response.text, parse_constant=lambda constant: f"<{constant}>")
    except ValueError:  # MLflow labels its bare version string JSON
        return response.status_code, content_type, response.text
    if mlflow_side and response.status_code >= 400 and isinstance(body, dict):
        body.pop("stack_trace", None)  # the recorded difference `stack_trace`
    return response.status_code, content_type, body


def assert_same(theirs: httpx.Response, ours: httpx.Response) -> None:
    assert "stack_trace" not in ours.text
    mine, reference = view(ours, False), view(theirs, True)
    message = mine[2].get("message", "") if isinstance(mine[2], dict) else ""
    if message.startswith(f"{MODEL_REJECTED} "):
        mine[2]["message"] = MODEL_REJECTED  # the recorded difference `input_rejected`
    assert mine == reference


def as_json(document: Any, charset: bool = False) -> tuple[str, bytes]:
    return (f"{JSON}; charset=utf-8" if charset else JSON), json.dumps(document).encode()


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    direct = [int(p) for p in children.read_text().split()] if children.exists() else []
    return direct + [d for child in direct for d in descendants(child)]


@contextmanager
def silent_registry() -> Iterator[str]:
    """A registry URL whose socket accepts connections and never answers."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        yield f"http://127.0.0.1:{hung.getsockname()[1]}"
