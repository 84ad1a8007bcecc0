"""Open Inference Protocol (KServe V2 REST) endpoints.

The same model, metrics, drift and feedback as `/invocations`; only the wire format differs, so
a client written for KServe or Seldon Core v2 (MLServer) talks to turnout-serve unchanged.
Inference goes through the same data plane, `Runtime.infer` (the tensors are read and the output
tensor written by `dataplane.py`): the endpoint checks the model name it was asked for and
translates HTTP. Errors under /v2 answer in the protocol's form, `{"error": "<message>"}`
(`http.answer_error`).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from turnout_serving import __version__
from turnout_serving.dataplane import InferenceProtocol
from turnout_serving.domain.tensors import datatype_of_mlflow
from turnout_serving.errors import NotFound
from turnout_serving.http import Instrumented
from turnout_serving.routes import answer, live_request
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
            protocol = InferenceProtocol.OPEN_INFERENCE
            return await answer(runtime, live_request(request, body, request_id, protocol))

        return await instrumented(request, handle)

    return router
