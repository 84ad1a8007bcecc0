"""Log the models the protocol-parity test serves with both servers; print {key: model URI}.

    python -m tests.integration.protocol_models HOME   (MLFLOW_TRACKING_URI set)

Run as `__main__`, so cloudpickle stores these classes by value; the one exception is `Shouter`,
imported from `shouting.py` in HOME: it is stored by reference, and loads only in a server whose
working directory is HOME (as `mlflow models serve` allows). Most models are logged without a
registered name, so they are served by MLflow 3's `models:/MODEL_ID` URI; one each by
`models:/NAME/VERSION`, `runs:/RUN_ID/model` and a local path.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema, TensorSpec
from mlflow.types.schema import Array, Object, Property

SHOUTING = """
from mlflow.pyfunc import PythonModel


class Shouter(PythonModel):
    def predict(self, context, model_input, params=None):
        return [str(value).upper() for value in model_input["text"]]
"""

ALL_TYPES = Schema([ColSpec(kind, kind) for kind in
                    ("boolean", "integer", "long", "float", "double", "string", "binary",
                     "datetime")])  # fmt: skip
NUMBERS = Schema([ColSpec("double", "x"), ColSpec("long", "n"), ColSpec("string", "tag")])
CHAT = Schema([ColSpec(Array(Object([Property("role", DataType.string),
                                     Property("content", DataType.string)])), name="messages")])  # fmt: skip
SAMPLING = ParamSchema([ParamSpec("temperature", DataType.double, default=0.5),
                        ParamSpec("max_tokens", DataType.integer, default=20),
                        ParamSpec("top_p", DataType.double, default=0.9)])  # fmt: skip
PARAMS = ParamSchema([ParamSpec("when", DataType.datetime, np.datetime64("2023-07-01")),
                      ParamSpec("k", DataType.long, 3), ParamSpec("mode", DataType.string, "x"),
                      ParamSpec("scale", DataType.double, 1.0),
                      ParamSpec("flags", DataType.boolean, [True], shape=(-1,))])  # fmt: skip


def _first(model_input: Any) -> Any:
    return model_input.to_dict(orient="records")[0] if isinstance(model_input, pd.DataFrame) \
        else model_input  # fmt: skip


class Dtypes(PythonModel):  # MLflow's own serving-with-schema model: the dtypes it was given
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return [[k, str(v)] for k, v in model_input.dtypes.items()]


class Records(PythonModel):  # a list of dicts
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return model_input.to_dict(orient="records")


class Summary(PythonModel):  # a dict
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return {"rows": len(model_input), "columns": list(model_input.columns),
                "total": float(model_input["x"].sum()), "params": params}  # fmt: skip


class Doubled(PythonModel):  # a DataFrame
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        out = model_input.copy()
        out["x2"] = out["x"] * 2
        return out


class Lengths(PythonModel):  # a Series
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return model_input["tag"].str.len().rename("length")


class Matrix(PythonModel):  # a float32 matrix
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return np.stack([model_input["x"], model_input["n"]], axis=1).astype(np.float32) / 3


class Text(PythonModel):  # a string
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return f"{len(model_input)} rows, tags {','.join(map(str, model_input['tag']))}"


class RowSums(PythonModel):  # tensor in, tensor out
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return np.asarray(model_input).sum(axis=-1)


class PairSums(PythonModel):  # named tensors in (MLflow's two-input Keras case), a dict out
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return {name: np.asarray(value).sum(axis=-1) for name, value in model_input.items()}


class Echo(PythonModel):  # no signature: whatever it was handed, and the params
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        got = model_input.to_dict(orient="split") if isinstance(model_input, pd.DataFrame) \
            else model_input  # fmt: skip
        return {"input": got, "params": params}


class ParamsEcho(PythonModel):  # the params MLflow enforced against the params schema
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return {key: str(value) for key, value in (params or {}).items()}


class Chat(PythonModel):  # MLflow's own LLM test models, echoing input and params
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        got = _first(model_input)
        text = " ".join(str(m.get("content")) for m in got["messages"] if isinstance(m, dict))
        return {"object": "chat.completion", "choices": [{"index": 0, "message": {
            "role": "assistant", "content": text}}], "model_input": got, "params": params}  # fmt: skip


class Completions(PythonModel):
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        got = _first(model_input)
        return {"choices": [{"index": 0, "text": got["prompt"]}], "model_input": got,
                "params": params}  # fmt: skip


class Embeddings(PythonModel):
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        got = _first(model_input)
        return {"data": [{"index": 0, "embedding": [0.1, 0.2, 0.3]}], "model_input": got,
                "params": params}  # fmt: skip


class Checks(PythonModel):  # raises on a negative x, writes NaN and infinities for x == 0
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        x = model_input["x"].to_numpy(dtype=float)
        if (x < 0).any():
            raise ValueError("x must not be negative")
        return np.where(x == 0, math.nan, np.where(x > 1e300, math.inf, x))


class Unwritable(PythonModel):  # an output JSON cannot hold
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return {1, 2, 3}


class Slow(PythonModel):  # takes 3 s to answer
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        time.sleep(3)
        return [1.0] * len(model_input)


class SlowToLoad(PythonModel):  # takes 5 s to load
    def load_context(self, context: Any) -> None:
        time.sleep(5)

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return [1.0] * len(model_input)


class Unloadable(PythonModel):
    def load_context(self, context: Any) -> None:
        raise RuntimeError("the weights file is corrupt")

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return []


class WrappedSklearn(PythonModel):  # MLflow's own: a pyfunc over a scikit-learn model, chat keys
    def load_context(self, context: Any) -> None:
        self.model = mlflow.pyfunc.load_model(context.artifacts["model_path"])

    def predict(self, context: Any, model_input: Any) -> Any:
        return self.model.predict([json.loads(model_input["messages"][0]["content"])])


def knn(home: Path) -> dict[str, str]:
    """MLflow's scoring-server fixture: k-NN on two iris features, saved without a signature;
    and a 4-feature logistic regression (for the wrapped model), and the k-NN with a params
    schema."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    X, y = load_iris(return_X_y=True)
    save = {"serialization_format": "cloudpickle", "pip_requirements": REQUIREMENTS}
    mlflow.sklearn.save_model(KNeighborsClassifier().fit(X[:, :2], y), home / "knn", **save)
    with_params = mlflow.models.infer_signature(X[:, :2])
    with_params.params = ParamSchema([ParamSpec("param1", DataType.datetime,
                                                np.datetime64("2023-07-01"))])  # fmt: skip
    mlflow.sklearn.save_model(KNeighborsClassifier().fit(X[:, :2], y), home / "knn-params",
                              signature=with_params, **save)  # fmt: skip
    mlflow.sklearn.save_model(LogisticRegression(max_iter=500).fit(X, y), home / "logistic",
                              **save)  # fmt: skip
    mlflow.pyfunc.save_model(home / "wrapped", python_model=WrappedSklearn(),
                             artifacts={"model_path": str(home / "logistic")},
                             pip_requirements=REQUIREMENTS)  # fmt: skip
    return {"knn": str(home / "knn"), "knn_params": str(home / "knn-params"),
            "wrapped": str(home / "wrapped")}  # fmt: skip


