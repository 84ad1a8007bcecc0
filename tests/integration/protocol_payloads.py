"""The requests the protocol-parity test sends to both servers: hypothesis strategies per model
(`GENERATED`), every request MLflow's own scoring-server suite sends (`MLFLOW_SUITE`), and more
(`MORE`). Each request is a (content type, body) pair."""

from __future__ import annotations

import base64
import json
from typing import Any

import pandas as pd
from hypothesis import strategies as st

from tests.integration.parity_pair import JSON, as_json

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
odd = st.one_of(st.none(), st.booleans(), text, finite, st.lists(st.integers(-9, 9), max_size=2),
                st.sampled_from([float("nan"), float("inf")]))  # fmt: skip
NUMBERS = {"x": st.one_of(finite, st.integers(-(10**6), 10**6)),
           "n": st.integers(-(2**53), 2**53), "tag": text}  # fmt: skip
ALL_TYPES = {
    "boolean": st.booleans(), "integer": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**53), 2**53), "double": finite, "string": text,
    "float": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "binary": st.binary(max_size=4).map(lambda b: base64.b64encode(b).decode()),
    "datetime": st.datetimes(pd.Timestamp("1900-01-01").to_pydatetime(),
                             pd.Timestamp("2200-01-01").to_pydatetime()).map(lambda d: d.isoformat()),
}  # fmt: skip
FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances", "csv")


NO_PARAMS = st.none()


@st.composite
def frames(
    draw: st.DrawFn,
    columns: dict[str, st.SearchStrategy[Any]],
    *,
    broken: bool = True,
    params: st.SearchStrategy[Any] = NO_PARAMS,
) -> tuple[str, bytes]:
    """A frame in one of the formats; now and then with a column missing, an odd value or an
    extra column (`broken`), and `params`."""
    rows = draw(st.lists(st.fixed_dictionaries(columns), min_size=1, max_size=4))
    names = list(columns)
    if broken and draw(st.booleans()):
        change = draw(st.sampled_from(["drop", "odd", "extra"]))
        if change == "drop":
            names.remove(draw(st.sampled_from(names)))
        elif change == "odd":
            rows[draw(st.integers(0, len(rows) - 1))][draw(st.sampled_from(names))] = draw(odd)
        else:
            names.append("extra")
            for row in rows:
                row["extra"] = draw(odd)
    rows = [{name: row[name] for name in names} for row in rows]
    fmt = draw(st.sampled_from(FORMATS))
    if fmt == "csv":
        return "text/csv", pd.DataFrame(rows, columns=names).to_csv(index=False).encode()
    data: Any = {
        "dataframe_split": {"columns": names, "data": [[r[n] for n in names] for r in rows]},
        "dataframe_records": rows, "instances": rows,
        "inputs": {n: [r[n] for r in rows] for n in names},
    }[fmt]  # fmt: skip
    document = {fmt: data}
    chosen = draw(params)
    if chosen is not None:
        document["params"] = chosen
    return as_json(document, draw(st.booleans()))


def optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


SAMPLING = optional(temperature=st.one_of(st.floats(0, 2), st.integers(0, 2), text),
                    max_tokens=st.one_of(st.integers(1, 100), st.floats(1, 9), text),
                    top_p=st.floats(0, 1), seed=st.integers(0, 9))  # fmt: skip
PARAMS = optional(
    when=st.one_of(st.dates().map(lambda d: d.isoformat()), text, st.integers(0, 9)),
    k=st.one_of(st.integers(-9, 9), finite, text), mode=st.one_of(text, st.integers(0, 9)),
    scale=st.one_of(finite, st.integers(-9, 9), text),
    flags=st.one_of(st.lists(st.booleans(), max_size=3), st.booleans(), st.lists(st.integers())),
    unknown=text,
)  # fmt: skip
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), finite, text),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
MESSAGES = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                           "content": text}), min_size=1, max_size=3)  # fmt: skip
LLM_EXTRAS = optional(temperature=st.one_of(st.floats(0, 2), text), max_tokens=st.integers(1, 99),
                      top_p=st.floats(0, 1), random=text)  # fmt: skip


def unified(key: str, value: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, bytes]]:
    return st.builds(lambda v, extras: as_json({key: v, **extras}), value, LLM_EXTRAS)


def matrices(width: st.SearchStrategy[int]) -> st.SearchStrategy[list[list[float]]]:
    values = st.floats(-1e6, 1e6, width=32)
    return width.flatmap(lambda w: st.lists(st.lists(values, min_size=w, max_size=w),
                                            min_size=1, max_size=3))  # fmt: skip


