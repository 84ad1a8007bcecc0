"""Both readers side by side in one process: MLflow's scoring server and turnout's predictor.

`mlflow_reads` runs `mlflow.pyfunc.scoring_server.invocations` (the function `mlflow models
serve` runs per request: content type, JSON/CSV/parquet parsing, `PyFuncModel.predict` with its
signature enforcement) on a scikit-learn-flavoured pyfunc model whose estimator records what it
is given. `turnout_reads` runs `turnout_serving.predictor.Predictor` (fast path or general path)
on the same kind of model. Both return an `Outcome`: the status code, and for a 200 what the
estimator received.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.pyfunc import PyFuncModel, scoring_server
from mlflow.sklearn import _SklearnModelWrapper
from mlflow.types import Schema

from turnout_serving.errors import ServingError
from turnout_serving.model_source import LoadedModel, ResolvedSource, _input_schema
from turnout_serving.predictor import Predictor

JSON = "application/json"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"


@dataclass
class Outcome:
    status: int
    received: Any = None  # what the estimator's predict got, for a 200
    error_code: str = ""
    message: str = ""
    field: str | None = None
    fast: bool = False  # turnout only: the numeric fast path read it

    def __repr__(self) -> str:
        if self.status == 200:
            return f"200 {'fast ' if self.fast else ''}{_describe(self.received)}"
        return f"{self.status} {self.error_code} field={self.field} {self.message[:240]!r}"


class Recorder:
    """A scikit-learn-like estimator that keeps its input and predicts zeros."""

    def __init__(self) -> None:
        self.seen: Any = None

    def predict(self, X: Any) -> np.ndarray:
        self.seen = X
        return np.zeros(len(X) if hasattr(X, "__len__") else 1)


def pyfunc_model(schema: Schema | None) -> tuple[PyFuncModel, Recorder]:
    recorder = Recorder()
    signature = ModelSignature(inputs=schema) if schema is not None else None
    meta = Model(
        signature=signature,
        flavors={"sklearn": {}, "python_function": {"loader_module": "mlflow.sklearn"}},
    )
    return PyFuncModel(meta, _SklearnModelWrapper(recorder)), recorder


def mlflow_reads(schema: Schema | None, body: bytes, content_type: str) -> Outcome:
    model, recorder = pyfunc_model(schema)
    with _quiet():
        try:
            answer = scoring_server.invocations(
                body, content_type, model, model.metadata.get_input_schema()
            )
        except MlflowException as exc:
            return Outcome(exc.get_http_status_code(), None, exc.error_code, exc.message)
        except Exception as exc:  # uncaught in MLflow's app: FastAPI answers 500
            return Outcome(500, None, type(exc).__name__, str(exc)[:300])
    if answer.status != 200:
        return Outcome(answer.status, None, "", answer.response)
    return Outcome(200, recorder.seen)


def turnout_reads(
    schema: Schema | None, body: bytes, content_type: str, *, fast_path: bool
) -> Outcome:
    model, recorder = pyfunc_model(schema)
    loaded = LoadedModel(
        source=ResolvedSource("models:/Parity/1", "models:/Parity/1", None, name="Parity"),
        pyfunc=model,
        path=Path("."),
        flavor="sklearn",
        input_schema=_input_schema(schema),
        mlflow_schema=schema,
        input_example=None,
        reference=None,
        load_seconds=0.0,
        download_seconds=0.0,
    )
    predictor = Predictor(loaded, fast_path=fast_path)
    with _quiet():
        try:
            parsed = predictor.parse(body, content_type)
            predictor.score_parsed(parsed, "parity")
        except ServingError as exc:
            field = getattr(exc, "field", None)
            return Outcome(exc.status_code, None, exc.error_code, exc.message, field)
    return Outcome(200, recorder.seen, fast=parsed.batch is not None)


class _quiet(warnings.catch_warnings):
    """Warnings and logs as in a server (printed there, not errors): silenced here."""

    def __enter__(self) -> None:
        super().__enter__()
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)

    def __exit__(self, *exc: object) -> None:
        logging.disable(logging.NOTSET)
        super().__exit__(*exc)


def same_input(a: Any, b: Any) -> bool:
    """Equal model inputs: type, columns, dtypes, index and values (NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, pd.DataFrame):
        return (
            list(a.columns) == list(b.columns)
            and list(a.dtypes) == list(b.dtypes)
            and list(a.index) == list(b.index)
            and all(
                same_values(a.iloc[:, j].to_numpy(), b.iloc[:, j].to_numpy())
                for j in range(a.shape[1])
            )
        )
    if isinstance(a, np.ndarray):
        return same_values(a, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_input(a[k], b[k]) for k in a)
    return deep_equal(a, b)


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    if a.dtype.kind in "mM":  # NaT never equals NaT; as int64 both are the same sentinel
        return bool(np.array_equal(a.view(np.int64), b.view(np.int64)))
    if a.dtype.kind == "O":
        return all(deep_equal(x, y) for x, y in zip(a.ravel(), b.ravel(), strict=True))
    return bool(np.array_equal(a, b))


def deep_equal(a: Any, b: Any) -> bool:
    """Equality of nested lists, dicts and scalars without recursion (payloads nest thousands
    deep), NaN equal to NaN."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
                return False
            if x.dtype != y.dtype or x.shape != y.shape:
                return False
            stack.extend(zip(x.ravel().tolist(), y.ravel().tolist(), strict=True))
        elif isinstance(x, (list, tuple)):
            if type(x) is not type(y) or len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif isinstance(x, dict):
            if not isinstance(y, dict) or list(x) != list(y):
                return False
            stack.extend((x[k], y[k]) for k in x)
        elif type(x) is not type(y):
            return False
        elif x is pd.NaT or (isinstance(x, float) and x != x):
            if not (y is pd.NaT or y != y):
                return False
        elif x != y:
            return False
    return True


def as_matrix(received: Any) -> np.ndarray | None:
    """What scikit-learn makes of a numeric frame: a float64 matrix (None if not numeric)."""
    if isinstance(received, pd.DataFrame) and all(k in "iuf" for k in received.dtypes.map(
        lambda d: d.kind)):  # fmt: skip
        return received.to_numpy(dtype=np.float64)
    return None


def _describe(received: Any) -> str:
    if isinstance(received, pd.DataFrame):
        cells = {
            str(c): received.iloc[:, j].tolist()[:4] for j, c in enumerate(received.columns[:4])
        }
        return f"frame {[str(d) for d in received.dtypes]} {str(cells)[:200]}"
    if isinstance(received, np.ndarray):
        return f"array {received.dtype} {received.shape} {str(received.tolist())[:200]}"
    return f"{type(received).__name__} {str(received)[:200]}"
