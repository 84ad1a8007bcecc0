"""The data plane, `Runtime.infer`: every protocol and every path leaves the same side effects.

Real scikit-learn models, saved by MLflow and loaded by the server's own loader: one with an
all-`double` signature (the fast path) and one with a string column (MLflow's general path). For
each protocol (MLflow JSON, MLflow CSV, Open Inference Protocol) and each path (read and scored
on the event loop, or in a scoring thread), a live answer counts its rows once, feeds drift once
and keeps its predictions for feedback under its request id; a refused request leaves none of
that; a copy of traffic (`live=False`) gets the same answer and leaves none of it either.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import orjson
import pandas as pd
import pytest
from mlflow.models import infer_signature
from prometheus_client import CollectorRegistry
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeRegressor

from turnout_serving.dataplane import INLINE_MAX_BYTES, InferenceProtocol, InferenceRequest
from turnout_serving.domain.drift_profile import build_profile
from turnout_serving.domain.feedback import FeedbackResult
from turnout_serving.errors import ModelNotReady, ServingError
from turnout_serving.model_source import MlflowModelProvider, resolve
from turnout_serving.runtime import Runtime
from turnout_serving.settings import ServingSettings

pytestmark = pytest.mark.asyncio

MLFLOW, OIP = InferenceProtocol.MLFLOW, InferenceProtocol.OPEN_INFERENCE
MAX_ROWS = 5000
BIG = 4000  # rows: every payload format of this many rows is over INLINE_MAX_BYTES
CITIES = ["lyon", "oslo", "kyiv"]


@dataclass(frozen=True)
class Model:
    path: Path
    estimator: Any
    numeric: bool  # all-double signature: the fast path


def features(rows: int, numeric: bool, seed: int = 0) -> pd.DataFrame:
    """Inputs with three decimals, so JSON, CSV and tensors all carry the exact same doubles."""
    rng = np.random.default_rng(seed)
    if numeric:
        values = rng.normal(size=(rows, 3)).round(3)
        return pd.DataFrame(values, columns=["a", "b", "c"])
    return pd.DataFrame({
        "city": [CITIES[i] for i in rng.integers(0, 3, rows)],
        "x": rng.normal(size=rows).round(3),
    })  # fmt: skip


def save(home: Path, numeric: bool) -> Model:
    """An MLflow sklearn model with its signature, input example and drift reference. A tree:
    its predictions are leaf values, the same floats however the input matrix is laid out."""
    train = features(300, numeric, seed=1)
    target = np.arange(300.0) % 7
    tree = DecisionTreeRegressor(max_depth=5, random_state=0)
    if numeric:
        estimator = tree.fit(train, target)
    else:
        encode = ColumnTransformer([("city", OneHotEncoder(), ["city"])], remainder="passthrough")
        estimator = make_pipeline(encode, tree).fit(train, target)
    path = home / ("numeric" if numeric else "mixed")
    mlflow.sklearn.save_model(
        estimator,
        path,
        signature=infer_signature(train, target),
        input_example=train.head(2),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
    )
    profile = build_profile(train, estimator.predict(train))
    (path / "turnout-reference.json").write_bytes(orjson.dumps(profile.to_dict()))
    return Model(path, estimator, numeric)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Model]:
    home = tmp_path_factory.mktemp("models")
    return {numeric: save(home, numeric) for numeric in (True, False)}


def serve(model: Model, cache: Path, *, load: bool = True) -> Runtime:
    """A fresh server state (fresh metrics, drift window and feedback store) for `model`."""
    settings = ServingSettings(
        model_uri=str(model.path), cache_dir=cache, max_rows=MAX_ROWS, drift_window_rows=100_000
    )
    runtime = Runtime(
        settings, MlflowModelProvider(resolve(str(model.path)), cache), CollectorRegistry()
    )
    if load:
        runtime.load()
        assert runtime.state.ready, runtime.state.error
    return runtime


# --- payloads -------------------------------------------------------------------------------


def mlflow_json(frame: pd.DataFrame) -> tuple[bytes, str]:
    split = {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}
    return orjson.dumps({"dataframe_split": split}), "application/json"


def mlflow_csv(frame: pd.DataFrame) -> tuple[bytes, str]:
    return frame.to_csv(index=False).encode(), "text/csv"


def oip(frame: pd.DataFrame) -> tuple[bytes, str]:
    inputs = [
        {"name": str(name), "shape": [len(frame)],
         "datatype": "BYTES" if pd.api.types.is_string_dtype(frame[name]) else "FP64",
         "data": frame[name].tolist()}
        for name in frame.columns
    ]  # fmt: skip
    return orjson.dumps({"id": "client-id", "inputs": inputs}), "application/json"


ENCODERS = {"json": (MLFLOW, mlflow_json), "csv": (MLFLOW, mlflow_csv), "oip": (OIP, oip)}


def asking(protocol: InferenceProtocol, payload: tuple[bytes, str], live: bool) -> InferenceRequest:
    body, content_type = payload
    return InferenceRequest(body, content_type, "req-1", protocol, live=live)


# --- what a request leaves behind -----------------------------------------------------------


@dataclass(frozen=True)
class Effects:
    rows: float  # turnout_inference_rows_total
    drift_rows: float  # rows in the drift window
    feedback: FeedbackResult  # what a label for the request id finds
    live_mae: float | None  # live MAE once that label (the answered predictions) is taken


def effects(runtime: Runtime, request_id: str, predictions: list[float]) -> Effects:
    """The side effects, read where a user reads them: metrics, and the feedback answer."""
    labels = runtime.metrics.labels
    rows = runtime.registry.get_sample_value("turnout_inference_rows_total", labels)
    drift_rows = runtime.registry.get_sample_value("turnout_drift_window_rows", labels)
    result = runtime.feedback(request_id, predictions)
    mae = runtime.registry.get_sample_value("turnout_live_mae", labels)
    assert rows is not None and drift_rows is not None and mae is not None
    return Effects(rows, drift_rows, result, None if np.isnan(mae) else mae)


NONE = Effects(0.0, 0.0, FeedbackResult.UNKNOWN, None)


def record_threads(runtime: Runtime) -> list[tuple[str, str]]:
    """Where the predictor read and scored: on the event loop (the caller's thread) or not."""
    seen: list[tuple[str, str]] = []
    loop = threading.get_ident()
    predictor = runtime.predictor
    for name in ("parse", "parse_frame", "score_parsed"):
        original = getattr(predictor, name)

        def spy(*args: Any, _original: Any = original, _name: str = name) -> Any:
            where = "loop" if threading.get_ident() == loop else "thread"
            seen.append(("read" if _name.startswith("parse") else "score", where))
            return _original(*args)

        setattr(predictor, name, spy)
    return seen


def expected_body(
    protocol: InferenceProtocol, runtime: Runtime, predictions: list[float], answer_id: str
) -> Any:
    if protocol is MLFLOW:
        return {"predictions": predictions}
    labels = runtime.metrics.labels
    output = {"name": "predict", "shape": [len(predictions)], "datatype": "FP64",
              "data": predictions}  # fmt: skip
    return {"model_name": labels["model"], "model_version": labels["version"], "id": answer_id,
            "outputs": [output]}  # fmt: skip


# --- answered requests ----------------------------------------------------------------------

LOOP, THREAD = ("loop", "loop"), ("thread", "thread")
READ_ON_LOOP = ("loop", "thread")  # MLflow's own parsing of a small body, its predict in a thread

ANSWERED = [
    # numeric model, format, rows, where it is read and where scored
    pytest.param(True, "json", 3, LOOP, id="json-fast-inline"),
    pytest.param(True, "json", BIG, THREAD, id="json-fast-thread"),
    pytest.param(True, "csv", 3, READ_ON_LOOP, id="csv-general-inline-read"),
    pytest.param(True, "csv", BIG, THREAD, id="csv-general-thread"),
    pytest.param(True, "oip", 3, LOOP, id="oip-fast-inline"),
    pytest.param(True, "oip", BIG, THREAD, id="oip-fast-thread"),
    pytest.param(False, "json", 3, THREAD, id="json-string-signature"),
    pytest.param(False, "csv", 3, THREAD, id="csv-string-signature"),
    pytest.param(False, "oip", 3, THREAD, id="oip-string-signature"),
]


def case(
    models: dict[bool, Model], tmp_path: Path, numeric: bool, form: str, rows: int
) -> tuple[Runtime, Any, Any, list[float], list[tuple[str, str]]]:
    """A served model and one request of `rows` in `form`: the runtime, the request's protocol
    and payload, what the estimator itself predicts for it, and where the runtime's work ran."""
    model = models[numeric]
    runtime = serve(model, tmp_path)
    frame = features(rows, numeric)
    protocol, encode = ENCODERS[form]
    predictions = model.estimator.predict(frame).tolist()
    return runtime, protocol, encode(frame), predictions, record_threads(runtime)


@pytest.mark.parametrize(("numeric", "form", "rows", "where"), ANSWERED)
async def test_a_live_answer_counts_feeds_drift_and_keeps_predictions_once(
    models: dict[bool, Model], tmp_path: Path, numeric: bool, form: str, rows: int,
    where: tuple[str, str],
) -> None:  # fmt: skip
    runtime, protocol, payload, predictions, threads = case(models, tmp_path, numeric, form, rows)
    assert (len(payload[0]) > INLINE_MAX_BYTES) is (rows == BIG)

    answer = await runtime.infer(asking(protocol, payload, live=True))

    assert orjson.loads(answer.body) == expected_body(protocol, runtime, predictions, "client-id")
    assert (answer.scored.rows, answer.scored.predictions.tolist()) == (rows, predictions)
    assert [w for _, w in threads] == list(where)
    assert effects(runtime, "req-1", predictions) == Effects(
        float(rows), float(rows), FeedbackResult.MATCHED, 0.0
    )


@pytest.mark.parametrize(("numeric", "form", "rows", "where"), ANSWERED)
async def test_a_copy_of_traffic_gets_the_same_answer_and_leaves_nothing_behind(
    models: dict[bool, Model], tmp_path: Path, numeric: bool, form: str, rows: int,
    where: tuple[str, str],
) -> None:  # fmt: skip
    runtime, protocol, payload, predictions, threads = case(models, tmp_path, numeric, form, rows)

    copy = await runtime.infer(asking(protocol, payload, live=False))

    assert [w for _, w in threads] == list(where)
    assert effects(runtime, "req-1", predictions) == NONE
    live = await runtime.infer(asking(protocol, payload, live=True))
    assert copy.body == live.body
    assert orjson.loads(copy.body) == expected_body(protocol, runtime, predictions, "client-id")


async def test_a_model_not_quick_enough_scores_in_a_thread(
    models: dict[bool, Model], tmp_path: Path
) -> None:
    """The fast path leaves the event loop once its predictions take too long (moving average)."""
    runtime = serve(models[True], tmp_path)
    assert runtime.predictor is not None
    runtime.predictor.fast_seconds = 1.0
    threads = record_threads(runtime)
    answer = await runtime.infer(asking(MLFLOW, mlflow_json(features(3, True)), live=True))
    assert threads == [("read", "thread"), ("score", "thread")]
    assert answer.scored.rows == 3


async def test_an_open_inference_request_without_id_is_answered_with_the_request_id(
    models: dict[bool, Model], tmp_path: Path
) -> None:
    runtime = serve(models[True], tmp_path)
    document = orjson.loads(oip(features(2, True))[0])
    del document["id"]
    answer = await runtime.infer(
        InferenceRequest(orjson.dumps(document), None, "req-7", OIP, live=True)
    )
    assert orjson.loads(answer.body)["id"] == "req-7"


# --- refused requests -----------------------------------------------------------------------


def with_cell(payload_rows: int, row: list[Any]) -> bytes:
    """A `dataframe_split` body of numeric rows whose last row is `row`."""
    data = [*features(payload_rows - 1, True).to_numpy().tolist(), row]
    return orjson.dumps({"dataframe_split": {"columns": ["a", "b", "c"], "data": data}})


def oip_body(inputs: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"inputs": inputs})


