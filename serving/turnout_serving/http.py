"""HTTP plumbing shared by every endpoint: body limits, request ids, auth, timing, errors.

Kept apart from the routes so the MLflow-protocol and Open-Inference-Protocol endpoints handle
bodies, ids, tokens, timeouts and metrics in exactly one way.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from turnout_serving.errors import (
    PayloadTooLarge,
    PredictionFailed,
    ServingError,
    Unauthorized,
)
from turnout_serving.settings import ServingSettings

log = logging.getLogger("turnout_serving.http")

REQUEST_ID_HEADER = "X-Request-Id"
# The token may also come in this header: the Kubernetes API server's service proxy deletes
# `Authorization` before forwarding (it authenticated the caller with it), so a client going
# through `kubectl proxy` or the operator's smoke test cannot send the token there.
TOKEN_HEADER = "X-Turnout-Token"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_of(request: Request) -> str:
    """The client's id when it is a sane token (it joins feedback later), else a fresh one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _CLIENT_ID.match(given) else os.urandom(16).hex()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes before buffering it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"The request body of {declared} bytes exceeds the {limit}-byte limit."
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body exceeds the {limit}-byte limit.")
        chunks.append(chunk)
    return b"".join(chunks)


def error_response(error: ServingError, request_id: str | None = None) -> Response:
    content: dict[str, Any] = {"error_code": error.error_code, "message": error.message}
    if isinstance(error, PredictionFailed):
        content["request_id"] = error.request_id
    headers = {REQUEST_ID_HEADER: request_id} if request_id else None
    if isinstance(error, Unauthorized):
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return Response(
        orjson.dumps(content), error.status_code, headers=headers, media_type="application/json"
    )


class TokenCheck:
    """Bearer-token auth; with no tokens configured every request passes."""

    def __init__(self, tokens: list[str]) -> None:
        self._tokens = [t.encode() for t in tokens if t]

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> TokenCheck:
        tokens: list[str] = []
        if settings.auth_tokens is not None:
            tokens += [t.strip() for t in settings.auth_tokens.get_secret_value().split(",")]
        if settings.auth_token_file is not None:
            text = Path(settings.auth_token_file).read_text()
            tokens += [line.strip() for line in text.splitlines()]
        return cls(tokens)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def check(self, request: Request) -> None:
        """A request passes with a valid token in `Authorization: Bearer` or in `TOKEN_HEADER`."""
        if not self._tokens:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        bearer = given.strip().encode() if scheme.lower() == "bearer" else b""
        offered = (bearer, request.headers.get(TOKEN_HEADER, "").strip().encode())
        # Compare against every token, so the time taken does not tell which one nearly matched.
        matched = False
        for token in self._tokens:
            for candidate in offered:
                matched |= hmac.compare_digest(candidate, token)
        if not matched:
            raise Unauthorized(
                f"A valid bearer token is required (Authorization: Bearer <token>, or "
                f"{TOKEN_HEADER}: <token>)."
            )


class Instrumented:
    """Counts, times and tracks in-flight requests of one endpoint; maps errors to responses."""

    def __init__(self, metrics: Any, tokens: TokenCheck, settings: ServingSettings) -> None:
        self._metrics = metrics
        self._tokens = tokens
        self._settings = settings

    async def __call__(
        self,
        endpoint: str,
        request: Request,
        handle: Callable[[bytes, str], Awaitable[Response]],
    ) -> Response:
        request_id = request_id_of(request)
        started = time.perf_counter()
        self._metrics.in_flight.inc()
        try:
            self._tokens.check(request)
            body = await read_body(request, self._settings.max_body_bytes)
            async with asyncio.timeout(self._settings.request_timeout_seconds):
                response = await handle(body, request_id)
            response.headers[REQUEST_ID_HEADER] = request_id
        except ServingError as error:
            response = error_response(error, request_id)
        except TimeoutError:
            log.warning("request %s exceeded the %ss timeout", request_id,
                        self._settings.request_timeout_seconds)  # fmt: skip
            response = Response(
                orjson.dumps(
                    {
                        "error_code": "DEADLINE_EXCEEDED",
                        "message": "Request processing time exceeded limit",
                        "request_id": request_id,
                    }
                ),
                504,
                headers={REQUEST_ID_HEADER: request_id},
                media_type="application/json",
            )
        finally:
            self._metrics.in_flight.dec()
        self._metrics.observe_request(endpoint, response.status_code, time.perf_counter() - started)
        return response


async def answer_directly(
    endpoint: Callable[[Request], Awaitable[Response]], scope: Scope, receive: Receive, send: Send
) -> None:
    """Run one endpoint as a bare ASGI app (see `app.ServingApp`), errors still as JSON."""
    try:
        response = await endpoint(Request(scope, receive))
    except Exception:
        log.exception("unexpected error on %s", scope["path"])
        response = error_response(ServingError("Internal server error."))
    await response(scope, receive, send)
