"""Generated scoring payloads and the oracle for the reading differences turnout allows.

Shared by the in-process differential test (tests/unit/test_parse_parity.py) and the server-level
sample (tests/integration/test_parity.py): hypothesis strategies for payloads over every
signature type, JSON value kind and input format, and `refused_cells`, which looks at what MLflow
handed the model and names the cells turnout refuses on purpose (tests/parity/parsing.py).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import strategies as st
from mlflow.types import ColSpec, Schema, TensorSpec

from tests.parity.inprocess import Outcome

KINDS = ["long", "integer", "double", "float", "boolean", "string", "binary", "datetime"]
NAMES = ["a", "b", "c"]


@dataclass(frozen=True)
class Deep:
    """A value nested `depth` lists deep, written into the JSON text directly (json.dumps itself
    cannot write what is nested past the recursion limit)."""

    depth: int


# --- values --------------------------------------------------------------------------------


def rarely(n: int) -> st.SearchStrategy[bool]:
    """True one time in `n` (hypothesis shrinks toward False: the common case)."""
    return st.sampled_from([False] * (n - 1) + [True])


ints = st.sampled_from([
    0, 1, -1, 3, 7, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**53, 2**53 + 1, 2**63 - 1,
    2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, 10**400,
]) | st.integers(-(10**6), 10**6)  # fmt: skip
floats = st.sampled_from([
    0.0, 1.0, 3.0, -1.0, 0.5, 3.5, -2.25, 1e15, 2.0**53, 9.2e18, 2.0**63, 1e20, 1e39, -1e39,
    1e308, 5e-324, math.nan, math.inf, -math.inf,
]) | st.floats(width=64)  # fmt: skip
strings = st.sampled_from([
    "3", "3.0", "1.5", "-2", "1e400", "1e39", "nan", "inf", "Infinity", " 4", "true", "false",
    "True", "x", "", "aGk=", "2020-01-01", "2020-01-01T10:00:00",
]) | st.text(max_size=4)  # fmt: skip
scalars = st.one_of(ints, floats, strings, st.booleans(), st.none())
nested = st.sampled_from([[1], [[1, 2]], {"a": 1}, [], {}, ["x"], [True], [None]]) | st.builds(
    Deep, st.sampled_from([3, 40, 900, 1030, 2500])
)
cells = st.one_of(scalars, scalars, scalars, nested)
plausible = {
    "long": st.integers(-100, 100) | st.sampled_from([3.0, 0.0, 1.0, 2.0**40]),
    "integer": st.integers(-100, 100) | st.sampled_from([3.0, 0.0, -7.0]),
    "double": st.floats(-1e6, 1e6) | st.integers(-100, 100),
    "float": st.floats(-1e6, 1e6, width=32) | st.integers(-100, 100),
    "boolean": st.booleans(),
    "string": st.text(max_size=5),
    "binary": st.sampled_from(["aGk=", "", "AAEC"]),
    "datetime": st.sampled_from(["2020-01-01", "2021-06-30T12:00:00", "1999-12-31 23:59:59"]),
}


# --- schemas -------------------------------------------------------------------------------


def kind(spec: Any) -> str:
    """A column's MLflow type name (`long`, ...); a tensor's numpy dtype name."""
    return str(getattr(spec.type, "name", spec.type))


@st.composite
def column_schemas(draw: st.DrawFn) -> Schema:
    width = draw(st.integers(1, 3))
    if draw(st.booleans()):  # fast-path eligible: double/long, all required
        return Schema([ColSpec(draw(st.sampled_from(["long", "double"])), NAMES[i])
                       for i in range(width)])  # fmt: skip
    return Schema([
        ColSpec(draw(st.sampled_from(KINDS)), NAMES[i], required=draw(st.booleans() | st.just(True)))
        for i in range(width)
    ])  # fmt: skip


@st.composite
def tensor_schemas(draw: st.DrawFn) -> Schema | None:
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.int32, np.bool_]))
    choice = draw(st.sampled_from(["unnamed", "named", "none"]))
    if choice == "none":
        return None
    width = draw(st.integers(1, 3))
    if choice == "unnamed":
        return Schema([TensorSpec(np.dtype(dtype), (-1, width))])
    return Schema([TensorSpec(np.dtype(dtype), (-1,), NAMES[i]) for i in range(width)])


# --- payloads ------------------------------------------------------------------------------


@dataclass
class Payload:
    body: bytes
    sent: dict[str, list[Any]] | None  # signature column -> the value sent in each row
    frames: bool  # read through a pandas frame (dataframe formats)
    text: bool = False  # CSV: every value sent is text

    def __repr__(self) -> str:
        return f"Payload({self.body[:400]!r}{'...' if len(self.body) > 400 else ''})"


def encode(document: Any) -> bytes:
    """JSON text as a client writes it: `NaN`/`Infinity` literals allowed, deep values inlined."""
    text = json.dumps(document, default=lambda deep: f"@@deep{deep.depth}@@")
    for depth in (3, 40, 900, 1030, 2500):
        text = text.replace(f'"@@deep{depth}@@"', "[" * depth + "1" + "]" * depth)
    return text.encode()


@st.composite
def tables(
    draw: st.DrawFn, schema: Schema | None, unnamed: list[str] | None = None
) -> tuple[list[Any], list[list[Any]]]:
    """Payload column names (signature names, else `unnamed`, shuffled, maybe one missing,
    extras, odd names) and rows of cells."""
    kinds = {s.name: kind(s) for s in schema.inputs} if schema and schema.has_input_names() else {}
    names: list[Any] = list(kinds) or unnamed or NAMES[: draw(st.integers(1, 3))]
    names = draw(st.permutations(names))
    if len(names) > 1 and draw(rarely(10)):
        names = names[:-1]  # a missing column
    if draw(rarely(5)):
        names.append(draw(st.sampled_from(["x", "extra", 1, ["a"], {"a": 1}, None, names[0]])))
    mode = draw(st.sampled_from(["plausible", "one odd cell", "any"]))
    rows = []
    for _ in range(draw(st.sampled_from([1, 1, 2, 3, 0]))):
        row = []
        for name in names:
            named = kinds.get(name) if isinstance(name, str) else None
            likely = plausible.get(named or "double", plausible["double"])
            row.append(draw(st.one_of(likely, cells) if mode == "any" else likely))
        rows.append(row)
    if mode == "one odd cell" and rows and names:
        row, column = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, len(names) - 1))
        rows[row][column] = draw(cells)
    return names, rows


@st.composite
def json_payloads(
    draw: st.DrawFn, schema: Schema | None, unnamed: list[str] | None = None
) -> Payload:
    names, rows = draw(tables(schema, unnamed))
    regular = all(type(n) is str for n in names) and len(set(names)) == len(names)
    columns = {n: [row[j] for row in rows] for j, n in enumerate(names)
               if type(n) is str and names.count(n) == 1}  # fmt: skip
    layout = draw(st.sampled_from([
        "split", "split", "split-index", "split-nocolumns", "records", "records",
        "instances-records", "instances-rows", "inputs-columns", "inputs-columns", "inputs-rows",
        "inputs-scalars", "odd",
    ]))  # fmt: skip
    frames = layout.startswith(("split", "records"))
    sent = columns
    if layout in ("split", "split-index"):
        body: Any = {"columns": names, "data": rows}
        if layout == "split-index":
            body["index"] = [10 + i for i in range(len(rows))]
        if rows and draw(rarely(10)):
            body["data"] = [rows[0][:-1], *rows[1:]]  # ragged: pandas pads the short row
            sent = {n: [None, *values[1:]] if n == names[-1] else values
                    for n, values in columns.items()}  # fmt: skip
    elif layout == "split-nocolumns":
        body, sent = {"data": rows}, None
    elif layout in ("records", "instances-records") and regular:
        body = [dict(zip(names, row, strict=True)) for row in rows]
    elif layout == "inputs-columns" and regular:
        body = columns
    elif layout == "inputs-scalars" and regular and len(rows) == 1:
        body = dict(zip(names, rows[0], strict=True))
        sent = odd_cells("inputs", body, schema)  # a list among scalars reads as a column
    elif layout == "odd":
        body, sent = draw(st.recursive(cells, lambda inner: st.lists(inner, max_size=3)
                                       | st.dictionaries(st.sampled_from(NAMES), inner, max_size=3),
                                       max_leaves=8)), None  # fmt: skip
    else:
        body, sent = rows, None
        named = [s.name for s in schema.inputs] if schema and schema.has_input_names() else []
        if layout.startswith(("inputs", "instances")) and len(named) == 1:
            sent = {named[0]: rows}  # a bare list is the one column's values
    key = {"split": "dataframe_split", "records": "dataframe_records"}.get(
        layout.split("-")[0], layout.split("-")[0]
    )
    if layout == "odd":
        key = draw(st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs"]))
        sent = odd_cells(key, body, schema)
    document: Any = {key: body}
    if draw(rarely(5)):
        document["params"] = draw(st.sampled_from([{}, {"x": 1}, {"temperature": 0.5}, [1], "x"]))
    extra = draw(st.sampled_from([None] * 12 + ["two formats", "not an object", "unused key"]))
    if extra == "two formats":
        other = "inputs" if key == "dataframe_records" else "dataframe_records"
        document[other] = [{"a": 1}]
    elif extra == "not an object":
        document = draw(st.sampled_from([[document], "x", 3, None]))
    elif extra == "unused key":
        document["unused"] = 1
    return Payload(encode(document), sent, frames)


def csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict, Deep)):
        return json.dumps(value, default=lambda d: "[[1]]")
    return str(value)


@st.composite
def csv_payloads(
    draw: st.DrawFn, schema: Schema | None, unnamed: list[str] | None = None
) -> Payload:
    names, rows = draw(tables(schema, unnamed))
    names = [n if isinstance(n, str) else json.dumps(n) for n in names]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    texts = [[csv_text(v) for v in row] for row in rows]
    writer.writerows(texts)
    sent = {n: [row[j] for row in texts] for j, n in enumerate(names) if names.count(n) == 1}
    return Payload(out.getvalue().encode(), sent, True, text=True)


def parquet_body(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.to_parquet(out)
    return out.getvalue()


# --- the oracle ----------------------------------------------------------------------------


def changed(kind: str, sent: Any, got: Any, frames: bool) -> bool:
    """True when MLflow handed the model something other than the value sent, or a value that
    is not of the column's type (the cells turnout refuses on purpose)."""
    number = type(sent) in (int, float)
    if kind in ("long", "integer"):
        return not (number and not _missing(got) and int(got) == sent)
    if kind in ("double", "float"):
        if type(sent) is bool:
            return True
        if sent is None:
            return False
        if type(sent) is str:  # a number spelt out: only infinity out of a finite one
            return bool(np.isinf(got)) and "inf" not in sent.lower()
        if number:
            return bool(np.isinf(got)) and not (type(sent) is float and math.isinf(sent))
        return False
    if kind == "boolean":
        return not (type(sent) is bool or (number and sent in (0, 1)))
    if kind == "string":
        return not (type(sent) is str or (sent is None and frames))
    return False


