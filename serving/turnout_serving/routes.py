"""MLflow scoring-protocol endpoints, health, version, what is served, and feedback.

`/invocations`, `/ping`, `/health` and `/version` answer as `mlflow models serve` does (`/version`
is MLflow's bare version string), so a client can switch servers by changing a host name.
`/info` describes what this server serves (model, resolved version, run, flavor, color, drift).
`/invocations` only translates HTTP: the body `Instrumented` read goes to the data plane,
`Runtime.infer`, and its answer back; `/feedback` joins labels to what the data plane kept.
"""

from __future__ import annotations

from typing import Any

import mlflow.version
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from turnout_serving import __version__
from turnout_serving.dataplane import InferenceProtocol, InferenceRequest
from turnout_serving.errors import BadRequest
from turnout_serving.http import Instrumented
from turnout_serving.runtime import Runtime


def mlflow_router(runtime: Runtime, instrumented: Instrumented) -> APIRouter:
    router = APIRouter()

    async def ping() -> Response:
        if runtime.state.ready:
            return Response("\n", 200, media_type="application/json")
        return Response(
            orjson.dumps({"status": "loading" if runtime.state.loading else "failed",
                          "message": runtime.state.error or "The model is still loading."}),
            503,
            media_type="application/json",
        )  # fmt: skip

    router.add_api_route("/ping", ping, methods=["GET"])
    router.add_api_route("/health", ping, methods=["GET"])

    @router.get("/version")
    async def version() -> Response:
        # MLflow's answer, byte for byte: its version, labelled JSON though it is not.
        return Response(mlflow.version.VERSION, media_type="application/json")

    @router.get("/info")
    async def info() -> Response:
        return Response(orjson.dumps(describe(runtime)), media_type="application/json")

    @router.post("/invocations")
    async def invocations(request: Request) -> Response:
        async def handle(body: bytes, request_id: str) -> Response:
            asked = live_request(request, body, request_id, InferenceProtocol.MLFLOW)
            return await answer(runtime, asked)

        return await instrumented(request, handle)

    @router.post("/feedback")
    async def feedback(request: Request) -> Response:
        async def handle(body: bytes, request_id: str) -> Response:
            items = _feedback_items(body)
            results = [runtime.feedback(item["request_id"], item["label"]) for item in items]
            answer = [{"request_id": item["request_id"], "result": result.value}
                      for item, result in zip(items, results, strict=True)]  # fmt: skip
            return Response(orjson.dumps({"results": answer}), media_type="application/json")

        # Not rate limited: labels are cheap to join (no scoring) and come in bursts from the
        # pipelines that catch up on them; one refused would be a label lost.
        return await instrumented(request, handle, limited=False)

    return router


def live_request(
    request: Request, body: bytes, request_id: str, protocol: InferenceProtocol
) -> InferenceRequest:
    """A client's inference request, as the data plane takes it."""
    content_type = request.headers.get("content-type")
    return InferenceRequest(
        body, content_type, request_id, protocol, live=True, path=request.scope["path"]
    )


async def answer(runtime: Runtime, asked: InferenceRequest) -> Response:
    """The data plane's answer to `asked`, as an HTTP response."""
    answered = await runtime.infer(asked)
    return Response(answered.body, media_type="application/json")


def describe(runtime: Runtime) -> dict[str, Any]:
    """What this server serves (`/info`)."""
    model, source = runtime.model, runtime.provider.source
    return {
        "turnout_version": __version__,
        "mlflow_version": mlflow.version.VERSION,
        "model_uri": source.uri,
        "resolved_uri": source.download_uri,
        "model_name": runtime.metrics.labels["model"],
        "model_version": runtime.metrics.labels["version"],
        "run_id": model.source.run_id if model else source.run_id,
        "flavor": model.flavor if model else None,
        "color": runtime.settings.color,
        "ready": runtime.state.ready,
        "fast_path": bool(runtime.predictor and runtime.predictor.fast_path),
        "drift": runtime.state.drift_status,
        "signature": model.input_schema.describe() if model and model.input_schema else None,
    }


def _feedback_items(body: bytes) -> list[dict[str, Any]]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Feedback must be JSON: {exc}") from exc
    items = document if isinstance(document, list) else [document]
    for item in items:
        if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
            raise BadRequest(
                'Feedback must be {"request_id": ..., "label": ...} or a list of them.'
            )
        if not isinstance(item["request_id"], str):
            raise BadRequest("Feedback request_id must be a string.")
    return items
