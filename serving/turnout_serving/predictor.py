"""Scoring: request body in, predictions out, with MLflow's semantics and a numeric fast path.

Every payload MLflow's scoring server reads faithfully is read here with the same answer: the
general path decodes JSON with Python's `json` (as MLflow does: `NaN` literals and integers of any
size included) and calls MLflow's own parsers and `PyFuncModel.predict` (signature enforcement
included). Before that, `domain.values.corrupted_cell` refuses, with a 400 naming the column and
the row, the values MLflow would change silently (3.5 truncated into a `long` column, ...). For a
scikit-learn model whose signature is all `double`/`long` columns, `domain.payload.read_numeric`
builds the float64 matrix directly (orjson) and the estimator's predict function is called on it,
skipping the JSON -> DataFrame -> schema-enforcement round trip that dominates MLflow's latency.

Errors come out as `errors.ServingError`s; a model that raises is a `PredictionFailed` carrying
the request id, with the traceback only in the log.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import time
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sklearn
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server

from turnout_serving.domain.payload import NumericBatch, numeric_frame, read_numeric
from turnout_serving.domain.values import corrupted_cell, corrupted_text_cell
from turnout_serving.errors import (
    BadRequest,
    PredictionFailed,
    SchemaMismatch,
    ServingError,
    UnsupportedMediaType,
)
from turnout_serving.model_source import LoadedModel

log = logging.getLogger("turnout_serving.predict")

CONTENT_TYPES = ("application/json", "text/csv", "application/vnd.apache.parquet")
# MLflow's words when the model raises on the input; we add the reason instead of a traceback.
MODEL_REJECTED = (
    "Encountered an unexpected error while evaluating the model. Verify that the serialized "
    "input Dataframe is compatible with the model for inference."
)
_DUMP = orjson.OPT_SERIALIZE_NUMPY
QUICK_SECONDS = 0.002


@dataclass(frozen=True)
class Scored:
    """One scored request: what the model returned, plus what metrics, drift and feedback need."""

    raw: Any  # what the model returned
    rows: int
    columns: Mapping[str, np.ndarray]
    predictions: np.ndarray | None  # one value per row, or None when not a flat vector
    unified: bool = False  # answered as the model's output alone (unified LLM input)


@dataclass(frozen=True)
class Parsed:
    """A request body read either as a numeric batch (fast path) or as MLflow reads it."""

    batch: NumericBatch | None = None
    data: Any = None
    params: Any = None
    unified: bool = False  # MLflow's `is_unified_llm_input`: {"messages"|"prompt"|"input": ...}


class Predictor:
    """Scores payloads against one loaded model."""

    def __init__(self, model: LoadedModel, *, fast_path: bool = True) -> None:
        """`fast_path=False` reads every payload MLflow's way (the parity tests compare both)."""
        self.model = model
        self._fast = _fast_predict_fn(model) if fast_path else None
        self._accepts_params = "params" in inspect.signature(model.pyfunc.predict).parameters
        self.fast_seconds = 0.0  # moving average of fast-path predict calls

    @property
    def fast_path(self) -> bool:
        return self._fast is not None

    @property
    def quick(self) -> bool:
        """True while fast-path predictions take well under a millisecond or two: short enough
        to run on the event loop rather than pay for a thread hand-off."""
        return self._fast is not None and self.fast_seconds < QUICK_SECONDS

    def parse(self, body: bytes, content_type: str | None) -> Parsed:
        """Read a request body: a numeric batch for the fast path, else MLflow's own reading."""
        mime = _check_content_type(content_type)
        try:
            if mime == "application/json":
                return self._parse_json(body)
            if mime == "text/csv":
                return Parsed(data=self._parse_csv(body))
            parquet = io.BytesIO(body)
            return Parsed(data=self._mlflow_call(scoring_server.parse_parquet_input, parquet))
        except RecursionError as exc:
            raise _too_deep() from exc

    def _parse_json(self, body: bytes) -> Parsed:
        document = decode_json(body)
        schema = self.model.input_schema
        if self._fast is not None:
            batch = read_numeric(document, schema)
            if batch is not None:
                return Parsed(batch=batch)
        if schema is not None:
            refused = corrupted_cell(document, schema)
            if refused is not None:
                raise SchemaMismatch(refused.message, field=refused.column)
        data, params, unified = self._mlflow_call(
            scoring_server._parse_json_data,
            document,
            self.model.pyfunc.metadata,
            self.model.mlflow_schema,
        )
        return Parsed(data=data, params=params, unified=unified)

    def parse_frame(self, frame: pd.DataFrame) -> Parsed:
        """An in-memory frame (warm-up, Open Inference Protocol): a numeric batch for the fast
        path, else the frame as the model's input."""
        if self._fast is not None:
            batch = numeric_frame(frame, self.model.input_schema)
            if batch is not None:
                return Parsed(batch=batch)
        return Parsed(data=frame)

    def score_parsed(self, parsed: Parsed, request_id: str) -> Scored:
        if parsed.batch is not None:
            return self._score_fast(parsed.batch, request_id)
        scored = self._score_general(parsed.data, parsed.params, request_id)
        return replace(scored, unified=True, rows=1) if parsed.unified else scored

    def _score_fast(self, batch: NumericBatch, request_id: str) -> Scored:
        assert self._fast is not None
        started = time.perf_counter()
        try:
            if np.isfinite(batch.matrix).all():
                # Checked just now: spare scikit-learn its own finiteness scan (same answer).
                with sklearn.config_context(assume_finite=True):
                    raw = self._fast(batch.matrix)
            else:
                raw = self._fast(batch.matrix)
        except Exception as exc:
            raise self._failure(exc, request_id, batch.matrix) from exc
        self.fast_seconds += 0.05 * (time.perf_counter() - started - self.fast_seconds)
        return _scored(raw, batch.rows, batch.columns())

    def _score_general(self, data: Any, params: Any, request_id: str) -> Scored:
        pyfunc = self.model.pyfunc
        try:
            if self._accepts_params:
                raw = pyfunc.predict(data, params=params)
            else:
                raw = pyfunc.predict(data)
        except MlflowException as exc:
            if exc.get_http_status_code() < 500:
                # MLflow's own wording: the input it could not predict on, then why.
                message = f"Failed to predict data '{data}'. \nError: {exc.message}"
                raise SchemaMismatch.wrapping(exc, message) from exc
            raise self._failure(exc, request_id, data) from exc
        except RecursionError as exc:
            raise _too_deep() from exc
        except Exception as exc:
            raise self._failure(exc, request_id, data) from exc
        columns = _frame_columns(data)
        rows = len(data) if hasattr(data, "__len__") else 1
        return _scored(raw, rows, columns)

    def _parse_csv(self, body: bytes) -> Any:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(
                "Invalid input. Ensure that input is a valid UTF-8 encoded string. "
                f"Error: '{exc!r}'"
            ) from exc
        if self.model.input_schema is not None:
            refused = corrupted_text_cell(csv_text_columns(text), self.model.input_schema)
            if refused is not None:
                raise SchemaMismatch(refused.message, field=refused.column)
        return self._mlflow_call(
            scoring_server.parse_csv_input, io.StringIO(text), self.model.mlflow_schema
        )

    @staticmethod
    def _mlflow_call(fn: Callable[..., Any], *args: Any) -> Any:
        """Call one of MLflow's parsers, turning its exceptions into ours (message kept). A
        parser only reads the payload, so whatever it raises is the payload's fault: MLflow lets
        some of these escape as a 500 (a list as a column name, values nested past Python's
        recursion limit); here they are a 400."""
        try:
            return fn(*args)
        except MlflowException as exc:
            raise BadRequest.wrapping(exc) from exc
        except RecursionError as exc:
            raise _too_deep() from exc
        except Exception as exc:
            raise BadRequest(
                f"The payload cannot be read as a DataFrame or tensors: {type(exc).__name__}: "
                f"{str(exc)[:200]}"
            ) from exc

    def _failure(self, exc: Exception, request_id: str, data: Any) -> ServingError:
        """The model raised: the input's fault (400, saying why) or the model's (500, request id).

        The input is at fault when it holds missing values or no rows at all (LightGBM refuses
        an empty frame), or when scikit-learn's own input validation refused it (wrong width,
        unseen feature names, ...): without a signature that is the only check a payload meets,
        and MLflow answers it with a 400 too.
        """
        if _no_rows(data):
            return BadRequest(
                f"{MODEL_REJECTED} The model cannot predict on a request with no rows: "
                f"{type(exc).__name__}: {str(exc)[:200]}"
            )
        columns = _missing_columns(data)
        if columns:
            return BadRequest(
                f"{MODEL_REJECTED} The model cannot predict on missing values, found in columns "
                f"{columns}: {type(exc).__name__}: {str(exc)[:200]}"
            )
        if _raised_by_input_validation(exc):
            return BadRequest(f"{MODEL_REJECTED} The model rejected the input: {str(exc)[:300]}")
        log.error("prediction failed for request %s", request_id, exc_info=exc)
        return PredictionFailed(request_id)


