"""Open Inference Protocol tensors: whatever a client declares, decoding answers a 4xx naming the
tensor, and allocates nothing before the shape is checked against the data sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout_serving.domain.limits import BatchLimits
from turnout_serving.domain.tensors import decode_inputs
from turnout_serving.errors import BadRequest, PayloadTooLarge

NAMES = ("a", "b")
LIMITS = BatchLimits(max_rows=1000, max_cells=5000)


def nested(depth: int, leaf: Any = 1.0) -> Any:
    data = leaf
    for _ in range(depth):
        data = [data]
    return data


@pytest.mark.parametrize(
    ("tensor", "fragment"),
    [
        ({"name": "a", "shape": [2**40, 2**40], "datatype": "FP64", "data": []},
         "needs 1208925819614629174706176 values, got 0"),
        ({"name": "a", "shape": [2**64, 0], "datatype": "FP64", "data": []}, "64-bit"),
        ({"name": "a", "shape": [-1], "datatype": "FP64", "data": [1.0]}, "64-bit"),
        ({"name": "a", "shape": [1], "datatype": ["FP64"], "data": [1.0]}, "datatype must be"),
        ({"name": "a", "shape": [1], "datatype": {"x": 1}, "data": [1.0]}, "datatype must be"),
        ({"name": "a", "shape": [1], "datatype": "FP64", "data": nested(1000)}, "nested deeper"),
        ({"name": "a", "shape": [1] * 33, "datatype": "FP64", "data": [1.0]}, "at most 32"),
        ({"name": "a", "shape": [True], "datatype": "FP64", "data": [1.0]}, "shape must be"),
        ({"name": "a", "shape": [1.0], "datatype": "FP64", "data": [1.0]}, "shape must be"),
        ({"name": "a", "shape": "1", "datatype": "FP64", "data": [1.0]}, "shape must be"),
        ({"name": ["a"], "shape": [1], "datatype": "FP64", "data": [1.0]}, "names must be"),
        ({"name": "a", "shape": [1], "datatype": "FP16", "data": [1e10]}, "out of FP16's range"),
        ({"name": "a", "shape": [1], "datatype": "FP32", "data": [1e300]}, "out of FP32's range"),
        ({"name": "a", "shape": [1], "datatype": "INT8", "data": [300]}, "is not INT8"),
    ],
)  # fmt: skip
def test_hostile_tensors_are_a_400_naming_what_is_wrong(tensor: dict[str, Any], fragment: str):
    with pytest.raises(BadRequest, match=fragment.replace("[", r"\[")):
        decode_inputs({"inputs": [tensor]}, NAMES, LIMITS)


def test_nested_data_is_read_in_row_major_order_up_to_the_rank_limit():
    columns = decode_inputs(
        {"inputs": [{"name": "m", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2], [3, 4]]}]},
        NAMES, LIMITS,
    )  # fmt: skip
    assert {k: v.tolist() for k, v in columns.items()} == {"a": [1, 3], "b": [2, 4]}
    deep = {"name": "a", "shape": [1] * 31 + [2], "datatype": "INT64", "data": nested(31, [1, 2])}
    with pytest.raises(BadRequest, match=r"has shape \[1, 1, .*, 2\]; send one tensor"):
        decode_inputs({"inputs": [deep]}, NAMES, LIMITS)


def test_rows_and_values_over_the_limits_are_a_413_naming_the_setting():
    tensor = {"name": "a", "shape": [1001], "datatype": "FP64", "data": [0.0] * 1001}
    with pytest.raises(
        PayloadTooLarge, match=r"1001 rows; .* at most 1000 rows .*TURNOUT_MAX_ROWS"
    ):
        decode_inputs({"inputs": [tensor]}, NAMES, LIMITS)
    empty = {"name": "a", "shape": [2**63, 0], "datatype": "FP64", "data": []}
    with pytest.raises(PayloadTooLarge, match=f"{2**63} rows"):
        decode_inputs({"inputs": [empty]}, NAMES, LIMITS)
    wide = {"name": "a", "shape": [2, 3000], "datatype": "FP64", "data": [0.0] * 6000}
    with pytest.raises(PayloadTooLarge, match=r"6000 values; .*TURNOUT_MAX_CELLS"):
        decode_inputs({"inputs": [wide]}, NAMES, LIMITS)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=10,
)  # fmt: skip
dims = st.integers(-2, 2**70) | st.sampled_from([2**40, 2**63, 2**64]) | json_values
tensors = st.fixed_dictionaries({
    "name": st.sampled_from(["a", "b", "x"]) | json_values,
    "shape": st.lists(dims, max_size=4) | json_values,
    "datatype": st.sampled_from(["FP64", "INT64", "BOOL", "BYTES", "FP16", "UINT8"]) | json_values,
    "data": st.lists(st.floats(-5, 5) | st.integers(-3, 3), max_size=6)
            | st.integers(0, 1200).map(nested) | json_values,
})  # fmt: skip


@settings(max_examples=500, deadline=None, derandomize=True)
@given(inputs=st.lists(tensors, min_size=1, max_size=3))
def test_any_tensor_decodes_or_is_refused_with_a_4xx(inputs: list[dict[str, Any]]) -> None:
    try:
        columns = decode_inputs({"inputs": inputs}, NAMES, LIMITS)
    except BadRequest as error:  # SchemaMismatch and MissingInputs are BadRequests
        assert error.status_code == 400 and error.message
    except PayloadTooLarge as error:
        assert "TURNOUT_MAX_" in error.message
    else:
        assert len({len(c) for c in columns.values()}) == 1
        for tensor in inputs:
            assert tensor["shape"][0] == len(next(iter(columns.values())))
    json.dumps(inputs)  # what was generated is a real request body
