"""The app factory: `create_app(settings, model, registry) -> FastAPI`.

Everything the app uses is handed in: settings, a model provider (resolved already; loaded by the
lifespan in a worker thread while liveness answers and readiness waits) and the metrics registry.
Tests build as many independent apps as they like in one process.

A request to an inference endpoint takes the shortest way through: `ServingApp` counts its
answer (`http.answer_counted`), `/invocations` skips the router (the fast lane), `Instrumented`
does the HTTP plumbing (request id, auth, body, deadline, errors), and the endpoint hands the
body to the data plane, `Runtime.infer`, which reads, scores, writes the answer and records what
a live answer leaves behind (rows, drift, feedback), then hands the answer to the mirror of
shadow traffic (`mirror.py`; `shadow.py` holds its admin endpoints and the preview's
`POST /shadow`) and to the payload log (`payload_log.py`), both of which return at once.

Parsing and scoring that do not run on the event loop (see `Runtime.infer`) run in a pool of
`scoring_threads` worker threads (the loop's default executor, which `asyncio.to_thread` uses):
more requests than that queue instead of contending for the GIL with the event loop, which must
stay free to answer health checks and scrapes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from turnout_serving import __version__
from turnout_serving.dataplane import Answer, InferenceRequest
from turnout_serving.errors import BadRequest, ServingError
from turnout_serving.http import (
    OIP_PREFIX,
    Instrumented,
    TokenCheck,
    answer_counted,
    answer_error,
    counted_endpoint,
)
from turnout_serving.metrics import ShadowMetrics
from turnout_serving.mirror import Mirror
from turnout_serving.oip import oip_router
from turnout_serving.payload_log import PayloadLog
from turnout_serving.routes import mlflow_router
from turnout_serving.runtime import ModelProvider, Runtime
from turnout_serving.settings import ServingSettings
from turnout_serving.shadow import Comparer, shadow_router

log = logging.getLogger("turnout_serving")


def create_app(
    settings: ServingSettings,
    model: ModelProvider,
    registry: CollectorRegistry,
    tokens: TokenCheck | None = None,
    admin: TokenCheck | None = None,
) -> FastAPI:
    """The app; `tokens` and `admin` default to those the settings name
    (`TokenCheck.from_settings`, `TokenCheck.admin_from_settings`)."""
    runtime = Runtime(settings, model, registry)
    instrumented = Instrumented(
        tokens or TokenCheck.from_settings(settings), settings, runtime.metrics
    )
    shadow_metrics = ShadowMetrics(registry, runtime.metrics.labels)
    mirror = Mirror(
        shadow_metrics,
        queue_size=settings.shadow_queue_size,
        timeout_seconds=settings.shadow_timeout_seconds,
    )
    payload_log = PayloadLog.from_settings(settings, registry, runtime.metrics.labels)
    runtime.on_live_answer = mirror.offer if payload_log is None else _both(mirror, payload_log)
    comparer = Comparer(
        runtime,
        shadow_metrics,
        tolerance=settings.shadow_tolerance,
        window_rows=settings.shadow_window_rows,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workers = ThreadPoolExecutor(settings.scoring_threads, thread_name_prefix="scoring")
        asyncio.get_running_loop().set_default_executor(workers)
        loading = asyncio.create_task(asyncio.to_thread(runtime.load))
        if payload_log is not None:
            payload_log.start()
        yield
        runtime.stop()
        await mirror.close()
        if payload_log is not None:
            await asyncio.to_thread(payload_log.close, settings.payload_log_timeout_seconds)
        if not loading.done():
            log.info("shutting down while the model is still loading")

    app = ServingApp(
        runtime.metrics,
        title="turnout-serve",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if settings.api_docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.api_docs else None,
    )
    app.state.runtime, app.state.mirror, app.state.payload_log = runtime, mirror, payload_log
    scoring = mlflow_router(runtime, instrumented)
    app.include_router(scoring)
    app.include_router(oip_router(runtime, instrumented))
    admin = admin or TokenCheck.admin_from_settings(settings)
    app.include_router(
        shadow_router(mirror, comparer, instrumented, admin, settings.read_timeout_seconds)
    )

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, error: ServingError) -> Response:
        return answer_error(request.url.path, error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        return answer_error(request.url.path, BadRequest(str(error.errors())[:500]))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        """The router's own answers (404, 405): in the Open Inference Protocol's form under
        /v2, as FastAPI words them elsewhere."""
        if not request.url.path.startswith(OIP_PREFIX):
            return await http_exception_handler(request, error)
        response = answer_error(request.url.path, _HttpError(error.status_code, error.detail))
        response.headers.update(error.headers or {})
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
        return answer_error(request.url.path, ServingError("Internal server error."))

    invocations = next(r for r in scoring.routes if getattr(r, "path", "") == "/invocations")
    app.fast_lanes[("POST", "/invocations")] = invocations.endpoint  # type: ignore[attr-defined]
    return app


def _both(mirror: Mirror, payload_log: PayloadLog) -> Callable[..., None]:
    """Hands a live answer to the mirror and the payload log (each returns at once)."""

    def offer(request: InferenceRequest, answer: Answer, seconds: float) -> None:
        mirror.offer(request, answer, seconds)
        payload_log.offer(request, answer, seconds)

    return offer


class _HttpError(ServingError):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class ServingApp(FastAPI):
    """FastAPI with fast lanes and one counter of answers.

    Fast lanes: requests to a few hot endpoints skip the middleware stack and the router, which
    for a one-row prediction cost about a third of the server's time. A lane runs the very
    endpoint function the router registers, so behaviour, OpenAPI and the tests that call
    through the router stay the same; only the dispatch is shorter.

    Every request to an inference endpoint, lane or router, goes through `answer_counted`, so
    `turnout_inference_requests_total` counts each answer by the status actually sent; an
    exception that escapes a lane is answered there too, as a 500 in the endpoint's protocol.
    """

    def __init__(self, metrics: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics
        self.fast_lanes: dict[tuple[str, str], Callable[[Request], Awaitable[Response]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = counted_endpoint(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None:
            await super().__call__(scope, receive, send)
            return
        await answer_counted(self.metrics, endpoint, self._dispatch, scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.fast_lanes.get((scope["method"], scope["path"]))
        if lane is not None:
            response = await lane(Request(scope, receive))
            await response(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)