REFUSED = [
    # numeric model, protocol, body, content type, status
    pytest.param(True, MLFLOW, with_cell(3, ["x", 1.0, 2.0]), "application/json", 400,
                 id="json-inline-a-string-for-a-double"),
    pytest.param(True, MLFLOW, orjson.dumps({"dataframe_split": {"columns": ["a", "b"],
                                                                 "data": [[1.0, 2.0]]}}),
                 "application/json", 400, id="json-read-inline-signature-refuses-in-thread"),
    pytest.param(True, MLFLOW, with_cell(BIG, ["x", 1.0, 2.0]), "application/json", 400,
                 id="json-thread-a-string-for-a-double"),
    pytest.param(True, MLFLOW, b"a,b,c\n1.0,oops,2.0\n", "text/csv", 400,
                 id="csv-inline-read-a-string-for-a-double"),
    pytest.param(True, MLFLOW, mlflow_json(features(MAX_ROWS + 1, True))[0], "application/json",
                 413, id="json-thread-over-max-rows"),
    pytest.param(True, MLFLOW, b'{"dataframe_split": ', "application/json", 400,
                 id="json-inline-not-json"),
    pytest.param(True, MLFLOW, b"{}", "application/xml", 415, id="unsupported-media-type"),
    pytest.param(True, OIP, oip_body([{"name": "a", "shape": [1], "datatype": "FP64",
                                       "data": ["x"]}]), None, 400,
                 id="oip-inline-a-string-for-fp64"),
    pytest.param(True, OIP, oip_body([{"name": "a", "shape": [2], "datatype": "FP64",
                                       "data": [1.0] * BIG}]), None, 400,
                 id="oip-thread-data-not-its-shape"),
    pytest.param(True, OIP, oip_body([{"name": "a", "shape": [MAX_ROWS + 1], "datatype": "FP64",
                                       "data": [1.0] * (MAX_ROWS + 1)}]), None, 413,
                 id="oip-thread-over-max-rows"),
    pytest.param(False, MLFLOW, orjson.dumps({"dataframe_split": {"columns": ["x"],
                                                                  "data": [[1.0]]}}),
                 "application/json", 400, id="json-string-signature-a-missing-column"),
    pytest.param(False, MLFLOW, orjson.dumps({"dataframe_split": {"columns": ["city", "x"],
                                                                  "data": [["paris", 1.0]]}}),
                 "application/json", 500, id="json-string-signature-the-model-fails"),
    pytest.param(False, OIP, oip_body([{"name": "city", "shape": [1], "datatype": "BYTES",
                                        "data": ["lyon"]}]), None, 400,
                 id="oip-string-signature-a-missing-column"),
]  # fmt: skip


