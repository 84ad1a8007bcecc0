"""Open Inference Protocol (KServe V2) tensors <-> columns, as pure data conversion.

A request's input tensors become named columns: each tensor of shape `[N]` or `[N, 1]` is one
column; a single tensor of shape `[N, K]` is split into the signature's K columns in order (the
way numeric clients usually send a matrix). Predictions become one output tensor named
`predict`, with the V2 datatype of their numpy dtype.

Whatever a client sends, nothing is allocated before the declared shape has been checked against
the data actually sent (exact integer arithmetic: `[2**40, 2**40]` is not 0 in Python), and data
is walked without recursion, so no shape, datatype or nesting can make decoding raise anything
but a `BadRequest` naming the tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from turnout_serving.domain.limits import BatchLimits
from turnout_serving.errors import BadRequest, SchemaMismatch

MAX_RANK = 32  # numpy's own limit on dimensions; data nested deeper is refused too

DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    "BYTES": np.object_,
}  # fmt: skip
_KIND_TO_DATATYPE = {"b": "BOOL", "i": "INT64", "u": "UINT64", "f": "FP64"}
_MLFLOW_TO_DATATYPE = {
    "double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32",
    "boolean": "BOOL", "string": "BYTES", "binary": "BYTES", "datetime": "BYTES",
}  # fmt: skip


def datatype_of_mlflow(kind: str) -> str:
    return _MLFLOW_TO_DATATYPE.get(kind, "BYTES")


def decode_inputs(
    document: Any, signature_names: Sequence[str], limits: BatchLimits
) -> dict[str, np.ndarray]:
    """The request's `inputs` as named 1-D columns, checked against their declared shapes."""
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        raise BadRequest('An inference request must be a JSON object with an "inputs" list.')
    tensors = document["inputs"]
    if not tensors:
        raise BadRequest('"inputs" must hold at least one tensor.')
    columns: dict[str, np.ndarray] = {}
    cells = 0
    for tensor in tensors:
        name, shape, flat = _checked_tensor(tensor)
        cells += len(flat)
        limits.check(shape[0] if shape else 1, cells, "The inference request")
        array = _array(name, tensor["datatype"], shape, flat)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim == 1:
            columns[name] = array
        elif array.ndim == 2 and len(tensors) == 1 and array.shape[1] == len(signature_names):
            columns.update({col: array[:, j] for j, col in enumerate(signature_names)})
        else:
            raise SchemaMismatch(
                f"Input tensor '{name}' has shape {list(array.shape)}; send one tensor of shape "
                f"[N] per column, or one [N, {len(signature_names)}] tensor in signature order.",
                field=name,
            )
    if len({len(a) for a in columns.values()}) > 1:
        raise BadRequest("All input tensors must have the same number of rows.")
    return columns


def _checked_tensor(tensor: Any) -> tuple[str, list[int], list[Any]]:
    """Name, shape and flattened data of one input tensor whose data fills its shape exactly."""
    if not isinstance(tensor, dict) or not {"name", "shape", "datatype", "data"} <= tensor.keys():
        raise BadRequest('Each input tensor needs "name", "shape", "datatype" and "data".')
    name, shape, datatype = tensor["name"], tensor["shape"], tensor["datatype"]
    if not isinstance(name, str):
        raise BadRequest(f"Input tensor names must be strings, got {repr(name)[:40]}.")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise BadRequest(
            f"Input tensor '{name}': datatype must be one of {sorted(DATATYPES)}, "
            f"got {repr(datatype)[:40]}."
        )
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_RANK
        or not all(type(d) is int and 0 <= d < 2**64 for d in shape)
    ):
        raise BadRequest(
            f"Input tensor '{name}': shape must be a list of at most {MAX_RANK} unsigned 64-bit "
            f"integers, got {repr(shape)[:60]}."
        )
    flat = _flatten(name, tensor["data"])
    expected = math.prod(shape)  # Python integers: exact for any shape, nothing allocated
    if len(flat) != expected:
        raise BadRequest(
            f"Input tensor '{name}': shape {shape} needs {expected} values, got {len(flat)}."
        )
    return name, shape, flat


def _array(name: str, datatype: str, shape: list[int], flat: list[Any]) -> np.ndarray:
    dtype = DATATYPES[datatype]
    try:
        if dtype is np.object_:
            array = np.array([_text(v) for v in flat], dtype=object)
        else:
            _check_values(name, datatype, flat)
            with np.errstate(over="raise"):  # 1e10 as FP16 would silently become inf
                array = np.array(flat, dtype=dtype)
    except FloatingPointError as exc:
        raise SchemaMismatch(
            f"Input tensor '{name}' has a value out of {datatype}'s range.", field=name
        ) from exc
    except (TypeError, ValueError, OverflowError) as exc:
        raise SchemaMismatch(f"Input tensor '{name}' is not {datatype}: {exc}", field=name) from exc
    return array.reshape(shape)


def _flatten(name: str, data: Any) -> list[Any]:
    """Row-major values of flat or nested data, walked without recursion."""
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack = [(iter(data), 1)]
    while stack:
        items, depth = stack[-1]
        for item in items:
            if isinstance(item, list):
                if depth >= MAX_RANK:
                    raise BadRequest(
                        f"Input tensor '{name}': data is nested deeper than {MAX_RANK} levels."
                    )
                stack.append((iter(item), depth + 1))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _check_values(name: str, datatype: str, values: list[Any]) -> None:
    """No silent coercion: strings and nulls are never numbers, floats never integers."""
    allowed: tuple[type, ...]
    if datatype == "BOOL":
        allowed = (bool,)
    elif datatype.startswith(("INT", "UINT")):
        allowed = (int,)
    else:
        allowed = (int, float)
    for i, value in enumerate(values):
        if type(value) not in allowed:
            raise SchemaMismatch(
                f"Input tensor '{name}' is {datatype} but element {i} is {repr(value)[:40]}.",
                field=name,
            )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"BYTES elements must be strings, got {type(value).__name__}")
    return value


def encode_output(predictions: Any) -> dict[str, Any]:
    """One V2 output tensor for what the model returned."""
    array = np.asarray(predictions)
    if array.dtype.kind in _KIND_TO_DATATYPE:
        datatype = _KIND_TO_DATATYPE[array.dtype.kind]
        data = array.astype(np.float64 if datatype == "FP64" else array.dtype).ravel().tolist()
    else:
        datatype, data = "BYTES", [str(v) for v in array.ravel().tolist()]
    return {"name": "predict", "shape": list(array.shape), "datatype": datatype, "data": data}
