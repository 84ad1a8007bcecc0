"""How much work one request may ask for: rows and values (cells) it decodes to.

The body limit bounds bytes, not work: a 448 KB Parquet file can decode to ten million rows. So
a scoring payload's size is read from what its format says before anything is decoded: the
Parquet footer's row counts, a CSV's lines and header fields, an upper bound for JSON from its
separators (made exact, by counting the decoded document, only when that bound is over the
limit). A payload over a limit is refused with a 413 naming the limit and its setting.

Pure: bytes in, an exception or nothing out; it never decodes more than a Parquet footer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from turnout_serving.errors import PayloadTooLarge


@dataclass(frozen=True)
class BatchLimits:
    max_rows: int
    max_cells: int

    def check(self, rows: int, cells: int, what: str) -> None:
        """Refuse `what` when it holds more rows or values than allowed."""
        if rows > self.max_rows:
            raise PayloadTooLarge(
                f"{what} holds {rows} rows; this server takes at most {self.max_rows} rows per "
                "request (max_rows, TURNOUT_MAX_ROWS). Send smaller batches."
            )
        if cells > self.max_cells:
            raise PayloadTooLarge(
                f"{what} holds {cells} values; this server takes at most {self.max_cells} values "
                "(rows x columns) per request (max_cells, TURNOUT_MAX_CELLS). Send smaller batches."
            )

    def check_scoring_body(self, body: bytes, content_type: str | None) -> None:
        """Check an `/invocations` body by what its format says, before it is parsed. Bodies
        that cannot be read are left to the parser, which says what is wrong with them."""
        mime = (content_type or "").partition(";")[0].strip().lower()
        if mime == "application/vnd.apache.parquet":
            size = parquet_size(body)
            if size is not None:
                self.check(size[0], size[0] * size[1], "The Parquet payload")
        elif mime == "text/csv":
            rows, fields = csv_size(body)
            self.check(rows, rows * fields, "The CSV payload")
        elif mime == "application/json":
            # Every value but the first of each array or object follows a comma: an upper bound
            # of the values, and so of the rows, without decoding anything.
            bound = body.count(b",") + body.count(b"[") + body.count(b"{") + 1
            if bound > min(self.max_rows, self.max_cells):
                self._check_json(body)

    def _check_json(self, body: bytes) -> None:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return  # the parser answers it
        self.check(json_rows(document), sum(1 for _ in _leaves(document)), "The JSON payload")


def parquet_size(body: bytes) -> tuple[int, int] | None:
    """(rows, columns) from a Parquet file's footer, or None when it is not Parquet."""
    try:
        metadata = pq.ParquetFile(pa.BufferReader(body)).metadata
    except (pa.ArrowException, OSError, ValueError):
        return None
    in_groups = sum(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
    return max(metadata.num_rows, in_groups), metadata.num_columns


def csv_size(body: bytes) -> tuple[int, int]:
    """(rows, fields of the header) of a CSV body: its lines less the header. A quoted field
    spanning lines counts each line, so this is an upper bound."""
    header, _, _ = body.partition(b"\n")
    lines = body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
    return max(lines - 1, 0), header.count(b",") + 1


def json_rows(document: Any) -> int:
    """Rows of an MLflow scoring payload, by its format (1 for anything else)."""
    if not isinstance(document, dict):
        return len(document) if isinstance(document, list) else 1
    for key in ("dataframe_split", "dataframe_records", "instances", "inputs"):
        if key not in document:
            continue
        body = document[key]
        if key == "dataframe_split" and isinstance(body, dict):
            body = body.get("data")
        if isinstance(body, dict):  # {"inputs": {"column": [...], ...}}
            return max((len(v) for v in body.values() if isinstance(v, list)), default=1)
        return len(body) if isinstance(body, list) else 1
    return 1


def _leaves(document: Any) -> Iterator[Any]:
    """The scalar values of a decoded JSON document, without recursion (any depth)."""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        else:
            yield item
