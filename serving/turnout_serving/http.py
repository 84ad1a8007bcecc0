"""HTTP plumbing shared by every endpoint: body limits, request ids, auth, timing, errors.

Kept apart from the routes so the MLflow-protocol and Open-Inference-Protocol endpoints handle
bodies, ids, tokens, timeouts and metrics in exactly one way. Only HTTP lives here: what a body
means, the work it may ask for and what answering it leaves behind are the data plane's
(`Runtime.infer`). Errors answer in the protocol of the endpoint asked: `{"error": ...}` under
`/v2` (Open Inference Protocol), MLflow's `{"error_code", "message"}` elsewhere. Every answer of
an inference endpoint is counted by `answer_counted`, the one place that sees each response's
status, whatever produced it.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from turnout_serving.domain.ratelimit import RateLimits
from turnout_serving.errors import (
    PayloadTooLarge,
    PredictionFailed,
    RequestTimeout,
    ServingError,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)
from turnout_serving.settings import ServingSettings

log = logging.getLogger("turnout_serving.http")

REQUEST_ID_HEADER = "X-Request-Id"
# The token may also come in this header: the Kubernetes API server's service proxy deletes
# `Authorization` before forwarding (it authenticated the caller with it), so a client going
# through `kubectl proxy` or the operator's smoke test cannot send the token there.
TOKEN_HEADER = "X-Turnout-Token"
ADMIN_TOKEN_HEADER = "X-Turnout-Admin-Token"  # the same, for the admin endpoints' own token
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
OIP_PREFIX = "/v2"
# The inference endpoints, whose every answer `turnout_inference_requests_total` counts.
_COUNTED = re.compile(r"^/(invocations|feedback)$|^/v2/models/[^/]+(/versions/[^/]+)?/(infer)$")


def request_id_of(request: Request) -> str:
    """The client's id when it is a sane token (it joins feedback later), else a fresh one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _CLIENT_ID.match(given) else os.urandom(16).hex()


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes before buffering it all, and
    (408) a body not received within `timeout` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"The request body of {declared} bytes exceeds the {limit}-byte limit."
        )
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"The request body exceeds the {limit}-byte limit.")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            f"The request body was not received within {timeout:g} s "
            f"({size} of {declared or 'an unknown number of'} bytes arrived)."
        ) from None
    return b"".join(chunks)


def answer_error(path: str, error: ServingError, request_id: str | None = None) -> Response:
    """An error in the protocol of the endpoint asked."""
    if path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/"):
        return oip_error_response(error, request_id)
    return error_response(error, request_id)


def oip_error_response(error: ServingError, request_id: str | None = None) -> Response:
    """The Open Inference Protocol's error form, `{"error": <message>}`."""
    return _json_error({"error": error.message}, error, request_id)


def error_response(error: ServingError, request_id: str | None = None) -> Response:
    """MLflow's error body (`MlflowException.serialize_as_json` less the stack trace), or for a
    415 MLflow's bare text/plain message; a failed prediction adds its `request_id`."""
    if isinstance(error, UnsupportedMediaType):
        headers = {REQUEST_ID_HEADER: request_id} if request_id else None
        return Response(error.message, error.status_code, headers=headers, media_type="text/plain")
    content: dict[str, Any] = {"error_code": error.error_code, "message": error.message}
    content.update(_classification(error))
    if isinstance(error, PredictionFailed):
        content["request_id"] = error.request_id
    return _json_error(content, error, request_id)


def _json_error(content: dict[str, Any], error: ServingError, request_id: str | None) -> Response:
    headers = {REQUEST_ID_HEADER: request_id} if request_id else {}
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, TooManyRequests):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, RequestTimeout):
        headers["Connection"] = "close"  # the rest of the body may still come: start afresh
    return Response(
        orjson.dumps(content), error.status_code, headers=headers, media_type="application/json"
    )


