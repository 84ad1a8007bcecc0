"""Which JSON values a signature column takes, and which ones MLflow would change silently.

MLflow's scoring server casts every cell to its column's type with numpy and pandas, and some of
those casts change the value without a word: 3.5 in a `long` column becomes 3, the string "3"
becomes 3, `true` becomes 1, 2**63 becomes -9223372036854775808, 1e39 in a `float` column becomes
inf, "false" in a `boolean` column becomes True, `null` becomes False or the string "None", `[]`
in a `double` column becomes NaN. The model then predicts on data the client never sent.
`refusal` names those cases (the caller answers 400, naming the column and the row); every other
value is left to MLflow, which keeps it or refuses it itself, so turnout answers exactly as MLflow
does.

`corrupted_cell` walks a decoded JSON payload in each of the scoring protocol's shapes the way
MLflow's parsers lay it out (pandas frames for `dataframe_split`/`dataframe_records`, column arrays
for `inputs`/`instances`) and returns the first cell `refusal` objects to. It never recurses into
values, so a payload nested thousands deep costs no more than a flat one. `corrupted_text_cell`
does the same for CSV, whose cells are all text: `true` read into a number column, a number that
overflows to infinity.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from turnout_serving.domain.schema import InputSchema

INTEGER_RANGES = {"long": (-(2**63), 2**63 - 1), "integer": (-(2**31), 2**31 - 1)}
FLOAT32_MAX = 3.4028234663852886e38
EXACT_IN_DOUBLE = 2**53  # integers beyond this change when pandas stores them as float64
TABLE_FORMATS = ("dataframe_split", "dataframe_records")
SINGLE_VALUE_KINDS = (*INTEGER_RANGES, "double", "float", "boolean", "string", "binary", "datetime")


@dataclass(frozen=True)
class Refused:
    """A cell MLflow would accept only by changing it."""

    column: str
    kind: str
    row: int
    value: Any
    reason: str

    @property
    def message(self) -> str:
        return (
            f"Column '{self.column}' ({self.kind}) cannot take row {self.row}'s value "
            f"{_show(self.value)}: {self.reason}."
        )


def refusal(kind: str, value: Any, *, table: bool) -> str | None:
    """Why MLflow would change `value` on its way into a `kind` column, or None when MLflow keeps
    it faithfully or refuses it itself. `table`: the value arrives in a dataframe format (pandas
    keeps a null as None there; `inputs`/`instances` turn it into the string "None")."""
    if kind in SINGLE_VALUE_KINDS and not _scalar(value):
        return _NESTED  # MLflow refuses most, but reads an empty list in a double column as NaN
    if kind in INTEGER_RANGES:
        return _integer_refusal(kind, value)
    if kind in ("double", "float"):
        return _real_refusal(kind, value)
    if kind == "boolean":
        if type(value) is bool or (type(value) in (int, float) and value in (0, 1)):
            return None
        return f"{_article(value)} is not a boolean (true, false, 0 or 1)"
    if kind == "string":
        if type(value) is str or (value is None and table):
            return None
        if value is None:
            return 'a null would become the string "None"'
        return f"{_article(value)} is not a string"
    return None  # binary and datetime: MLflow's own reading; arrays, objects, maps: MLflow's own


_NESTED = "a list or an object is not a single value"


def _integer_refusal(kind: str, value: Any) -> str | None:
    low, high = INTEGER_RANGES[kind]
    kind_of = type(value)
    if kind_of is bool:
        return "a boolean would become 0 or 1"
    if kind_of is int:
        return None if low <= value <= high else f"out of the {kind} range, it would wrap around"
    if kind_of is float:
        if not math.isfinite(value):
            return None  # MLflow refuses NaN and infinity itself
        if not value.is_integer():
            return "a fractional number would be truncated"
        return None if low <= value <= high else f"out of the {kind} range, it would wrap around"
    if kind_of is str:
        try:
            int(value)
        except ValueError:
            return None  # MLflow refuses it itself
        return "a string would be read as a number"
    return None  # null: MLflow refuses it itself


def _real_refusal(kind: str, value: Any) -> str | None:
    kind_of = type(value)
    if kind_of is bool:
        return "a boolean would become 0.0 or 1.0"
    if kind_of is str:
        try:
            number = float(value)
        except ValueError:
            return None  # MLflow refuses it itself
        if math.isinf(number) and "inf" not in value.lower():
            return "out of range, it would become infinity"
        value, kind_of = number, float
    if kind_of in (int, float):
        limit = FLOAT32_MAX if kind == "float" else None
        if limit is not None and _finite(value) and abs(value) > limit:
            return "out of the float (32-bit) range, it would become infinity"
    return None


def _finite(value: int | float) -> bool:
    return type(value) is int or math.isfinite(value)


def _scalar(value: Any) -> bool:
    return not isinstance(value, (list, dict))


def _article(value: Any) -> str:
    if value is None:
        return "a null"
    if type(value) is bool:
        return "a boolean"
    if type(value) is str:
        return "a string"
    return "a number"


def _show(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return "[...]" if isinstance(value, list) else "{...}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def corrupted_cell(document: Mapping[str, Any], schema: InputSchema) -> Refused | None:
    """The first cell of `document` that MLflow would change silently, if any."""
    formats = [key for key in ("dataframe_split", "dataframe_records", "instances", "inputs")
               if key in document]  # fmt: skip
    if len(formats) != 1:
        return None  # MLflow refuses it, or it is not a scoring payload (LLM formats)
    table = formats[0] in TABLE_FORMATS
    kinds = {c.name: c.kind for c in schema.columns}
    floats_in: set[str] = set()
    big_ints: dict[str, tuple[int, int]] = {}
    for name, row, value in _cells(formats[0], document[formats[0]], kinds):
        reason = refusal(kinds[name], value, table=table)
        if reason is not None:
            return Refused(name, kinds[name], row, value, reason)
        if table and kinds[name] in INTEGER_RANGES:
            # pandas stores a column holding any float as float64, rounding big integers
            if type(value) is float:
                floats_in.add(name)
            elif type(value) is int and abs(value) > EXACT_IN_DOUBLE:
                big_ints.setdefault(name, (row, value))
    for name, (row, value) in big_ints.items():
        if name in floats_in:
            reason = "beside numbers written as floats it would be rounded to a float64"
            return Refused(name, kinds[name], row, value, reason)
    return None


def _cells(layout: str, body: Any, kinds: Mapping[str, str]) -> Iterator[tuple[str, int, Any]]:
    """(column, row, value) for each cell of a signature column, as MLflow lays `body` out."""
    if layout == "dataframe_split":
        yield from _split_cells(body, kinds)
    elif layout == "dataframe_records" or (
        isinstance(body, list) and body and all(isinstance(item, dict) for item in body)
    ):
        if isinstance(body, list):
            for row, record in enumerate(body):
                if isinstance(record, dict):
                    yield from ((n, row, record[n]) for n in kinds if n in record)
    elif layout == "inputs" and isinstance(body, dict):
        for name in kinds:
            if name in body:
                values = body[name]
                if isinstance(values, list):
                    yield from ((name, row, v) for row, v in enumerate(values))
                else:
                    yield name, 0, values
    elif isinstance(body, list) and len(kinds) == 1:
        # a bare list for a one-column signature is that column
        name = next(iter(kinds))
        yield from ((name, row, v) for row, v in enumerate(body))


def _split_cells(body: Any, kinds: Mapping[str, str]) -> Iterator[tuple[str, int, Any]]:
    if not isinstance(body, dict):
        return
    columns, data = body.get("columns"), body.get("data")
    if not isinstance(columns, list) or not isinstance(data, list):
        return
    positions = [(j, c) for j, c in enumerate(columns) if type(c) is str and c in kinds]
    if not positions:
        return
    if not any(isinstance(row, (list, dict)) for row in data) and len(columns) == 1:
        yield from ((positions[0][1], row, v) for row, v in enumerate(data))
        return
    for row, values in enumerate(data):
        if isinstance(values, list):  # pandas pads a short row with nulls
            yield from ((name, row, values[j] if j < len(values) else None)
                        for j, name in positions)  # fmt: skip
        elif isinstance(values, dict):
            yield from ((name, row, values[name]) for _, name in positions if name in values)


def text_refusal(kind: str, text: str) -> str | None:
    """Why pandas' CSV reader would change `text` on its way into a `kind` column, or None."""
    if kind not in INTEGER_RANGES and kind not in ("double", "float"):
        return None
    if text.strip().lower() in ("true", "false"):
        return "a boolean would become 0 or 1"
    if kind in INTEGER_RANGES:
        return None  # pandas refuses fractions and integers out of range itself
    try:
        number = float(text)
    except ValueError:
        return None
    if math.isinf(number) and "inf" not in text.lower():
        return "out of range, it would become infinity"
    if kind == "float" and math.isfinite(number) and abs(number) > FLOAT32_MAX:
        return "out of the float (32-bit) range, it would become infinity"
    return None


def corrupted_text_cell(
    columns: Mapping[str, Iterable[str | None]], schema: InputSchema
) -> Refused | None:
    """The first cell of a CSV payload (column name -> its cells as text, None where empty) that
    pandas would change silently when reading it with the signature's dtypes."""
    for column in schema.columns:
        if column.name not in columns:
            continue
        for row, text in enumerate(columns[column.name]):
            reason = text_refusal(column.kind, text) if text is not None else None
            if reason is not None:
                return Refused(column.name, column.kind, row, text, reason)
    return None
