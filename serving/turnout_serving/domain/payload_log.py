"""What a logged inference request looks like: its columns redacted or hashed, as one JSON line
or as two CloudEvents (the request, the response) in HTTP binary mode, as KServe's logger sends.

A log entry is taken from a live answer (`payload_log.py` samples and queues it); what is read
from it here is the input as the model read it, by column (`Scored.columns`, the same for every
input format and protocol), so a column named in `redact` or `hash` is protected whatever format
the client sent. A redacted value is replaced by `REDACTED`; a hashed one by the hex HMAC-SHA256
of its text (`str(value)`) keyed with a secret salt, so equal values still join across log lines
(and with a table hashed the same way) without the value being readable. Missing values stay null.

Pure: no clock, no I/O; the time is taken by the caller when the answer is given.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import orjson

REDACTED = "REDACTED"
REQUEST_TYPE = "dev.turnout.inference.request"
RESPONSE_TYPE = "dev.turnout.inference.response"


@dataclass(frozen=True)
class Protection:
    """Which input columns are redacted and which hashed, and the hash's key."""

    redact: frozenset[str] = frozenset()
    hash: frozenset[str] = frozenset()
    salt: bytes = b""

    def __post_init__(self) -> None:
        both = self.redact & self.hash
        if both:
            raise ValueError(f"columns both redacted and hashed: {', '.join(sorted(both))}")
        if self.hash and not self.salt:
            raise ValueError("hashing columns needs a salt (a secret, so hashes cannot be "
                             "reversed by hashing guesses)")  # fmt: skip

    def column(self, name: str, values: list[Any]) -> list[Any]:
        if name in self.redact:
            return [REDACTED] * len(values)
        if name in self.hash:
            return [self.digest(value) for value in values]
        return values

    def digest(self, value: Any) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return hmac.new(self.salt, str(value).encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One live answer to log."""

    request_id: str
    time: str  # RFC 3339, UTC, when the answer was given
    protocol: str
    path: str
    latency_seconds: float
    columns: Mapping[str, Any]  # column name -> values (arrays), as the model read them
    answer: bytes  # the response body, as the client got it
    labels: Mapping[str, str] = field(default_factory=dict)  # model, version, color


def inputs(entry: Entry, protection: Protection) -> dict[str, list[Any]] | None:
    """The input by column, protected; None when the request was not read as a table."""
    if not entry.columns:
        return None
    return {name: protection.column(name, _plain(values)) for name, values in entry.columns.items()}


def json_line(entry: Entry, protection: Protection) -> bytes:
    """The entry as one JSON document (a line, on stdout), without the trailing newline."""
    labels = entry.labels
    return orjson.dumps(
        {
            "id": entry.request_id,
            "time": entry.time,
            "model": labels.get("model"),
            "version": labels.get("version"),
            "color": labels.get("color"),
            "protocol": entry.protocol,
            "path": entry.path,
            "latencySeconds": round(entry.latency_seconds, 6),
            "inputs": inputs(entry, protection),
            "response": _document(entry.answer),
        },
        default=str,
    )


def cloud_events(entry: Entry, protection: Protection) -> list[tuple[dict[str, str], bytes]]:
    """The entry as two CloudEvents in HTTP binary mode, (headers, body) each: the request (its
    protected inputs, with protocol and path) and the response (the body the client got)."""
    labels = entry.labels
    common = {
        "ce-specversion": "1.0",
        "ce-id": entry.request_id,
        "ce-source": _source(labels),
        "ce-time": entry.time,
        "ce-model": _header(labels.get("model", "")),
        "ce-version": _header(labels.get("version", "")),
        "ce-color": _header(labels.get("color", "")),
        "content-type": "application/json",
    }
    request = orjson.dumps(
        {"protocol": entry.protocol, "path": entry.path, "inputs": inputs(entry, protection)},
        default=str,
    )
    return [
        ({**common, "ce-type": REQUEST_TYPE}, request),
        ({**common, "ce-type": RESPONSE_TYPE}, entry.answer),
    ]


Format = Literal["json", "cloudevents"]


def _source(labels: Mapping[str, str]) -> str:
    """A URI reference naming the model and version: `/models/<model>/versions/<version>`."""
    model, version = (
        quote(labels.get("model", ""), safe=""),
        quote(labels.get("version", ""), safe=""),
    )
    return f"/models/{model}/versions/{version}"


def _header(value: str) -> str:
    """A CloudEvents attribute as an HTTP header value: percent-encoded outside printable ASCII
    and for space, double quote and percent (the HTTP binding's rule)."""
    return "".join(
        c if 0x21 <= ord(c) <= 0x7E and c not in '"%' else quote(c, safe="") for c in value
    )


def _document(body: bytes) -> Any:
    """The answer as a JSON value; MLflow writes a NaN prediction as a bare `NaN`, which orjson
    refuses and Python's reader takes (written back as null)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return json.loads(body)
        except ValueError:
            return body.decode(errors="replace")


def _plain(values: Any) -> list[Any]:
    """An array's values as Python values (NaN kept as a float, written as null)."""
    return values.tolist() if hasattr(values, "tolist") else list(values)