_SKLEARN_VALIDATION = os.path.join("sklearn", "utils", "validation.py")


def _raised_by_input_validation(exc: Exception) -> bool:
    """True when a ValueError was raised inside scikit-learn's input validation (`check_array`,
    `validate_data`: wrong width, feature names, strings for numbers)."""
    if not isinstance(exc, ValueError):
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    return any(frame.filename.endswith(_SKLEARN_VALIDATION) for frame in frames)


def _fast_predict_fn(model: LoadedModel) -> Callable[[np.ndarray], Any] | None:
    """The estimator's own predict function, when the fast path gives MLflow's exact answer."""
    schema = model.input_schema
    if model.flavor != "sklearn" or schema is None or not schema.fast:
        return None
    if model.pyfunc.metadata.get_params_schema() is not None:
        return None
    estimator = model.pyfunc.get_raw_model()
    trained_on = getattr(estimator, "feature_names_in_", None)
    if trained_on is not None and tuple(trained_on) != schema.names:
        return None  # the signature's column order is not the estimator's; let MLflow reorder
    fn = getattr(estimator, model.predict_fn, None)
    if fn is not None and trained_on is not None:
        # The matrix columns are in the estimator's own order (checked above), so its warning
        # that a bare array has no feature names carries no information. A process-wide filter:
        # `catch_warnings` per call would race between the server's worker threads.
        warnings.filterwarnings(
            "ignore", message="X does not have valid feature names", category=UserWarning
        )
    return fn