TENSOR = st.one_of(
    matrices(st.sampled_from([3, 3, 2])).map(lambda m: as_json({"inputs": m})),
    matrices(st.just(3)).map(lambda m: as_json({"instances": m})),
)
PAIRS = st.one_of(
    st.builds(lambda a, b: as_json({"inputs": {"a": a, "b": b}}), matrices(st.just(2)),
              matrices(st.sampled_from([2, 2, 3]))),
    matrices(st.just(2)).map(lambda m: as_json({"instances": [{"a": r, "b": r} for r in m]})),
    matrices(st.just(2)).map(lambda m: as_json({"inputs": {"a": m}})),
)  # fmt: skip
ANYTHING = st.one_of(
    st.builds(lambda fmt, v, p: as_json({fmt: v, **({"params": p} if p is not None else {})}),
              st.sampled_from(FORMATS[:4]), JSON_VALUES, st.none() | st.dictionaries(text, JSON_VALUES, max_size=2)),
    unified("messages", JSON_VALUES), unified("prompt", JSON_VALUES), unified("input", JSON_VALUES),
    JSON_VALUES.map(as_json),
)  # fmt: skip

GENERATED: dict[str, st.SearchStrategy[tuple[str, bytes]]] = {
    "records": frames(NUMBERS), "doubled": frames(NUMBERS), "lengths": frames(NUMBERS),
    "matrix": frames(NUMBERS), "text": frames(NUMBERS),
    "summary": frames(NUMBERS, params=st.none() | SAMPLING),
    "dtypes": frames(ALL_TYPES, broken=False),
    "params": frames(NUMBERS, broken=False, params=PARAMS),
    "echo": ANYTHING,
    "chat": unified("messages", MESSAGES), "chat_params": unified("messages", MESSAGES),
    "chat_inputs": unified("messages", MESSAGES),
    "completions": unified("prompt", text), "completions_params": unified("prompt", text),
    "embeddings": unified("input", text | st.lists(text, max_size=3)),
    "embeddings_signed": unified("input", text),
    "row_sums": TENSOR, "pair_sums": PAIRS,
    "checks": frames({"x": st.one_of(st.just(0.0), st.floats(0, 1e6), st.just(1e301))},
                     broken=False),
    "knn": frames({"0": finite, "1": finite}),
}  # fmt: skip


# --- every request MLflow's own scoring-server suite sends -----------------------------------

IRIS = [[5.1, 3.5], [4.9, 3.0], [6.7, 3.1]]
DF = pd.DataFrame(IRIS)
SPLIT = {"dataframe_split": DF.to_dict(orient="split")}
ALL_TYPES_FRAME = pd.DataFrame({
    "boolean": [True, False, True], "integer": [1, 2, 3], "long": [1, 2, 3],
    "float": [3.1415927, 6.2831855, 9.424778], "double": [3.141592653589793] * 3,
    "string": ["a", "b", "c"], "binary": [base64.b64encode(b"\x01\x02\x03").decode()] * 3,
    "datetime": ["2021-01-01T00:00:00", "2021-02-02T00:00:00", "2021-03-03T12:00:00"],
})  # fmt: skip
CHAT_PAYLOAD = {"messages": [{"role": "user", "content": "hello!"}], "temperature": 0.5,
                "max_tokens": 20}  # fmt: skip