def _classification(error: ServingError) -> dict[str, str]:
    """`sqlstate` and `error_class` as MLflow derives them from the error code, unless the error
    wrapped an MLflow exception that carried its own; absent for codes MLflow does not know."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import ErrorCode

    error_class, sqlstate = error.error_class, error.sqlstate
    if (
        error_class is None
        and sqlstate is None
        and error.error_code in ErrorCode.DESCRIPTOR.values_by_name
    ):
        derived = MlflowException("", error_code=ErrorCode.Value(error.error_code))
        error_class, sqlstate = derived.error_class, derived.sqlstate
    found = {"sqlstate": sqlstate, "error_class": error_class}
    return {key: value for key, value in found.items() if value is not None}


class AuthConfigError(ValueError):
    """A token source is configured but yields no token: serving would be open to anyone."""


class TokenCheck:
    """Bearer-token auth; with no tokens configured every request passes. A token is read from
    `Authorization: Bearer` or from the check's own header (`TOKEN_HEADER` for inference,
    `ADMIN_TOKEN_HEADER` for the admin endpoints)."""

    def __init__(self, tokens: list[str], header: str = TOKEN_HEADER) -> None:
        self._tokens = [t.encode() for t in tokens if t]
        self.header = header

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> TokenCheck:
        """The configured inference tokens; raises `AuthConfigError` when a configured source
        holds none (`TURNOUT_AUTH_TOKENS=' , '`, a file of blank lines, a file that cannot be
        read): auth fails closed, never open."""
        return cls._configured(
            settings.auth_tokens, "TURNOUT_AUTH_TOKENS", settings.auth_token_file, TOKEN_HEADER,
            "bearer-token auth on",
        )  # fmt: skip

    @classmethod
    def admin_from_settings(cls, settings: ServingSettings) -> TokenCheck:
        """The admin tokens (`TURNOUT_ADMIN_TOKEN`, `TURNOUT_ADMIN_TOKEN_FILE`); none configured
        turns the admin endpoints off. Fails closed as `from_settings` does."""
        return cls._configured(
            settings.admin_token, "TURNOUT_ADMIN_TOKEN", settings.admin_token_file,
            ADMIN_TOKEN_HEADER, "admin endpoints on",
        )  # fmt: skip

    @classmethod
    def _configured(
        cls, inline: SecretStr | None, variable: str, file: Path | None, header: str, on: str
    ) -> TokenCheck:
        tokens: list[str] = []
        sources: list[str] = []
        if inline is not None:
            sources.append(variable)
            tokens += [t.strip() for t in inline.get_secret_value().split(",")]
        if file is not None:
            sources.append(f"the token file {file}")
            try:
                text = Path(file).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise AuthConfigError(f"cannot read the token file: {exc}") from exc
            tokens += [line.strip() for line in text.splitlines()]
        check = cls(tokens, header)
        if sources and not check.enabled:
            raise AuthConfigError(
                f"{' and '.join(sources)} holds no token (only blanks and separators); refusing "
                "to serve without auth. Put at least one token there, or unset it to serve "
                "without auth."
            )
        if check.enabled:
            log.info("%s: %d token(s) from %s", on, len(check._tokens), " and ".join(sources))
        return check

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def check(self, request: Request) -> int | None:
        """A request passes with a valid token in `Authorization: Bearer` or in `self.header`;
        the position of the token it gave (None with auth off), which rate limiting keys on."""
        if not self._tokens:
            return None
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        bearer = given.strip().encode() if scheme.lower() == "bearer" else b""
        offered = (bearer, request.headers.get(self.header, "").strip().encode())
        # Compare against every token, so the time taken does not tell which one nearly matched.
        matched: int | None = None
        for position, token in enumerate(self._tokens):
            for candidate in offered:
                if hmac.compare_digest(candidate, token) and matched is None:
                    matched = position
        if matched is None:
            raise Unauthorized(
                f"A valid bearer token is required (Authorization: Bearer <token>, or "
                f"{self.header}: <token>)."
            )
        return matched


class Instrumented:
    """Runs one inference endpoint's handler: request id, auth, rate limit, body (size and time
    limits), processing deadline; maps errors to responses in the endpoint's protocol. Counting
    and timing are `answer_counted`'s, which sees every answer.

    The rate limit (`rate_limit_requests_per_second`, off at 0) keys on the bearer token a
    request gave when auth is on, else on the client's address, and is checked before the body
    is read, so a refused request costs next to nothing."""

    def __init__(
        self,
        tokens: TokenCheck,
        settings: ServingSettings,
        metrics: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tokens = tokens
        self._settings = settings
        self._metrics = metrics  # ServingMetrics: counts refusals by endpoint
        self._clock = clock
        rate = settings.rate_limit_requests_per_second
        self._limits = (
            RateLimits(rate, settings.rate_limit_burst, settings.rate_limit_max_clients)
            if rate > 0
            else None
        )

    async def __call__(
        self,
        request: Request,
        handle: Callable[[bytes, str], Awaitable[Response]],
        *,
        limited: bool = True,
    ) -> Response:
        """`limited=False` for endpoints outside the inference rate limit (feedback, copies)."""
        request_id = request_id_of(request)
        path = request.url.path
        settings = self._settings
        try:
            token = self._tokens.check(request)
            if limited and self._limits is not None:
                self._admit(request, token, path)
            body = await read_body(request, settings.max_body_bytes, settings.read_timeout_seconds)
            async with asyncio.timeout(settings.request_timeout_seconds):
                response = await handle(body, request_id)
            response.headers[REQUEST_ID_HEADER] = request_id
        except ServingError as error:
            response = answer_error(path, error, request_id)
        except TimeoutError:
            log.warning("request %s exceeded the %ss timeout", request_id,
                        settings.request_timeout_seconds)  # fmt: skip
            message = "Request processing time exceeded limit"
            content = (
                {"error": message}
                if path.startswith(OIP_PREFIX)
                else {"error_code": "DEADLINE_EXCEEDED", "message": message,
                      "request_id": request_id}
            )  # fmt: skip
            response = Response(orjson.dumps(content), 504,
                                headers={REQUEST_ID_HEADER: request_id},
                                media_type="application/json")  # fmt: skip
        return response

    def _admit(self, request: Request, token: int | None, path: str) -> None:
        """Spend a token of the client's bucket, or raise `TooManyRequests`."""
        assert self._limits is not None
        client = request.client.host if request.client else "unknown"
        key = f"token:{token}" if token is not None else f"address:{client}"
        retry_after = self._limits.admit(key, self._clock())
        if retry_after == 0:
            return
        endpoint = counted_endpoint(path)
        if self._metrics is not None and endpoint in self._metrics.rate_limited:
            self._metrics.rate_limited[endpoint].inc()
        limits = self._limits
        raise TooManyRequests(
            f"Too many requests: each client may send {limits.requests_per_second:g} a second "
            f"(bursts of {limits.burst}) to this server; retry after {retry_after} s.",
            retry_after,
        )