def _check_content_type(content_type: str | None) -> str:
    """MLflow's content-type rules: a known type, utf-8 only, no other parameters."""
    if not content_type:
        raise UnsupportedMediaType(_unsupported_type("no Content-Type header"))
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    values = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in parameters)}
    if values.get("charset", "utf-8").lower() != "utf-8":
        raise UnsupportedMediaType("The scoring server only supports UTF-8")
    if unexpected := set(values).difference({"charset"}):
        raise UnsupportedMediaType(  # in MLflow's (set) order, as MLflow words it
            f"Unrecognized content type parameters: {', '.join(unexpected)}. "
            f"{scoring_server.SCORING_PROTOCOL_CHANGE_INFO}"
        )
    if mime.lower() not in CONTENT_TYPES:
        raise UnsupportedMediaType(_unsupported_type(f"'{content_type}'"))
    return mime.lower()


def _unsupported_type(got: str) -> str:
    return (
        "This predictor only supports the following content types: "
        f"Types: {scoring_server.CONTENT_TYPES}. Got {got}."
    )


# orjson reads an integer past 64 bits as a float (below -2**63 that is 19 digits already; past
# 2**64, 20); Python's reader keeps it whole. Bodies with 19 digits in a row take Python's reader:
# the same answer, more slowly; floats rarely have that many (0.000 then 17 digits). Found by
# mapping digits to b"1" (C speed).
_DIGITS = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x30 for byte in range(256))
_LONG_RUN = b"1" * 19


def _has_long_number(body: bytes) -> bool:
    return _LONG_RUN in body.translate(_DIGITS)


