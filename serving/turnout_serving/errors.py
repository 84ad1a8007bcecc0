"""One error hierarchy for the server, each error carrying its HTTP status.

Domain code raises these; `http.error_response` turns them into responses in one place. The body
is MLflow's (`MlflowException.serialize_as_json`: `error_code`, `message`, `error_class`,
`sqlstate`) so clients written against `mlflow models serve` parse our errors too; it never holds
a stack trace. This module imports nothing from MLflow (the domain raises these): `error_class`
and `sqlstate` are kept when an MLflow exception is wrapped, and otherwise derived from the
error code by `error_response` with MLflow's own classification.
"""

from __future__ import annotations

from typing import Any


class ServingError(Exception):
    """Base of every error the server turns into an HTTP response."""

    status_code = 500
    error_code = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        error_code: str | None = None,
        *,
        error_class: str | None = None,
        sqlstate: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if error_code is not None:
            self.error_code = error_code
        self.error_class = error_class
        self.sqlstate = sqlstate

    @classmethod
    def wrapping(cls, exc: Any, message: str | None = None) -> ServingError:
        """This error for an `MlflowException`, keeping its code, class and SQL state (and its
        message unless one is given); never its stack trace."""
        return cls(
            exc.message if message is None else message,
            error_code=exc.error_code,
            error_class=getattr(exc, "error_class", None),
            sqlstate=getattr(exc, "sqlstate", None),
        )


class BadRequest(ServingError):
    """The request body cannot be read as a scoring payload.

    `error_code` may be given to keep the code MLflow itself chose for the same input
    (`INVALID_PARAMETER_VALUE` for a missing column, ...), so both servers answer alike.
    """

    status_code = 400
    error_code = "BAD_REQUEST"


class SchemaMismatch(BadRequest):
    """The payload is well-formed but does not match the model signature."""

    def __init__(
        self,
        message: str,
        field: str | None = None,
        error_code: str | None = None,
        **classification: str | None,
    ) -> None:
        super().__init__(message, error_code, **classification)
        self.field = field


class MissingInputs(SchemaMismatch):
    """Signature columns absent from the payload (or no rows at all): MLflow's signature
    enforcement answers these with `INVALID_PARAMETER_VALUE`, and so do we."""

    error_code = "INVALID_PARAMETER_VALUE"


class Unauthorized(ServingError):
    status_code = 401
    error_code = "UNAUTHENTICATED"


class NotFound(ServingError):
    status_code = 404
    error_code = "RESOURCE_DOES_NOT_EXIST"


class PayloadTooLarge(ServingError):
    status_code = 413
    error_code = "PAYLOAD_TOO_LARGE"


class RequestTimeout(ServingError):
    """The client did not send the whole request in time (a body that never arrives)."""

    status_code = 408
    error_code = "REQUEST_TIMEOUT"


class TooManyRequests(ServingError):
    """The client spent its rate limit; `retry_after` whole seconds until it may ask again."""

    status_code = 429
    error_code = "REQUEST_LIMIT_EXCEEDED"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnsupportedMediaType(ServingError):
    """Answered as MLflow answers it: the message alone, as text/plain."""

    status_code = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"


class ModelNotReady(ServingError):
    status_code = 503
    error_code = "TEMPORARILY_UNAVAILABLE"


class PredictionFailed(ServingError):
    """The model raised. The client sees only the request id; the log has the traceback."""

    def __init__(self, request_id: str, message: str | None = None) -> None:
        super().__init__(
            message
            or "The model failed to predict on this input; "
            f"quote request id {request_id} to the server's operators."
        )
        self.request_id = request_id
