"""The reference profile: what the training data looked like, reduced to bin counts.

Drift is judged by comparing live traffic with the data the model was trained on, but the serving
pod must never need the training set itself. So at training time we keep only what the tests in
`drift_stats` need: per numeric feature the 2 %-quantile edges and how many training rows fell in
each bin (plus the coarser decile bins PSI uses), per categorical feature the top-K vocabulary and
its counts. The live window (`drift_window`) bins traffic on exactly these edges.

Bins are right-closed, ``(-inf, e0], (e0, e1], ..., (e_last, inf)``, found with
``np.searchsorted(edges, x, side="left")``, so the cumulative count at ``e_j`` is the empirical CDF
``F(e_j) = #{x <= e_j} / n`` that the Kolmogorov-Smirnov statistic is made of. Edges are
inverted-CDF quantiles (values that occur in the sample), duplicates from ties dropped; the decile
edges are then a subset of the 2 % edges (rank ``ceil(n k / 10) == ceil(n 5k / 50)``), so decile
counts are sums of fine counts and the live window keeps only the fine ones.

This module is pure (numpy, pandas); it must never import MLflow or a metrics client. The profile
is a plain value: ``to_dict``/``from_dict`` round-trip through JSON and ``digest`` identifies it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

FORMAT = 1
FINE_STEPS = 50  # edges at the 2 % quantiles 0.02, ..., 0.98
DECILE_STEPS = 10  # PSI's edges at 0.1, ..., 0.9
PREDICTION = "prediction"


@dataclass(frozen=True)
class NumericProfile:
    """Bins of one numeric column; ``counts`` has ``len(edges) + 1`` entries, missing excluded."""

    name: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    decile_edges: tuple[float, ...]
    decile_counts: tuple[int, ...]
    missing: int = 0
    kind: str = field(default="numeric", init=False)

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.edges) + 1:
            raise ValueError(
                f"{self.name}: {len(self.edges)} edges need {len(self.edges) + 1} counts"
            )
        if len(self.decile_counts) != len(self.decile_edges) + 1:
            raise ValueError(f"{self.name}: decile edges and counts do not match")
        if not set(self.decile_edges) <= set(self.edges):
            raise ValueError(f"{self.name}: decile edges must be a subset of the fine edges")

    @property
    def rows(self) -> int:
        """Non-missing reference rows: the N of the two-sample tests."""
        return sum(self.counts)

    @cached_property
    def edges_array(self) -> np.ndarray:
        return np.asarray(self.edges, dtype=np.float64)

    @cached_property
    def counts_array(self) -> np.ndarray:
        return np.asarray(self.counts, dtype=np.int64)

    @cached_property
    def decile_counts_array(self) -> np.ndarray:
        return np.asarray(self.decile_counts, dtype=np.int64)

    @cached_property
    def decile_of_bin(self) -> np.ndarray:
        """Decile bin of each fine bin, to fold live fine counts into PSI's deciles."""
        upper = np.append(self.edges_array, np.inf)  # right end of each fine bin
        return np.searchsorted(np.asarray(self.decile_edges, dtype=np.float64), upper, side="left")


@dataclass(frozen=True)
class CategoricalProfile:
    """Top-K vocabulary of one column; ``counts[-1]`` is the out-of-vocabulary bin."""

    name: str
    vocabulary: tuple[str, ...]
    counts: tuple[int, ...]
    missing: int = 0
    kind: str = field(default="categorical", init=False)

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.vocabulary) + 1:
            raise ValueError(f"{self.name}: {len(self.vocabulary)} categories need one more count")

    @property
    def rows(self) -> int:
        return sum(self.counts)

    @cached_property
    def counts_array(self) -> np.ndarray:
        return np.asarray(self.counts, dtype=np.int64)


FeatureProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class ReferenceProfile:
    """Everything the drift tests know about the training data."""

    rows: int
    features: tuple[FeatureProfile, ...]
    prediction: FeatureProfile | None = None
    top_k: int = 20

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "rows": self.rows,
            "top_k": self.top_k,
            "features": [_feature_to_dict(f) for f in self.features],
            "prediction": None if self.prediction is None else _feature_to_dict(self.prediction),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        if data.get("format") != FORMAT:
            raise ValueError(f"unsupported reference profile format {data.get('format')!r}")
        prediction = data.get("prediction")
        return cls(
            rows=int(data["rows"]),
            top_k=int(data["top_k"]),
            features=tuple(_feature_from_dict(f) for f in data["features"]),
            prediction=None if prediction is None else _feature_from_dict(prediction),
        )

    @cached_property
    def digest(self) -> str:
        """Same training data, same digest: sha256 of the canonical JSON, first 16 hex digits."""
        canonical = json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def build_profile(
    X: pd.DataFrame, predictions: Any | None = None, *, top_k: int = 20
) -> ReferenceProfile:
    """Profile every column of ``X`` (and the model's predictions on it, when given)."""
    if top_k < 1:
        raise ValueError("top_k must be at least 1")
    if X.columns.has_duplicates:
        raise ValueError("X has duplicate column names; the profile is keyed by name")
    features = tuple(_profile_column(str(name), X[name], top_k) for name in X.columns)
    prediction = None
    if predictions is not None:
        values = np.asarray(predictions)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1 or len(values) != len(X):
            raise ValueError(
                f"predictions must be one value per row of X, got shape {values.shape}"
            )
        prediction = _profile_column(PREDICTION, pd.Series(values), top_k)
    return ReferenceProfile(rows=len(X), features=features, prediction=prediction, top_k=top_k)


