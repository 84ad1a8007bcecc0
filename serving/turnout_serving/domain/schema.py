"""The model's input signature as plain data.

MLflow's `Schema` lives behind an import of mlflow; the domain needs only names and types to
decide whether a payload can take the fast numeric path and to say which field is wrong. The
MLflow adapter (`model_source.py`) converts a `Schema` into an `InputSchema`.
"""

from __future__ import annotations

from dataclasses import dataclass

# MLflow DataType names the fast path reads straight into a float64 matrix. `float` (float32) and
# `integer` (int32) are left to MLflow's own enforcement: their casting rules differ from numpy's.
FAST_KINDS = frozenset({"double", "long"})
NUMERIC_KINDS = frozenset({"double", "float", "long", "integer"})


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # an MLflow DataType name: double, float, long, integer, boolean, string, ...
    required: bool = True


@dataclass(frozen=True)
class InputSchema:
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def fast(self) -> bool:
        """True when every column is required and of a kind the numeric fast path reads."""
        return bool(self.columns) and all(c.required and c.kind in FAST_KINDS for c in self.columns)

    def describe(self) -> list[dict[str, object]]:
        return [{"name": c.name, "type": c.kind, "required": c.required} for c in self.columns]
