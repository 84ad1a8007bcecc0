"""Open Inference Protocol (KServe V2) tensors <-> columns, as pure data conversion.

A request's input tensors become named columns: each tensor of shape `[N]` or `[N, 1]` is one
column; a single tensor of shape `[N, K]` is split into the signature's K columns in order (the
way numeric clients usually send a matrix). Predictions become one output tensor named
`predict`, with the V2 datatype of their numpy dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from turnout_serving.errors import BadRequest, SchemaMismatch

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


def decode_inputs(document: Any, signature_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The request's `inputs` as named 1-D columns, checked against their declared shapes."""
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        raise BadRequest('An inference request must be a JSON object with an "inputs" list.')
    tensors = document["inputs"]
    if not tensors:
        raise BadRequest('"inputs" must hold at least one tensor.')
    columns: dict[str, np.ndarray] = {}
    for tensor in tensors:
        name, array = _decode_tensor(tensor)
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


def _decode_tensor(tensor: Any) -> tuple[str, np.ndarray]:
    if not isinstance(tensor, dict) or not {"name", "shape", "datatype", "data"} <= tensor.keys():
        raise BadRequest('Each input tensor needs "name", "shape", "datatype" and "data".')
    name, shape, datatype = tensor["name"], tensor["shape"], tensor["datatype"]
    if not isinstance(name, str) or datatype not in DATATYPES:
        raise BadRequest(
            f"Input tensor {name!r}: datatype must be one of {sorted(DATATYPES)}, got {datatype!r}."
        )
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise BadRequest(f"Input tensor '{name}': shape must be a list of non-negative integers.")
    flat = _flatten(tensor["data"])
    expected = int(np.prod(shape)) if shape else 1
    if len(flat) != expected:
        raise BadRequest(
            f"Input tensor '{name}': shape {shape} needs {expected} values, got {len(flat)}."
        )
    dtype = DATATYPES[datatype]
    try:
        if dtype is np.object_:
            array = np.array([_text(v) for v in flat], dtype=object)
        else:
            _check_values(name, datatype, flat)
            array = np.array(flat, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SchemaMismatch(f"Input tensor '{name}' is not {datatype}: {exc}", field=name) from exc
    return name, array.reshape(shape if shape else ())


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
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