def decode_json(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object. orjson reads the usual ones; anything else goes
    to MLflow's own reader, which takes what orjson refuses (NaN, huge integers, UTF-16 bodies)
    and words the refusals as MLflow does."""
    try:
        document = None if _has_long_number(body) else orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict):
        return document
    # MLflow's reader words its refusals; nested past its reach is a 400 too (MLflow: a 500)
    decoded: dict[str, Any] = Predictor._mlflow_call(scoring_server._decode_json_input, body)
    return decoded


def _too_deep() -> BadRequest:
    return BadRequest(
        "The payload is nested too deeply to read: send each value as a number, a string, "
        "a boolean or null, in rows or columns."
    )


def _scored(raw: Any, rows: int, columns: Mapping[str, np.ndarray]) -> Scored:
    flat = raw if isinstance(raw, np.ndarray) and raw.ndim == 1 and len(raw) == rows else None
    if flat is None and isinstance(raw, pd.Series) and len(raw) == rows:
        flat = raw.to_numpy()
    return Scored(raw=raw, rows=rows, columns=columns, predictions=flat)


def predictions_body(scored: Scored) -> bytes:
    """The response body exactly as MLflow's scoring server writes it: `{"predictions": ...}`,
    or the model's output alone for unified LLM input, pandas as records, NaN as MLflow writes it.

    A plain finite float64/integer/boolean array is written by orjson (same numbers, a fraction
    of the time); everything else by MLflow's own writers, so every type reads back the same.
    """
    raw = scored.raw
    if (
        not scored.unified
        and isinstance(raw, np.ndarray)
        and raw.dtype in _ORJSON_EXACT
        and (raw.dtype.kind != "f" or np.isfinite(raw).all())
    ):
        with contextlib.suppress(orjson.JSONEncodeError):  # e.g. not C-contiguous
            return orjson.dumps({"predictions": raw}, option=_DUMP)
    writer = (
        scoring_server.unwrapped_predictions_to_json
        if scored.unified
        else scoring_server.predictions_to_json
    )
    out = io.StringIO()
    try:
        writer(raw, out)
    except (TypeError, ValueError) as exc:
        log.error("the model's output cannot be written as JSON", exc_info=exc)
        raise ServingError(
            f"The model returned {type(raw).__name__} output that cannot be written as JSON: {exc}"
        ) from exc
    return out.getvalue().encode()


# dtypes whose values orjson writes as the numbers Python's json writes (float32 is not: MLflow
# widens it to a Python float first, which prints more digits)
_ORJSON_EXACT = frozenset(
    np.dtype(t) for t in ("float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
                          "uint32", "uint64", "bool")
)  # fmt: skip


def csv_text_columns(text: str) -> dict[str, list[str | None]]:
    """A CSV payload's cells as the text sent (None where empty); {} if pandas cannot read it
    (MLflow's own reading then says why)."""
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except Exception:
        return {}
    return {
        str(name): [None if pd.isna(v) else v for v in frame.iloc[:, j]]
        for j, name in enumerate(frame.columns)
    }


def _frame_columns(data: Any) -> Mapping[str, np.ndarray]:
    if isinstance(data, pd.DataFrame):
        # by position: a frame's column names may repeat or be unhashable (lists from JSON)
        return {str(name): data.iloc[:, j].to_numpy() for j, name in enumerate(data.columns)}
    return {}


def _no_rows(data: Any) -> bool:
    """A frame or array of no rows, or named columns (`inputs` as a dict) each of no values."""
    if isinstance(data, dict) and data:
        return all(isinstance(v, np.ndarray | list) and len(v) == 0 for v in data.values())
    return isinstance(data, pd.DataFrame | np.ndarray) and len(data) == 0


def _missing_columns(data: Any) -> list[str]:
    if isinstance(data, pd.DataFrame):
        return [str(c) for c in data.columns[data.isna().any().to_numpy()]]
    if isinstance(data, np.ndarray) and data.dtype.kind == "f" and np.isnan(data).any():
        return ["<array>"]
    return []