def counted_endpoint(path: str) -> str | None:
    """The `endpoint` label of an inference path (any method), None for the others."""
    match = _COUNTED.match(path)
    if match is None:
        return None
    return "v2_infer" if match.group(3) else match.group(1)


async def answer_counted(
    metrics: Any, endpoint: str, app: ASGIApp, scope: Scope, receive: Receive, send: Send
) -> None:
    """Run `app` on one inference request and count its answer by the status actually sent,
    whatever sent it (handler, router, validation, exception handler). An exception that
    escapes `app` before a response started is answered here, as a 500 in the endpoint's
    protocol, and counted too; a client gone before any answer is not an answer."""
    status: int | None = None
    started = time.perf_counter()

    async def send_and_note(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        await send(message)

    metrics.in_flight.inc()
    try:
        try:
            await app(scope, receive, send_and_note)
        except Exception:
            if status is None:  # else an exception handler answered, and logged it
                log.exception("unexpected error on %s %s", scope["method"], scope["path"])
        if status is None:
            response = answer_error(scope["path"], ServingError("Internal server error."))
            with contextlib.suppress(OSError):
                await response(scope, receive, send_and_note)
    finally:
        metrics.in_flight.dec()
        if status is not None:
            metrics.observe_request(endpoint, status, time.perf_counter() - started)
