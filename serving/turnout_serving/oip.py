"""Open Inference Protocol (KServe V2 REST) endpoints.

The same model, metrics, drift and feedback as `/invocations`; only the wire format differs, so
a client written for KServe or Seldon Core v2 (MLServer) talks to turnout-serve unchanged.
Errors under /v2 answer in the protocol's form, `{"error": "<message>"}` (`http.answer_error`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import Response

from turnout_serving import __version__
from turnout_serving.domain.limits import BatchLimits
from turnout_serving.domain.tensors import datatype_of_mlflow, decode_inputs, encode_output
from turnout_serving.errors import NotFound
from turnout_serving.http import Instrumented
from turnout_serving.predictor import decode_json
from turnout_serving.runtime import Runtime


def oip_router(runtime: Runtime, instrumented: Instrumented) -> APIRouter:
    router = APIRouter(prefix="/v2")
    labels = runtime.metrics.labels

    def json(content: Any, status: int = 200) -> Response:
        return Response(orjson.dumps(content), status, media_type="application/json")

    def check_name(name: str, version: str | None = None) -> None:
        if name != labels["model"] or (version is not None and version != labels["version"]):
            served = f"{labels['model']} version {labels['version']}"
            raise NotFound(f"Model {name!r}{f' version {version}' if version else ''} is not "
                           f"served here; this server serves {served}.")  # fmt: skip

    @router.get("")
    async def server_metadata() -> Response:
        return json({"name": "turnout-serve", "version": __version__, "extensions": []})

    @router.get("/health/live")
    async def live() -> Response:
        alive = runtime.state.error is None
        return json({"live": alive}, 200 if alive else 503)

    @router.get("/health/ready")
    async def ready() -> Response:
        return json({"ready": runtime.state.ready}, 200 if runtime.state.ready else 503)

    @router.get("/models/{name}")
    @router.get("/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None) -> Response:
        check_name(name, version)
        model = runtime.model
        schema = model.input_schema if model else None
        inputs = [
            {"name": c.name, "datatype": datatype_of_mlflow(c.kind), "shape": [-1]}
            for c in (schema.columns if schema else ())
        ]
        return json({
            "name": name,
            "versions": [labels["version"]],
            "platform": f"mlflow-{model.flavor}" if model else "mlflow",
            "inputs": inputs,
            "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1]}],
        })  # fmt: skip

    @router.get("/models/{name}/ready")
    @router.get("/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> Response:
        check_name(name, version)
        return json(
            {"name": name, "ready": runtime.state.ready}, 200 if runtime.state.ready else 503
        )

    @router.post("/models/{name}/infer")
    @router.post("/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        async def handle(body: bytes, request_id: str) -> Response:
            check_name(name, version)
            return json(await asyncio.to_thread(_infer, runtime, body, request_id))

        return await instrumented("v2_infer", request, handle)

    return router


def _infer(runtime: Runtime, body: bytes, request_id: str) -> dict[str, Any]:
    predictor = runtime.require_ready()
    document = decode_json(body)
    schema = runtime.model.input_schema if runtime.model else None
    limits = BatchLimits(runtime.settings.max_rows, runtime.settings.max_cells)
    columns = decode_inputs(document, schema.names if schema else (), limits)
    scored = predictor.score_frame(pd.DataFrame(columns), request_id)
    runtime.after_score(scored, request_id)
    answer: dict[str, Any] = {
        "model_name": runtime.metrics.labels["model"],
        "model_version": runtime.metrics.labels["version"],
        "id": document.get("id") or request_id,
        "outputs": [encode_output(scored.raw)],
    }
    return answer
