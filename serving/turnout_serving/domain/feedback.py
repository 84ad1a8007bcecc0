"""Joining ground truth to earlier predictions, and the live quality it yields.

Labels arrive late (minutes to days) and by request id, so predictions are kept, bounded both in
time (`ttl_seconds`) and in memory (`max_rows` predicted rows across all requests, oldest first
out). A label for a request we no longer hold is `expired` when we evicted it, `unknown` when we
never saw it: the difference tells an operator whether to raise the limits or fix the client.

Pure: the clock is passed in, nothing here does I/O.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np


class FeedbackResult(StrEnum):
    MATCHED = "matched"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass(frozen=True)
class LiveQuality:
    """Quality over the last `window` labelled rows; None until a label has arrived."""

    rows: int
    mae: float | None = None
    rmse: float | None = None
    accuracy: float | None = None


class PredictionStore:
    """Predictions awaiting labels, keyed by request id."""

    def __init__(self, ttl_seconds: float, max_rows: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl_seconds
        self._max_rows = max_rows
        self._clock = clock
        self._pending: OrderedDict[str, tuple[float, np.ndarray]] = OrderedDict()
        self._rows = 0
        # Ids we dropped, remembered (bounded) so a late label reads "expired", not "unknown".
        self._evicted: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def rows(self) -> int:
        return self._rows

    def record(self, request_id: str, predictions: np.ndarray) -> None:
        now = self._clock()
        self._expire(now)
        if request_id in self._pending:
            self._drop(request_id)
        self._pending[request_id] = (now, predictions)
        self._rows += len(predictions)
        while self._rows > self._max_rows and self._pending:
            self._drop(next(iter(self._pending)))

    def take(self, request_id: str) -> tuple[FeedbackResult, np.ndarray | None]:
        """Remove and return the predictions of a request (each label counts once)."""
        self._expire(self._clock())
        entry = self._pending.pop(request_id, None)
        if entry is not None:
            self._rows -= len(entry[1])
            return FeedbackResult.MATCHED, entry[1]
        if request_id in self._evicted:
            return FeedbackResult.EXPIRED, None
        return FeedbackResult.UNKNOWN, None

    def _expire(self, now: float) -> None:
        while self._pending:
            oldest_id, (recorded_at, _) = next(iter(self._pending.items()))
            if now - recorded_at <= self._ttl:
                return
            self._drop(oldest_id)

    def _drop(self, request_id: str) -> None:
        _, predictions = self._pending.pop(request_id)
        self._rows -= len(predictions)
        self._evicted[request_id] = None
        while len(self._evicted) > max(self._max_rows, 1):
            self._evicted.popitem(last=False)


class QualityWindow:
    """Sliding window of (prediction, label) pairs: MAE/RMSE for regression, accuracy otherwise."""

    def __init__(self, size: int, task: str) -> None:
        if task not in ("regression", "classification"):
            raise ValueError(f"task must be regression or classification, not {task!r}")
        self.task = task
        self._pairs: deque[tuple[Any, Any]] = deque(maxlen=size)

    def add(self, predictions: Sequence[Any], labels: Sequence[Any]) -> None:
        self._pairs.extend(zip(predictions, labels, strict=True))

    def quality(self) -> LiveQuality:
        if not self._pairs:
            return LiveQuality(rows=0)
        if self.task == "classification":
            hits = sum(1 for p, y in self._pairs if _same_label(p, y))
            return LiveQuality(rows=len(self._pairs), accuracy=hits / len(self._pairs))
        errors = np.abs(np.array([float(p) - float(y) for p, y in self._pairs]))
        # Scaled by the largest error, so neither the squares nor the sums overflow: labels near
        # the float64 range (1e308) give a large live RMSE, never +Inf.
        scale = float(errors.max())
        if scale == 0.0:
            return LiveQuality(rows=len(errors), mae=0.0, rmse=0.0)
        scaled = errors / scale
        return LiveQuality(
            rows=len(errors),
            mae=scale * float(np.mean(scaled)),
            rmse=scale * math.sqrt(float(np.mean(scaled**2))),
        )


def _same_label(prediction: Any, label: Any) -> bool:
    """Labels compare by value across JSON's types: 1 == 1.0 == "1" is not assumed, 1 == 1.0 is."""
    if isinstance(prediction, np.generic):
        prediction = prediction.item()
    return bool(prediction == label)


def labels_for(predictions: np.ndarray, label: Any, task: str) -> list[Any] | None:
    """Match a label payload to a request's rows: one value per row, or a scalar for one row.

    None when the count or the type is wrong (a regression label must be a number whose error
    against the prediction is a finite float: not 1e308 against a prediction of -1e308).
    """
    labels = label if isinstance(label, list) else [label]
    if len(labels) != len(predictions):
        return None
    if task == "regression":
        if not all(type(y) in (int, float) for y in labels):
            return None
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                errors = np.asarray(predictions, np.float64) - np.array(labels, np.float64)
        except (TypeError, ValueError):
            return None
        if not np.isfinite(errors).all():
            return None
    if any(y is None or isinstance(y, dict | list) for y in labels):
        return None
    return labels
