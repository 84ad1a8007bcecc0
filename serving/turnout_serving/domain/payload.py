"""Fast reading of numeric scoring payloads into a float64 matrix.

MLflow's scoring server turns every JSON payload into a pandas DataFrame, then enforces the
signature column by column; for a numeric model that conversion is most of the request's cost.
This module reads the common payload shapes of the MLflow scoring protocol straight into the
matrix the estimator wants, giving the estimator what MLflow's reading would give it: integers
and integral floats in a `long` column, any number in a `double` column, missing columns an
error, extra columns ignored.

`read_numeric` handles plain JSON numbers only. For any other value (null, a string, a nested
value), payload shape, or `params` it returns None and the caller takes MLflow's own path, so the
fast path can only ever be faster, never different. It raises `SchemaMismatch`, naming the column
and the row, for a number MLflow would change silently (`domain.values.refusal`: a fraction in a
`long` column, an integer out of its range, a boolean), exactly as the general path does.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from turnout_serving.domain.schema import InputSchema
from turnout_serving.domain.values import EXACT_IN_DOUBLE, INTEGER_RANGES, Refused, refusal
from turnout_serving.errors import MissingInputs, SchemaMismatch

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_ALLOWED_KEYS = frozenset({*FORMATS, "params"})
_LONG_LOW, _LONG_HIGH = INTEGER_RANGES["long"]


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
    table: list[list[Any]] | None
    if formats[0] == "dataframe_split":
        matrix = _plain_split_matrix(body, schema)
        if matrix is not None:
            return NumericBatch(matrix=matrix, names=schema.names)
        table = _split_table(body, schema)
    elif formats[0] == "inputs" and isinstance(body, dict):
        table = _column_table(body, schema)
    elif formats[0] == "dataframe_records" and _is_records(body):
        table = _records_table(body, schema)
    elif formats[0] == "instances" and _is_records(body) and len({frozenset(r) for r in body}) == 1:
        # MLflow turns instance records into one array per key: records with different keys
        # make arrays of different lengths, which it refuses. Only alike records are a table.
        table = _records_table(body, schema)
    else:
        return None
    if table is None:
        return None
    try:
        matrix = _to_matrix(table, schema, frame=formats[0] != "inputs")
    except _Defer:
        return None
    return NumericBatch(matrix=matrix, names=schema.names)


class _Defer(Exception):
    """A value MLflow reads in its own way (null becomes NaN, "1.5" becomes 1.5, "x" is refused
    with MLflow's message): let MLflow read the payload."""


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


def _split_positions(body: Any, schema: InputSchema) -> tuple[list[Any], list[int]] | None:
    """The rows of a `dataframe_split` body of string column names holding every signature
    column, and each signature column's position; None for anything else (MLflow reads it)."""
    if not isinstance(body, dict) or not body.keys() <= {"columns", "data", "index"}:
        return None
    columns, data = body.get("columns"), body.get("data")
    if not isinstance(columns, list) or not isinstance(data, list) or not data:
        return None
    if not all(type(c) is str for c in columns) or len(set(columns)) != len(columns):
        return None
    position = {name: i for i, name in enumerate(columns)}
    if not all(name in position for name in schema.names):
        return None
    if not all(type(row) is list and len(row) == len(columns) for row in data):
        return None
    return data, [position[name] for name in schema.names]


def _plain_split_matrix(body: Any, schema: InputSchema) -> np.ndarray | None:
    """The common case in one vectorised step: `dataframe_split` rows of plain numbers, `long`
    columns holding whole numbers in range. Anything else returns None for the column-by-column
    reading, which names the offending cell or defers to MLflow."""
    found = _split_positions(body, schema)
    if found is None:
        return None
    data, order = found
    if not set(map(type, itertools.chain.from_iterable(data))) <= _NUMBERS:
        return None
    try:
        matrix = np.array(data, dtype=np.float64)
    except OverflowError:
        return None
    if order != list(range(matrix.shape[1])):
        matrix = matrix[:, order]
    longs = [j for j, c in enumerate(schema.columns) if c.kind == "long"]
    if longs:
        values = matrix[:, longs]
        # float64 cannot tell 2**63 - 1 from 2**63, nor 2**53 + 1 beside a float from 2**53:
        # whole numbers that large go through the exact column-by-column checks.
        if not (np.all(np.abs(values) < EXACT_IN_DOUBLE) and np.all(values == np.trunc(values))):
            return None
    return matrix


def _split_table(body: Any, schema: InputSchema) -> list[list[Any]] | None:
    """`{"columns": [...], "data": [[...], ...]}` -> columns in signature order."""
    found = _split_positions(body, schema)
    if found is None:
        return None
    data, order = found
    return [[row[j] for row in data] for j in order]


def _column_table(body: Mapping[str, Any], schema: InputSchema) -> list[list[Any]] | None:
    """`{"inputs": {"col": [...], ...}}` -> columns in signature order."""
    if not all(name in body for name in schema.names):
        return None
    table = [body[name] for name in schema.names]
    if not all(isinstance(values, list) for values in table):
        return None
    lengths = {len(values) for values in table}
    if len(lengths) != 1 or 0 in lengths:
        return None
    return table


def _records_table(
    body: Sequence[Mapping[str, Any]], schema: InputSchema
) -> list[list[Any]] | None:
    """`[{"col": v, ...}, ...]` -> columns in signature order (a key missing from a row is null)."""
    present = set().union(*(record.keys() for record in body))
    if not all(name in present for name in schema.names):
        return None
    return [[record.get(name) for record in body] for name in schema.names]


def _to_matrix(table: list[list[Any]], schema: InputSchema, *, frame: bool) -> np.ndarray:
    """Check each column against its signature type and stack them as float64 columns. `frame`:
    MLflow reads this shape through a pandas frame, where a column holding a float stores its
    integers as float64 too."""
    rows = len(table[0])
    matrix = np.empty((rows, len(table)), dtype=np.float64)
    for j, (column, values) in enumerate(zip(schema.columns, table, strict=True)):
        long = column.kind == "long"
        has_float, big = False, None
        for i, value in enumerate(values):
            kind_of = type(value)  # `type(...) is`, not isinstance: bool is an int subclass
            if kind_of is float:
                has_float = True
                if long and not (value.is_integer() and _LONG_LOW <= value <= _LONG_HIGH):
                    _refuse(column.name, column.kind, i, value)
            elif kind_of is int:
                if long and abs(value) > EXACT_IN_DOUBLE:
                    if not _LONG_LOW <= value <= _LONG_HIGH:
                        _refuse(column.name, column.kind, i, value)
                    big = i if big is None else big
            else:
                _refuse(column.name, column.kind, i, value)
        if frame and has_float and big is not None:
            reason = "beside numbers written as floats it would be rounded to a float64"
            raise _mismatch(Refused(column.name, column.kind, big, values[big], reason))
        try:
            matrix[:, j] = values
        except OverflowError as exc:
            raise _Defer from exc  # an integer beyond float64: MLflow refuses it itself
    return matrix


def _refuse(name: str, kind: str, row: int, value: Any) -> None:
    """Raise for a value MLflow would change silently; defer for any other value."""
    reason = refusal(kind, value, table=True)
    if reason is None:
        raise _Defer
    raise _mismatch(Refused(name, kind, row, value, reason))


def _mismatch(refused: Refused) -> SchemaMismatch:
    return SchemaMismatch(refused.message, field=refused.column)
