"""Both servers side by side: `mlflow models serve` and `turnout-serve` on one model, one request
to each, and what a client reads of the answers (for the protocol-parity tests and the
recorded-difference tests)."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Process
from turnout_serving.domain.schema import Column, InputSchema
from turnout_serving.domain.values import corrupted_cell, corrupted_text_cell
from turnout_serving.predictor import MODEL_REJECTED, csv_text_columns

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
        refused = reading_refusal(self.turnout.url, content_type, body)
        if refused is not None:  # a recorded reading difference (tests/parity/parsing.py)
            assert ours.status_code == 400, ours.text[:300]
            assert ours.json()["message"] == refused, ours.text[:300]
            return
        assert_same(theirs, ours)


_SCHEMAS: dict[str, InputSchema | None] = {}


def reading_refusal(url: str, content_type: str | None, body: bytes) -> str | None:
    """The message of turnout's reading rule for this request, when the rule refuses one of its
    cells: MLflow would have changed that value silently (the rule itself is checked against
    MLflow's code in tests/unit/test_parse_parity.py). None when the rule lets it through."""
    if url not in _SCHEMAS:
        described = httpx.get(f"{url}/info", timeout=10).json()["signature"]
        _SCHEMAS[url] = described and InputSchema(
            tuple(Column(c["name"], c["type"], c["required"]) for c in described)
        )
    schema, mime = _SCHEMAS[url], (content_type or "").split(";")[0].strip().lower()
    if schema is None:
        return None
    refused = None
    if mime == "application/json":
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if isinstance(document, dict):
            refused = corrupted_cell(document, schema)
    elif mime == "text/csv":
        with contextlib.suppress(UnicodeDecodeError):
            refused = corrupted_text_cell(csv_text_columns(body.decode()), schema)
    return refused.message if refused is not None else None


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