# Named outright: inferring them runs a subprocess per model, most of the fixture's time.
REQUIREMENTS = [f"mlflow=={mlflow.__version__}"]


def logged(model: PythonModel, signature: ModelSignature | None = None, **kw: Any) -> Any:
    return mlflow.pyfunc.log_model(name="model", python_model=model, signature=signature,
                                   pip_requirements=REQUIREMENTS, **kw)  # fmt: skip


def main(home: Path) -> dict[str, str]:
    (home / "shouting.py").write_text(SHOUTING)
    sys.path.insert(0, str(home))
    from shouting import Shouter  # type: ignore[import-not-found]

    mlflow.set_experiment("protocol-parity")
    columns = ModelSignature(NUMBERS)
    tensor = ModelSignature(Schema([TensorSpec(np.dtype(np.float32), (-1, 3))]))
    pair = ModelSignature(Schema([TensorSpec(np.dtype(np.float64), (-1, 2), "a"),
                                  TensorSpec(np.dtype(np.float64), (-1, 2), "b")]))  # fmt: skip
    uris: dict[str, str] = {}
    with mlflow.start_run() as run:
        logged(Dtypes(), ModelSignature(ALL_TYPES))
        uris["dtypes"] = f"runs:/{run.info.run_id}/model"
    with mlflow.start_run():
        registered = logged(Records(), columns, registered_model_name="ProtocolRecords")
        uris["records"] = f"models:/ProtocolRecords/{registered.registered_model_version}"
        for key, model, signature in [
            ("summary", Summary(), ModelSignature(NUMBERS, params=SAMPLING)),
            ("doubled", Doubled(), columns), ("lengths", Lengths(), columns),
            ("matrix", Matrix(), columns), ("text", Text(), columns),
            ("row_sums", RowSums(), tensor), ("pair_sums", PairSums(), pair),
            ("echo", Echo(), None),
            ("params", ParamsEcho(), ModelSignature(NUMBERS, params=PARAMS)),
            ("chat", Chat(), None), ("chat_params", Chat(), ModelSignature(CHAT, params=SAMPLING)),
            ("chat_inputs", Chat(), ModelSignature(Schema([*CHAT.inputs,
                ColSpec(DataType.long, "max_tokens", required=False),
                ColSpec(DataType.double, "temperature", required=False)]))),
            ("completions", Completions(), None),
            ("completions_params", Completions(), ModelSignature(
                Schema([ColSpec(DataType.string, "prompt")]), params=SAMPLING)),
            ("embeddings", Embeddings(), None),
            ("embeddings_signed", Embeddings(), ModelSignature(
                Schema([ColSpec(DataType.string, "input")]))),
            ("checks", Checks(), ModelSignature(Schema([ColSpec("double", "x")]))),
            ("unwritable", Unwritable(), columns), ("slow", Slow(), columns),
            ("slow_to_load", SlowToLoad(), columns), ("unloadable", Unloadable(), None),
            ("shouter", Shouter(), ModelSignature(Schema([ColSpec("string", "text")]))),
        ]:  # fmt: skip
            uris[key] = logged(model, signature).model_uri
    return {**uris, **knn(home)}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
