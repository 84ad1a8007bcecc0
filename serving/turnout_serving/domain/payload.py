"""Fast reading of numeric scoring payloads into a float64 matrix.

MLflow's scoring server turns every JSON payload into a pandas DataFrame, then enforces the
signature column by column; for a numeric model that conversion is most of the request's cost.
This module reads the common payload shapes of the MLflow scoring protocol straight into the
matrix the estimator wants, applying MLflow's own rules (a `long` column takes only integers, a
`double` column takes integers and floats, strings are never numbers, missing columns are an
error, extra columns are ignored).

`read_numeric` returns None for anything it does not handle exactly like MLflow (other payload
shapes, `params` for models with a params schema, ...): the caller then takes MLflow's own path,
so the fast path can only ever be faster, never different. It raises `SchemaMismatch`, naming the
field, for a payload whose shape it handles but whose values break the signature.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from turnout_serving.domain.schema import InputSchema
from turnout_serving.errors import MissingInputs, SchemaMismatch

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_ALLOWED_KEYS = frozenset({*FORMATS, "params"})


@dataclass(frozen=True)
class NumericBatch:
    """Rows in signature column order, ready for the estimator."""

    matrix: np.ndarray  # shape (rows, columns), float64
    names: tuple[str, ...]

    @property
    def rows(self) -> int:
        return int(self.matrix.shape[0])

    def columns(self) -> dict[str, np.ndarray]:
        return {name: self.matrix[:, j] for j, name in enumerate(self.names)}


def read_numeric(document: Any, schema: InputSchema | None) -> NumericBatch | None:
    """Read a decoded JSON document as a numeric batch, or None to defer to MLflow."""
    if not isinstance(document, dict) or schema is None or not schema.fast:
        return None
    if not document.keys() <= _ALLOWED_KEYS:
        return None
    formats = [key for key in FORMATS if key in document]
    if len(formats) != 1:
        return None
    body = document[formats[0]]
    if formats[0] == "dataframe_split":
        matrix = _plain_split_matrix(body, schema)
        if matrix is not None:
            return NumericBatch(matrix=matrix, names=schema.names)
        table = _split_table(body, schema)
    elif formats[0] == "inputs" and isinstance(body, dict):
        table = _column_table(body, schema)
    elif formats[0] in ("dataframe_records", "instances") and _is_records(body):
        table = _records_table(body, schema)
    else:
        return None
    if table is None:
        return None
    try:
        return NumericBatch(matrix=_to_matrix(table, schema), names=schema.names)
    except _Defer:
        return None


class _Defer(Exception):
    """A value MLflow treats in its own way (null becomes NaN, a boolean becomes 0/1 in a numeric
    column): let MLflow read the payload."""


def numeric_frame(frame: Any, schema: InputSchema | None) -> NumericBatch | None:
    """A DataFrame whose signature columns are all of exact numeric dtypes, as a batch."""
    if schema is None or not schema.fast or not set(schema.names) <= set(frame.columns):
        return None
    for column in schema.columns:
        kind = frame[column.name].dtype.kind
        if kind not in ("i" if column.kind == "long" else "if"):
            return None
    if len(frame) == 0:
        raise MissingInputs("The payload holds no rows to predict on.")
    matrix = frame.loc[:, list(schema.names)].to_numpy(dtype=np.float64)
    return NumericBatch(matrix=matrix, names=schema.names)


def _is_records(body: Any) -> bool:
    return isinstance(body, list) and bool(body) and all(isinstance(r, dict) for r in body)


_NUMBERS = frozenset({int, float})


def _plain_split_matrix(body: Any, schema: InputSchema) -> np.ndarray | None:
    """The common case in one vectorised step: `dataframe_split` rows of plain numbers for a
    signature of `double` columns only. Anything else (a `long` column, a value of another type,
    ragged rows) returns None for the column-by-column reading that names the offending field."""
    if not isinstance(body, dict) or any(c.kind != "double" for c in schema.columns):
        return None
    columns, data = body.get("columns"), body.get("data")
    if not isinstance(columns, list) or not isinstance(data, list) or not data:
        return None
    if not body.keys() <= {"columns", "data", "index"} or len(set(columns)) != len(columns):
        return None
    if not all(type(row) is list and len(row) == len(columns) for row in data):
        return None
    if not set(map(type, itertools.chain.from_iterable(data))) <= _NUMBERS:
        return None
    position = {name: i for i, name in enumerate(columns)}
    _require_columns(position, schema)
    try:
        matrix = np.array(data, dtype=np.float64)
    except OverflowError:
        return None
    order = [position[name] for name in schema.names]
    return matrix if order == list(range(len(columns))) else matrix[:, order]


def _split_table(body: Any, schema: InputSchema) -> list[list[Any]] | None:
    """`{"columns": [...], "data": [[...], ...]}` -> columns in signature order."""
    if not isinstance(body, dict) or not body.keys() <= {"columns", "data", "index"}:
        return None
    columns, data = body.get("columns"), body.get("data")
    if not isinstance(columns, list) or not isinstance(data, list) or not data:
        return None
    if not all(isinstance(row, list) and len(row) == len(columns) for row in data):
        return None
    if len(set(columns)) != len(columns):
        return None
    position = {name: i for i, name in enumerate(columns)}
    _require_columns(position, schema)
    return [[row[position[name]] for row in data] for name in schema.names]


def _column_table(body: Mapping[str, Any], schema: InputSchema) -> list[list[Any]] | None:
    """`{"inputs": {"col": [...], ...}}` -> columns in signature order."""
    _require_columns(body, schema)
    table = [body[name] for name in schema.names]
    if not all(isinstance(values, list) for values in table):
        return None
    lengths = {len(values) for values in table}
    if len(lengths) != 1 or 0 in lengths:
        return None
    return table


def _records_table(body: Sequence[Mapping[str, Any]], schema: InputSchema) -> list[list[Any]]:
    """`[{"col": v, ...}, ...]` -> columns in signature order (a key missing from a row is null)."""
    present = set().union(*(record.keys() for record in body))
    _require_columns(present, schema)
    return [[record.get(name) for record in body] for name in schema.names]


def _require_columns(present: Any, schema: InputSchema) -> None:
    missing = [name for name in schema.names if name not in present]
    if missing:
        raise MissingInputs(
            f"Model is missing inputs {missing}. The signature expects columns "
            f"{list(schema.names)}.",
            field=missing[0],
        )


def _to_matrix(table: list[list[Any]], schema: InputSchema) -> np.ndarray:
    """Check each column against its signature type and stack them as float64 columns."""
    rows = len(table[0])
    matrix = np.empty((rows, len(table)), dtype=np.float64)
    for j, (column, values) in enumerate(zip(schema.columns, table, strict=True)):
        accepted = (int,) if column.kind == "long" else (int, float)
        for i, value in enumerate(values):
            # `type(...) in`, not isinstance: bool is an int subclass, and never a number here.
            if type(value) not in accepted:
                if value is None or type(value) is bool:
                    raise _Defer
                raise _type_error(column.name, column.kind, value, i)
        try:
            matrix[:, j] = values
        except OverflowError as exc:
            raise SchemaMismatch(
                f"Column '{column.name}' holds a number out of range: {exc}", field=column.name
            ) from exc
    if rows == 0:
        raise MissingInputs("The payload holds no rows to predict on.")
    return matrix


def _type_error(name: str, kind: str, value: Any, row: int) -> SchemaMismatch:
    wanted = "an integer" if kind == "long" else "a number"
    return SchemaMismatch(
        f"Column '{name}' expects {wanted} ({kind}) but row {row} holds {repr(value)[:40]} "
        f"({type(value).__name__}).",
        field=name,
    )