MLFLOW_SUITE: list[tuple[str, str, str | None, bytes]] = [
    ("malformed json", "knn", JSON, b"this is,,,, not valid json"),
    *[(f"not a dict: {v!r}", "knn", JSON, json.dumps(v).encode()) for v in (1, "1", [1])],
    ("no format key", "knn", *as_json({"not": "a serialized dataframe"})),
    ("two format keys", "knn", *as_json({"dataframe_records": [], "dataframe_split": {"data": []}})),
    ("split given records", "knn", *as_json({"dataframe_split": DF.to_dict(orient="records")})),
    ("records given split", "knn", *as_json({"dataframe_records": DF.to_dict(orient="split")})),
    ("invalid split", "knn", *as_json({"dataframe_split": {"index": [1, 2], "data": [[1], [2], [3]]}})),
    ("records", "knn", *as_json({"dataframe_records": DF.to_dict(orient="records")})),
    ("records, charset", "knn", f"{JSON}; charset=UTF-8", json.dumps({"dataframe_records": DF.to_dict(orient="records")}).encode()),
    ("split", "knn", *as_json(SPLIT)),
    ("split, charset", "knn", f"{JSON}; charset=UTF-8", json.dumps(SPLIT).encode()),
    ("unsupported content type", "knn", "not_a_supported_content_type", DF.to_json(orient="split").encode()),
    ("unknown content type parameter", "knn", f"{JSON}; something=something", DF.to_json(orient="split").encode()),
    ("latin-1", "knn", f"{JSON}; charset=latin-1", json.dumps(SPLIT).encode()),
    ("instances", "knn", *as_json({"instances": IRIS})),
    ("params schema: none given", "knn_params", f"{JSON}; charset=UTF-8", json.dumps(SPLIT).encode()),
    ("params schema: invalid value", "knn_params", *as_json({**SPLIT, "params": {"param1": "invalid_value1"}})),
    ("params schema: unknown param", "knn_params", *as_json({**SPLIT, "params": {"invalid_param": "value"}})),
    ("all types, split", "dtypes", *as_json({"dataframe_split": ALL_TYPES_FRAME.to_dict(orient="split")})),
    ("all types, records", "dtypes", *as_json({"dataframe_records": ALL_TYPES_FRAME.to_dict(orient="records")})),
    ("all types, inputs", "dtypes", *as_json({"inputs": ALL_TYPES_FRAME.to_dict(orient="list")})),
    ("paths in strings", "echo", *as_json({"dataframe_split": pd.DataFrame({
        "url": ["http://foo.com", "https://bar.com"], "bad_protocol": ["aaa://bbb", "address:/path"],
    }).to_dict(orient="split")})),
    *[(f"chat, {key}", key, *as_json(CHAT_PAYLOAD)) for key in ("chat", "chat_params", "chat_inputs")],
    *[(f"completions, {key}", key, *as_json({"prompt": "hello!", "temperature": 0.5, "max_tokens": 20}))
      for key in ("completions", "completions_params")],
    *[(f"embeddings, {key}", key, *as_json({"input": "hello!", "random": "test"}))
      for key in ("embeddings", "embeddings_signed")],
    ("wrapped scikit-learn, messages", "wrapped", *as_json({"messages": [{"role": "user", "content": "[2,2,2,2]"}], "max_tokens": 20})),
    ("named tensors, instances", "pair_sums", *as_json({"instances": [{"a": [1.0, 2.0], "b": [3.0, 4.0]}, {"a": [5.0, 6.0], "b": [7.0, 8.0]}]})),
    ("named tensors, inputs", "pair_sums", *as_json({"inputs": {"a": [[1.0, 2.0]], "b": [[3.0, 4.0]]}})),
]  # fmt: skip
# ... and what else a client may send that the generated requests do not
PARQUET = "application/vnd.apache.parquet"
MORE: list[tuple[str, str, str | None, bytes]] = [
    ("two unknown content type parameters", "knn", f"{JSON}; a=1; b=2", json.dumps(SPLIT).encode()),
    ("parquet", "knn", PARQUET, DF.rename(columns=str).to_parquet()),
    ("not parquet", "knn", PARQUET, b"PAR1 nope"),
    ("csv", "knn", "text/csv", DF.to_csv(index=False).encode()),
    ("csv, not UTF-8", "knn", "text/csv", "0,1\n\u00e9,1\n".encode("latin-1")),
    ("NaN in JSON", "echo", JSON, b'{"inputs": [NaN, Infinity, -Infinity]}'),
    ("an integer past 64 bits", "echo", JSON, b'{"inputs": [123456789012345678901234567890]}'),
    ("UTF-16 JSON", "echo", JSON, json.dumps({"inputs": [1, "\u00e9"]}).encode("utf-16")),
    ("not UTF-8 JSON", "echo", JSON, b'{"inputs": ["\xe9"]}'),
    ("empty body", "echo", JSON, b""),
    ("an empty object", "echo", JSON, b"{}"),
    ("params only", "echo", *as_json({"params": {"a": 1}})),
    ("unified input and a format key", "echo", *as_json({"prompt": "p", "inputs": [1]})),
]  # fmt: skip
BY_MODEL: dict[str, list[tuple[str, str | None, bytes]]] = {}
for _name, _key, _type, _body in [*MLFLOW_SUITE, *MORE]:
    BY_MODEL.setdefault(_key, []).append((_name, _type, _body))
