"""Deliberate differences in responses, endpoints and the command line (see `differences.py`).

Each is checked by `tests/integration/test_parity_protocol.py`, which runs `mlflow models serve`
and `turnout-serve` side by side and asserts the difference exactly as stated here.
"""

from __future__ import annotations

from tests.parity.differences import Difference

PROTOCOL: list[Difference] = [
    Difference(
        key="stack_trace",
        topic="error bodies",
        example="POST /invocations, Content-Type: text/csv, empty body",
        mlflow="400 with `error_code`, `message`, `error_class`, `sqlstate` and `stack_trace` "
        "(the server's Python traceback)",
        turnout="the same body without `stack_trace`; the traceback goes to the server's log",
        why="a traceback tells a caller about the server's code and paths, and nothing they can "
        "act on",
    ),
    Difference(
        key="model_raises",
        topic="a model that raises on valid input",
        example="a pyfunc whose predict raises ValueError",
        mlflow="400 BAD_REQUEST, 'Encountered an unexpected error while evaluating the model...' "
        "with the traceback",
        turnout="500 INTERNAL_ERROR whose message and `request_id` name the request; the "
        "traceback is in the log under that id",
        why="the model's fault is not the caller's: a 5xx reaches error-rate alerts and "
        "rollout analysis, and the id finds the traceback",
    ),
    Difference(
        key="input_rejected",
        topic="input the model's own validation refuses",
        example='{"dataframe_split": {"columns": [0], "data": [[0], [1]]}} to a 2-feature '
        "scikit-learn model",
        mlflow="400 BAD_REQUEST, 'Encountered an unexpected error while evaluating the model...' "
        "with the traceback",
        turnout="400 BAD_REQUEST, the same words followed by the reason (e.g. 'The model rejected "
        "the input: X has 1 features, but ... is expecting 2', or the columns holding missing "
        "values), no traceback",
        why="the caller learns what to fix without reading a traceback",
    ),
    Difference(
        key="no_content_type",
        topic="a request without Content-Type",
        example="POST /invocations with no Content-Type header",
        mlflow="500 'Internal Server Error' (text/plain)",
        turnout="415 text/plain, MLflow's 'This predictor only supports the following content "
        "types' naming the missing header",
        why="the caller's omission is a 4xx that says what to send",
    ),
    Difference(
        key="timeout_body",
        topic="a request past the timeout",
        example="`-t 1` and a model that takes 3 s",
        mlflow="504 with the bare text 'Request processing time exceeded limit' labelled "
        "application/json (not JSON)",
        turnout='504 JSON {"error_code": "DEADLINE_EXCEEDED", "message": "Request processing '
        'time exceeded limit", "request_id": ...}',
        why="a body labelled JSON should parse as JSON, like every other error",
    ),
    Difference(
        key="unwritable_output",
        topic="a model output JSON cannot hold",
        example="a pyfunc returning a Python set",
        mlflow="500 'Internal Server Error' (text/plain)",
        turnout="500 JSON INTERNAL_ERROR naming the output's type and why it cannot be written",
        why="the operator learns what the model returned without a debugger",
    ),
    Difference(
        key="ignored_flags",
        topic="flags for MLflow's environments and workers",
        example="-w 2, --env-manager virtualenv, --no-conda, --install-mlflow",
        mlflow="forks that many workers; builds a virtualenv or conda environment for the model",
        turnout="accepted, logged once ('--workers 2 ignored: ...'); one process in its own "
        "environment",
        why="one process per pod keeps metrics, drift and feedback in one place (scale with "
        "replicas); the image is the model's environment",
    ),
    Difference(
        key="listens_while_loading",
        topic="health while the model loads",
        example="GET /ping during a slow model load",
        mlflow="refuses connections until the model has loaded, then 200",
        turnout='listens at once: 503 {"status": "loading", ...} until loaded and warmed up, '
        "then 200",
        why="Kubernetes tells a loading pod from a dead one (liveness vs readiness)",
    ),
    Difference(
        key="load_failure_exit",
        topic="a model that cannot load",
        example="a pyfunc whose load_context raises",
        mlflow="exits with status 1 after uvicorn's traceback and a wrapper exception",
        turnout="exits with status 3, the last line naming the reason",
        why="a distinct status (2: cannot resolve, 3: cannot load) says which of the two failed",
    ),
    Difference(
        key="registry_unreachable",
        topic="a registry that does not answer",
        example="MLFLOW_TRACKING_URI at a socket that accepts and stays silent",
        mlflow="keeps waiting and retrying inside its HTTP client for minutes",
        turnout="exits with status 2 after --registry-timeout seconds (60 by default), naming "
        "the registry",
        why="a pod that cannot start says so within a bounded, configurable time",
    ),
]