def is_numeric(series: pd.Series) -> bool:
    """Numbers are binned on quantiles; bools, strings and categories are counted by value."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return False
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return True
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        return False
    raise TypeError(f"column {series.name!r} has dtype {dtype}: convert it to numbers or strings")


def _profile_column(name: str, series: pd.Series, top_k: int) -> FeatureProfile:
    missing = int(series.isna().sum())
    if not is_numeric(series):
        return _categorical(name, series.dropna().astype(str), missing, top_k)
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    values = np.sort(values[~np.isnan(values)])  # sorted once: quantiles and counts read it
    edges = _edges(values, FINE_STEPS)
    decile_edges = _edges(values, DECILE_STEPS)
    return NumericProfile(
        name=name,
        edges=tuple(float(e) for e in edges),
        counts=_bin_counts(values, edges),
        decile_edges=tuple(float(e) for e in decile_edges),
        decile_counts=_bin_counts(values, decile_edges),
        missing=missing,
    )


def _edges(ordered: np.ndarray, steps: int) -> np.ndarray:
    """Inverted-CDF quantiles at k/steps: the smallest x with ``#{<= x} >= n k / steps``.

    The rank is a ceiling taken in integers: ``np.quantile(..., method="inverted_cdf")`` computes
    it in floating point, where 100 * 0.14 = 14.000000000000002 gives the 15th value, not the 14th.
    """
    finite = ordered[np.isfinite(ordered)]  # JSON has no infinities; +-inf land in the outer bins
    if finite.size == 0:
        return np.empty(0)
    ranks = -(-len(finite) * np.arange(1, steps) // steps)  # ceil(n k / steps), 1-based
    return np.unique(finite[ranks - 1])


def _bin_counts(ordered: np.ndarray, edges: np.ndarray) -> tuple[int, ...]:
    """Right-closed bin counts: ``#{x <= e_j}`` is a search of the edge in the sorted values."""
    at_or_below = np.searchsorted(ordered, edges, side="right")
    counts = np.diff(at_or_below, prepend=0, append=len(ordered))
    return tuple(int(c) for c in counts)


def _categorical(name: str, values: pd.Series, missing: int, top_k: int) -> CategoricalProfile:
    frequencies = values.value_counts()
    # Ties in frequency are broken by the value so the same data always gives the same profile.
    ranked = sorted(frequencies.items(), key=lambda item: (-item[1], item[0]))
    vocabulary = tuple(str(value) for value, _ in ranked[:top_k])
    kept = [int(count) for _, count in ranked[:top_k]]
    out_of_vocabulary = int(sum(count for _, count in ranked[top_k:]))
    return CategoricalProfile(
        name=name, vocabulary=vocabulary, counts=(*kept, out_of_vocabulary), missing=missing
    )


def _feature_to_dict(feature: FeatureProfile) -> dict[str, Any]:
    if isinstance(feature, NumericProfile):
        return {
            "name": feature.name,
            "kind": feature.kind,
            "edges": list(feature.edges),
            "counts": list(feature.counts),
            "decile_edges": list(feature.decile_edges),
            "decile_counts": list(feature.decile_counts),
            "missing": feature.missing,
        }
    return {
        "name": feature.name,
        "kind": feature.kind,
        "vocabulary": list(feature.vocabulary),
        "counts": list(feature.counts),
        "missing": feature.missing,
    }


def _feature_from_dict(data: Mapping[str, Any]) -> FeatureProfile:
    if data["kind"] == "numeric":
        return NumericProfile(
            name=str(data["name"]),
            edges=tuple(float(e) for e in data["edges"]),
            counts=tuple(int(c) for c in data["counts"]),
            decile_edges=tuple(float(e) for e in data["decile_edges"]),
            decile_counts=tuple(int(c) for c in data["decile_counts"]),
            missing=int(data["missing"]),
        )
    if data["kind"] == "categorical":
        return CategoricalProfile(
            name=str(data["name"]),
            vocabulary=tuple(str(v) for v in data["vocabulary"]),
            counts=tuple(int(c) for c in data["counts"]),
            missing=int(data["missing"]),
        )
    raise ValueError(f"unknown feature kind {data['kind']!r}")
