"""One error hierarchy for the server, each error carrying its HTTP status.

Domain code raises these; `app.py` maps them to responses in one place. The JSON body matches
`mlflow models serve` (`{"error_code": ..., "message": ...}`) so clients written against MLflow
parse our errors too; we never put a stack trace in it.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base of every error the server turns into an HTTP response."""

    status_code = 500
    error_code = "INTERNAL_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServingError):
    """The request body cannot be read as a scoring payload.

    `error_code` may be given to keep the code MLflow itself chose for the same input
    (`INVALID_PARAMETER_VALUE` for a missing column, ...), so both servers answer alike.
    """

    status_code = 400
    error_code = "BAD_REQUEST"

    def __init__(self, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        if error_code is not None:
            self.error_code = error_code


class SchemaMismatch(BadRequest):
    """The payload is well-formed but does not match the model signature."""

    def __init__(
        self, message: str, field: str | None = None, error_code: str | None = None
    ) -> None:
        super().__init__(message, error_code)
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


class UnsupportedMediaType(ServingError):
    status_code = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"


class ModelNotReady(ServingError):
    status_code = 503
    error_code = "TEMPORARILY_UNAVAILABLE"


class PredictionFailed(ServingError):
    """The model raised. The client sees only the request id; the log has the traceback."""

    def __init__(self, request_id: str) -> None:
        super().__init__(
            "The model failed to predict on this input; "
            f"quote request id {request_id} to the server's operators."
        )
        self.request_id = request_id