def changed_text(kind: str, sent: str, got: Any) -> bool:
    """CSV: True when MLflow read a number out of a word (`true` -> 1) or made infinity out of
    a finite number."""
    if kind not in ("long", "integer", "double", "float"):
        return False
    if sent.strip().lower() in ("true", "false"):
        return True
    return kind in ("double", "float") and bool(np.isinf(got)) and "inf" not in sent.lower()


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def odd_cells(key: str, body: Any, schema: Schema | None) -> dict[str, list[Any]] | None:
    """The values an odd `instances`/`inputs` body sends each signature column, where MLflow's
    documented layouts say it (None where they do not): a bare list (not of records) is a
    one-column signature's column; an `inputs` object maps columns to their values (one value: one row)."""
    named = [s.name for s in schema.inputs] if schema and schema.has_input_names() else []
    records = isinstance(body, list) and bool(body) and all(isinstance(v, dict) for v in body)
    if key in ("instances", "inputs") and isinstance(body, list) and len(named) == 1:
        return None if records else {named[0]: body}
    if key == "inputs" and isinstance(body, dict) and named:
        return {n: (v if isinstance(v, list) else [v]) for n, v in body.items() if n in named}
    return None


def refused_cells(schema: Schema | None, payload: Payload, theirs: Outcome) -> set[tuple[str, int]]:
    """The cells turnout must refuse: MLflow accepted the payload and changed them."""
    if theirs.status != 200 or payload.sent is None or schema is None:
        return set()
    if schema.is_tensor_spec() or not isinstance(theirs.received, pd.DataFrame):
        return set()
    received = theirs.received
    found = set()
    for spec in schema.inputs:
        values = payload.sent.get(spec.name)
        if values is None:
            continue
        # a nested value in a one-value column, whatever MLflow made of it (a NaN, an empty
        # frame without the column, the list itself)
        if not payload.text:
            found |= {(spec.name, row) for row, sent in enumerate(values)
                      if isinstance(sent, (list, dict, Deep))}  # fmt: skip
        if spec.name not in received or len(received) != len(values):
            continue
        for row, sent in enumerate(values):
            got = received[spec.name].iloc[row]
            if payload.text:
                refused = changed_text(kind(spec), sent, got)
            else:
                refused = changed(kind(spec), sent, got, payload.frames)
            if refused:
                found.add((spec.name, row))
    return found