@pytest.mark.parametrize(("numeric", "protocol", "body", "content_type", "status"), REFUSED)
@pytest.mark.parametrize("live", [True, False])
async def test_a_refused_request_leaves_nothing_behind(
    models: dict[bool, Model], tmp_path: Path, numeric: bool, protocol: InferenceProtocol,
    body: bytes, content_type: str | None, status: int, live: bool,
) -> None:  # fmt: skip
    runtime = serve(models[numeric], tmp_path)
    with pytest.raises(ServingError) as refused:
        await runtime.infer(InferenceRequest(body, content_type, "req-1", protocol, live=live))
    assert refused.value.status_code == status
    assert refused.value.message
    assert effects(runtime, "req-1", [0.0]) == NONE


async def test_before_the_model_is_ready_a_request_is_refused_with_503(
    models: dict[bool, Model], tmp_path: Path
) -> None:
    runtime = serve(models[True], tmp_path, load=False)
    payload = mlflow_json(features(3, True))
    with pytest.raises(ModelNotReady) as refused:
        await runtime.infer(asking(MLFLOW, payload, live=True))
    assert (refused.value.status_code, refused.value.message) == (
        503, "The model is still loading.")  # fmt: skip
    labels = runtime.metrics.labels
    assert runtime.registry.get_sample_value("turnout_inference_rows_total", labels) == 0.0
