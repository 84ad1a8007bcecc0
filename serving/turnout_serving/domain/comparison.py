"""How a preview's predictions compare with the active's, row by row, for the same request.

Both answers are read from their response bodies the same way (`predictions_of`), so what is
compared is what a client would have received from each color. Three kinds of output:

- regression (floating-point values, one per row): the absolute difference |p - a| and the
  relative difference |p - a| / max(|a|, |p|) (0 when both are 0) per row; a row agrees when
  its relative difference is at most `tolerance`.
- classification (labels: integers, booleans or strings, one per row): a row agrees when the
  labels are equal.
- probabilities (a matrix, one row of class scores per row): the mean absolute difference over
  the classes per row; a row agrees when both pick the same class (the highest score).

Two NaNs agree (difference 0); a NaN against a number disagrees, and its difference is left out
of the figures. Anything else (tables of named outputs,
LLM text, answers of different lengths) is `Incomparable`, saying why.

`AgreementWindow` keeps the agreement of the last N compared rows, for the preview's gauge.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson

Kind = Literal["regression", "classification", "probabilities"]


class Incomparable(ValueError):
    """The two answers cannot be compared row by row; the message says why."""


def predictions_of(protocol: str, body: bytes) -> np.ndarray:
    """The predictions in an answer body: MLflow's `{"predictions": [...]}` or the Open
    Inference Protocol's first output tensor (reshaped to its declared shape)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:  # MLflow writes NaN and Infinity literals, which only Python's reader takes
            document = json.loads(body)
        except ValueError as exc:
            raise Incomparable(f"the answer is not JSON: {exc}") from None
    if protocol == "open_inference":
        return _tensor(document)
    if not isinstance(document, dict) or "predictions" not in document:
        raise Incomparable("the answer has no `predictions` (the model's own output format)")
    return _array(document["predictions"])


def _tensor(document: Any) -> np.ndarray:
    outputs = document.get("outputs") if isinstance(document, dict) else None
    if not outputs or not isinstance(outputs, list) or not isinstance(outputs[0], dict):
        raise Incomparable("the answer has no output tensor")
    output = outputs[0]
    data = output.get("data")
    if str(output.get("datatype", "")).startswith("FP") and isinstance(data, list):
        data = [math.nan if value is None else value for value in data]  # JSON has no NaN
    values = _array(data)
    shape = output.get("shape")
    try:
        return values.reshape([int(n) for n in shape]) if shape else values
    except (TypeError, ValueError) as exc:
        raise Incomparable(f"the output tensor's data does not fit its shape: {exc}") from None


def _array(values: Any) -> np.ndarray:
    if not isinstance(values, list):
        raise Incomparable(f"the predictions are a {type(values).__name__}, not a list")
    try:
        array = np.asarray(values)
    except ValueError as exc:  # ragged nesting
        raise Incomparable(f"the predictions are not a regular array: {exc}") from None
    if array.dtype == object or array.ndim > 2:
        raise Incomparable("the predictions are not one value or one row of scores per row")
    return array


@dataclass(frozen=True)
class Comparison:
    """One request's rows compared."""

    kind: Kind
    agree: np.ndarray  # bool per row
    abs_diff: np.ndarray | None  # per row (regression; probabilities: mean over the classes)
    rel_diff: np.ndarray | None  # per row (regression)

    @property
    def rows(self) -> int:
        return len(self.agree)

    def summary(self) -> dict[str, Any]:
        """The figures of this comparison, for the answer to the active (NaN-free JSON)."""
        found: dict[str, Any] = {
            "kind": self.kind,
            "rows": self.rows,
            "agreement": _mean(self.agree.astype(float)),
        }
        if self.abs_diff is not None:
            found["meanAbsDiff"] = _mean(self.abs_diff)
            found["maxAbsDiff"] = _max(self.abs_diff)
        if self.rel_diff is not None:
            found["meanRelDiff"] = _mean(self.rel_diff)
            found["maxRelDiff"] = _max(self.rel_diff)
        return found


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _mean(values: np.ndarray) -> float | None:
    finite = _finite(values)
    return float(finite.mean()) if len(finite) else None


def _max(values: np.ndarray) -> float | None:
    finite = _finite(values)
    return float(finite.max()) if len(finite) else None


def compare(active: np.ndarray, preview: np.ndarray, tolerance: float) -> Comparison:
    """The preview's predictions against the active's, for the same rows."""
    active, preview = _column(active), _column(preview)
    if active.shape != preview.shape:
        raise Incomparable(
            f"the active answered shape {list(active.shape)}, the preview {list(preview.shape)}"
        )
    numeric = active.dtype.kind in "biuf" and preview.dtype.kind in "biuf"
    if active.ndim == 2:
        if not numeric:
            raise Incomparable("a matrix of predictions that are not numbers")
        return _probabilities(active.astype(float), preview.astype(float))
    if numeric and "f" in (active.dtype.kind, preview.dtype.kind):
        return _regression(active.astype(float), preview.astype(float), tolerance)
    if numeric:
        return Comparison("classification", active == preview, None, None)
    return Comparison("classification", active.astype(str) == preview.astype(str), None, None)


def _column(values: np.ndarray) -> np.ndarray:
    """One value per row: a one-column matrix is a vector."""
    return values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values


def _regression(active: np.ndarray, preview: np.ndarray, tolerance: float) -> Comparison:
    same = (active == preview) | (np.isnan(active) & np.isnan(preview))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        abs_diff = np.where(same, 0.0, np.abs(preview - active))
        scale = np.maximum(np.abs(active), np.abs(preview))
        rel_diff = np.where(same, 0.0, abs_diff / scale)
    agree = same | (rel_diff <= tolerance)
    return Comparison("regression", agree, abs_diff, rel_diff)


def _probabilities(active: np.ndarray, preview: np.ndarray) -> Comparison:
    abs_diff = np.abs(preview - active).mean(axis=1)
    agree = np.argmax(active, axis=1) == np.argmax(preview, axis=1)
    return Comparison("probabilities", agree, abs_diff, None)


class AgreementWindow:
    """Whether each of the last `size` compared rows agreed (a ring buffer)."""

    def __init__(self, size: int) -> None:
        self._agreed = np.zeros(size, dtype=bool)
        self._next = 0
        self.rows = 0  # rows held, up to `size`

    def add(self, agree: np.ndarray) -> None:
        size = len(self._agreed)
        agree = agree[-size:]
        first = min(len(agree), size - self._next)
        self._agreed[self._next : self._next + first] = agree[:first]
        self._agreed[: len(agree) - first] = agree[first:]
        self._next = (self._next + len(agree)) % size
        self.rows = min(size, self.rows + len(agree))

    def ratio(self) -> float:
        """The share of rows held that agreed; NaN before the first."""
        return float(self._agreed.sum() / self.rows) if self.rows else float("nan")
