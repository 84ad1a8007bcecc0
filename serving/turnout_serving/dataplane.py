"""What the data plane speaks: one inference request, its answer, and each protocol's wire form.

Every inference request, whatever endpoint it came to, takes one path, `Runtime.infer`: readiness,
reading (with the batch work limits), scoring on the event loop or in a scoring thread, writing
the answer, then the side effects of live traffic. This module holds the parts of that path that
differ by protocol, so an endpoint only translates HTTP to an `InferenceRequest` and an `Answer`
back, and a new endpoint cannot forget a side effect: it never performs one.

- MLflow's scoring protocol (`/invocations`): the work a body asks for is checked from what its
  format says (`BatchLimits.check_scoring_body`), then `Predictor.parse` reads it as MLflow does;
  the answer is `predictions_body`, byte for byte MLflow's.
- The Open Inference Protocol (`/v2/models/{name}/infer`): `decode_json`, then `decode_inputs`
  (shapes and limits checked before anything is allocated) into the signature's columns; the
  answer is one `predict` output tensor, the request's `id` echoed (else the request id).

Nothing here does I/O or keeps state: reading and writing are functions of the request, the
predictor and the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
import pandas as pd

from turnout_serving.domain.limits import BatchLimits
from turnout_serving.domain.tensors import decode_inputs, encode_output
from turnout_serving.predictor import Parsed, Predictor, Scored, decode_json, predictions_body

# Bodies up to this size, for a quick fast-path model, are read and scored on the event loop.
INLINE_MAX_BYTES = 64 * 1024


class InferenceProtocol(StrEnum):
    MLFLOW = "mlflow"  # MLflow's scoring protocol: /invocations
    OPEN_INFERENCE = "open_inference"  # the Open Inference Protocol (KServe V2): /v2/.../infer


@dataclass(frozen=True)
class InferenceRequest:
    """One inference request as the data plane takes it: the body an endpoint read, and how.

    `live` is False for a copy of traffic (a shadow of the active color's requests sent to the
    preview): it is scored and answered alike, but counts no rows, feeds no drift, is not kept
    for feedback and is not mirrored again, which belong to the traffic clients actually sent.
    `path` is where the client sent it (a copy keeps the active's), carried along for the logs.
    """

    body: bytes
    content_type: str | None
    request_id: str
    protocol: InferenceProtocol
    live: bool
    path: str = ""


@dataclass(frozen=True)
class Answer:
    """The response body in the request's protocol, and what was scored."""

    body: bytes
    scored: Scored


@dataclass(frozen=True)
class Read:
    """A request read for scoring, with what its answer must echo."""

    parsed: Parsed
    answer_id: Any = None  # the Open Inference Protocol's `id`


def scores_inline(predictor: Predictor, request: InferenceRequest) -> bool:
    """Whether the request may be read (and, on the fast path, scored) on the event loop: up to
    a few hundred rows for a quick numeric scikit-learn model take about a millisecond, and a
    thread hand-off costs about as much and buys no parallelism under the GIL."""
    return predictor.quick and len(request.body) <= INLINE_MAX_BYTES


def read_request(request: InferenceRequest, predictor: Predictor, limits: BatchLimits) -> Read:
    """The request's body as the model's input; refuses (4xx `ServingError`) what it cannot
    read or what asks for more work than `limits` allow."""
    if request.protocol is InferenceProtocol.MLFLOW:
        limits.check_scoring_body(request.body, request.content_type)
        return Read(predictor.parse(request.body, request.content_type))
    document = decode_json(request.body)
    schema = predictor.model.input_schema
    columns = decode_inputs(document, schema.names if schema else (), limits)
    parsed = predictor.parse_frame(pd.DataFrame(columns))
    return Read(parsed, answer_id=document.get("id") or request.request_id)


def write_answer(
    request: InferenceRequest, read: Read, scored: Scored, labels: Mapping[str, str]
) -> bytes:
    """The response body in the request's protocol; `labels` name the model and version served."""
    if request.protocol is InferenceProtocol.MLFLOW:
        return predictions_body(scored)
    return orjson.dumps({
        "model_name": labels["model"],
        "model_version": labels["version"],
        "id": read.answer_id,
        "outputs": [encode_output(scored.raw)],
    })  # fmt: skip
