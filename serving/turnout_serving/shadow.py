"""Shadow traffic's endpoints: `/admin/shadow` (the active's mirroring, for the operator) and
`POST /shadow` (the preview scores a copy and compares).

- `PUT /admin/shadow` starts or renews mirroring (`domain.shadow.ShadowConfig`; a 400 names each
  wrong field), `GET` shows it, `DELETE` stops it. They need the admin token (`Authorization:
  Bearer` or `X-Turnout-Admin-Token`); with none configured they answer 404: off, never open.
- `POST /shadow` takes a batch of copies (`domain.shadow.ShadowBatch`) with the inference tokens,
  scores each through the data plane as a copy (`live=False`: no rows, drift, feedback or
  inference-request counts), and compares its predictions with the active's
  (`domain.comparison`), answering one result per copy, in order. A copy the preview cannot
  score or compare gets `"result": "error"` and its status in an answer that is still a 200:
  the preview's refusal is a finding about the preview, not a failure of the delivery.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from turnout_serving.dataplane import INLINE_MAX_BYTES, InferenceProtocol, InferenceRequest
from turnout_serving.domain.comparison import (
    AgreementWindow,
    Comparison,
    Incomparable,
    compare,
    predictions_of,
)
from turnout_serving.domain.shadow import ShadowCopy, decode_batch, read_config
from turnout_serving.errors import NotFound, ServingError
from turnout_serving.http import Instrumented, TokenCheck, answer_error, read_body
from turnout_serving.metrics import ShadowMetrics
from turnout_serving.mirror import Mirror
from turnout_serving.runtime import Runtime

log = logging.getLogger("turnout_serving.shadow")

ADMIN_MAX_BODY_BYTES = 64 * 1024


class Comparer:
    """The preview side: scores copies and keeps the agreement window and the shadow figures."""

    def __init__(
        self, runtime: Runtime, metrics: ShadowMetrics, *, tolerance: float, window_rows: int
    ) -> None:
        self._runtime, self.metrics = runtime, metrics
        self._tolerance = tolerance
        self._window = AgreementWindow(window_rows)
        self._lock = threading.Lock()  # large answers are compared in a scoring thread

    async def compare_batch(self, body: bytes) -> dict[str, Any]:
        """Score and compare each copy of a batch (concurrently: the scoring threads share
        them); raises `BadRequest` for a body that is no batch of copies."""
        copies = decode_batch(body)
        return {"results": list(await asyncio.gather(*(self.compare(c) for c in copies)))}

    async def compare(self, copy: ShadowCopy) -> dict[str, Any]:
        """Score one copy and compare."""
        request = InferenceRequest(
            copy.body, copy.content_type, copy.request_id, InferenceProtocol(copy.protocol),
            live=False, path=copy.path,
        )  # fmt: skip
        started = time.perf_counter()
        try:
            answer = await self._runtime.infer(request)
        except ServingError as error:
            return self._error(copy, str(error.status_code), error.message)
        except Exception as exc:  # never a 500 of /shadow for what the data plane did
            log.exception("shadow copy %s: scoring failed", copy.request_id)
            return self._error(copy, "500", f"{type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - started
        if len(answer.body) + len(copy.active_answer) <= INLINE_MAX_BYTES:
            return self._compare(copy, answer.body, seconds)
        return await asyncio.to_thread(self._compare, copy, answer.body, seconds)

    def _compare(self, copy: ShadowCopy, answer: bytes, seconds: float) -> dict[str, Any]:
        try:
            comparison = compare(
                predictions_of(copy.protocol, copy.active_answer),
                predictions_of(copy.protocol, answer),
                self._tolerance,
            )
        except Incomparable as exc:
            return self._error(copy, "incomparable", f"the answers cannot be compared: {exc}")
        self._record(comparison, copy.active_latency_seconds, seconds)
        return {
            "result": "compared",
            **comparison.summary(),
            "latencySeconds": seconds,
            "activeLatencySeconds": copy.active_latency_seconds,
        }

    def _record(self, comparison: Comparison, active_seconds: float, seconds: float) -> None:
        metrics = self.metrics
        with self._lock:
            self._window.add(comparison.agree)
            metrics.agreement.set(self._window.ratio())
            metrics.window_rows.set(self._window.rows)
            if comparison.abs_diff is not None:
                for diff in comparison.abs_diff.tolist():
                    if diff == diff and diff != float("inf"):  # finite: NaN != NaN
                        metrics.abs_diff.observe(diff)
            metrics.latency["active"].observe(active_seconds)
            metrics.latency["preview"].observe(seconds)
            metrics.count("compared")

    def _error(self, copy: ShadowCopy, reason: str, message: str) -> dict[str, Any]:
        log.info("shadow copy %s (%s) not compared: %s %s", copy.request_id, copy.path, reason,
                 message[:300])  # fmt: skip
        with self._lock:
            self.metrics.count("error", reason)
        status = int(reason) if reason.isdigit() else None
        return {"result": "error", "status": status, "reason": reason, "message": message}

    def refused(self, status: int) -> None:
        """/shadow itself refused a batch (auth, a body that is no batch, too large, too slow):
        counted once, as its copies could not be read."""
        with self._lock:
            self.metrics.count("error", str(status))


def shadow_router(
    mirror: Mirror,
    comparer: Comparer,
    instrumented: Instrumented,
    admin: TokenCheck,
    read_timeout_seconds: float,
) -> APIRouter:
    router = APIRouter()

    def json(content: Any) -> Response:
        return Response(orjson.dumps(content), media_type="application/json")

    async def as_admin(
        request: Request, act: Callable[[bytes], dict[str, Any]], with_body: bool = False
    ) -> Response:
        try:
            if not admin.enabled:
                raise NotFound(
                    "The admin endpoints are off: start the server with TURNOUT_ADMIN_TOKEN or "
                    "TURNOUT_ADMIN_TOKEN_FILE to turn them on."
                )
            admin.check(request)
            body = b""
            if with_body:
                body = await read_body(request, ADMIN_MAX_BODY_BYTES, read_timeout_seconds)
            return json(act(body))
        except ServingError as error:
            return answer_error(request.url.path, error)

    @router.put("/admin/shadow")
    async def start_mirroring(request: Request) -> Response:
        return await as_admin(request, lambda body: mirror.configure(read_config(body)), True)

    @router.get("/admin/shadow")
    async def mirroring(request: Request) -> Response:
        return await as_admin(request, lambda _: mirror.state())

    @router.delete("/admin/shadow")
    async def stop_mirroring(request: Request) -> Response:
        return await as_admin(request, lambda _: mirror.stop("stopped by DELETE /admin/shadow"))

    @router.post("/shadow")
    async def shadow(request: Request) -> Response:
        async def handle(body: bytes, request_id: str) -> Response:
            return json(await comparer.compare_batch(body))

        # Copies are not client traffic: the active caps them (maxRequestsPerSecond) already.
        response = await instrumented(request, handle, limited=False)
        if response.status_code != 200:
            comparer.refused(response.status_code)
        return response

    return router
