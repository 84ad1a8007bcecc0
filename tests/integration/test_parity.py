"""Answer-for-answer parity with `mlflow models serve` on the same registered models.

Both servers run as real processes on the same `models:/` URI. A hypothesis-generated sample of
payloads (tests/parity/payloads.py: every input format, JSON value kinds from integral floats to
nesting thousands deep, missing and extra columns, CSV, and the content types a client sends)
goes to both, for each demo model: numeric (Diabetes, the fast path), strings (Mixed), no
signature, Iris, and BikeSharing (integer columns), and models of other flavors (an XGBoost
regressor, a LightGBM classifier: tests/integration/flavor_models.py). Status codes must agree, 200 bodies must be
equal, and 4xx answers must carry the same error_code. The only departures allowed are the
recorded ones (tests/parity/parsing.py), recognised by the same oracle the in-process
differential test uses: a cell MLflow would change is a 400 naming it, and a payload that crashes
MLflow's server (500) is a 4xx.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import mlflow
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.types import ColSpec, Schema

from tests.conftest import Process
from tests.integration.flavor_models import LIGHTGBM, XGBOOST
from tests.parity.inprocess import CSV, JSON, mlflow_reads
from tests.parity.payloads import Payload, csv_payloads, json_payloads, refused_cells

pytestmark = pytest.mark.slow

DIABETES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
BIKES_LONG = ["season", "holiday", "workingday", "weather"]
BIKES_DOUBLE = ["temp", "atemp", "humidity", "windspeed"]


def doubles(*names: str) -> list[ColSpec]:
    return [ColSpec("double", name) for name in names]


# The demo models' signatures (scripts/demo_models.py); `test_signatures_are_the_served_ones`
# checks them against what the servers load.
MODELS: dict[str, Schema | None] = {
    "Diabetes": Schema(doubles(*DIABETES)),
    "Mixed": Schema(
        [*doubles("age", "bmi", "bp"), ColSpec("string", "sex"), ColSpec("string", "band")]
    ),
    "NoSignature": None,
    "Iris": Schema(doubles(*IRIS)),
    "BikeSharing": Schema([*(ColSpec("long", n) for n in BIKES_LONG), *doubles(*BIKES_DOUBLE)]),
}
# Other flavors (tests/integration/flavor_models.py), logged with their own MLflow flavors.
FLAVORS: dict[str, Schema | None] = {
    XGBOOST: MODELS["Diabetes"],
    LIGHTGBM: MODELS["Iris"],
}
FLAVOR_OF = {XGBOOST: "xgboost", LIGHTGBM: "lightgbm"}
SCHEMAS = {**MODELS, **FLAVORS}
SAMPLE = settings(
    max_examples=70,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)  # fmt: skip
CONTENT_TYPES = st.sampled_from(
    [JSON] * 8 + ["application/json; charset=utf-8", "text/plain",
                  "application/json; charset=latin-1", "application/json; format=pandas-split"]
)  # fmt: skip


_servers: dict[str, Process] = {}


def _turnout(serve_factory: Callable[..., Process], uri: str) -> Process:
    if uri not in _servers or _servers[uri].popen.poll() is not None:
        _servers[uri] = serve_factory(uri)
    return _servers[uri]


def post(url: str, content_type: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{url}/invocations", content=body, headers={"content-type": content_type},
                      timeout=60)  # fmt: skip


def compare(name: str, theirs_url: str, ours_url: str, payload: Payload, content_type: str) -> None:
    schema = SCHEMAS[name]
    theirs, ours = post(theirs_url, content_type, payload.body), post(ours_url, content_type,
                                                                          payload.body)  # fmt: skip
    where = f"{name} {content_type} {payload}\n  mlflow:  {theirs.status_code} {theirs.text[:300]}" \
            f"\n  turnout: {ours.status_code} {ours.text[:300]}"  # fmt: skip
    assert ours.status_code < 500, where
    reading = content_type.split(";")[0] in (JSON, CSV) and ours.status_code != 415
    expected = refused_cells(schema, payload, mlflow_reads(schema, payload.body, content_type)) \
        if reading else set()  # fmt: skip
    if expected:
        assert ours.status_code == 400 and ours.json()["error_code"] == "BAD_REQUEST", where
        assert any(f"Column '{col}' (" in ours.json()["message"] and f"row {row}'s" in
                   ours.json()["message"] for col, row in expected), where  # fmt: skip
    elif theirs.status_code >= 500:
        assert 400 <= ours.status_code < 500, where  # MLflow's server crashes on the payload
    else:
        assert ours.status_code == theirs.status_code, where
        if theirs.status_code == 200:
            assert ours.json() == theirs.json(), where
        elif theirs.headers.get("content-type", "").startswith("application/json"):
            assert "stack_trace" not in ours.json(), where
            if not refusal(ours.json()["message"]):  # both refuse; turnout names its cell
                assert ours.json()["error_code"] == theirs.json()["error_code"], where


MALFORMED = [b"{nope", b"", b'{"inputs": [1,', b"\xff\xfe{}", b'{"inputs": [NaN, Infinity]}']


def refusal(message: str) -> bool:
    """turnout's 400 for a value MLflow would change (tests/parity/parsing.py)."""
    return message.startswith("Column '") and "cannot take row" in message


@pytest.mark.parametrize("name", list(MODELS))
def test_generated_sample_answers_as_mlflow_models_serve(
    mlflow_serve, serve_factory, name: str
) -> None:  # type: ignore[no-untyped-def]
    uri = f"models:/{name}/1"
    answers_as_mlflow(name, mlflow_serve(uri).url, _turnout(serve_factory, uri).url)


@pytest.mark.parametrize("name", list(FLAVORS))
def test_other_flavors_answer_as_mlflow_models_serve(
    mlflow_serve, serve_factory, flavor_models: dict[str, str], name: str
) -> None:  # type: ignore[no-untyped-def]
    """An XGBoost and a LightGBM model, logged with their own flavors: the same sample."""
    uri = f"models:/{name}/{flavor_models[name]}"
    ours = _turnout(serve_factory, uri)
    assert httpx.get(f"{ours.url}/info").json()["flavor"] == FLAVOR_OF[name]
    answers_as_mlflow(name, mlflow_serve(uri).url, ours.url)


def answers_as_mlflow(name: str, theirs: str, ours: str) -> None:
    """A hypothesis sample of payloads for model `name`, each compared on both servers."""
    schema = SCHEMAS[name]
    unnamed = DIABETES if schema is None else None
    payloads = st.one_of(
        st.tuples(json_payloads(schema, unnamed), CONTENT_TYPES),
        st.tuples(csv_payloads(schema, unnamed), st.sampled_from([CSV, "text/csv; charset=utf-8"])),
        st.tuples(st.sampled_from(MALFORMED).map(lambda body: Payload(body, None, True)),
                  st.just(JSON)),
    )  # fmt: skip

    @SAMPLE
    @given(case=payloads)
    def sample(case: tuple[Payload, str]) -> None:
        compare(name, theirs, ours, *case)

    sample()


def tutorial_body() -> bytes:
    """The bike-sharing tutorial's curl: integer columns sent as floats, as most clients do."""
    return json.dumps({"dataframe_split": {
        "columns": [*BIKES_LONG, *BIKES_DOUBLE],
        "data": [[3.0, 0.0, 1.0, 1.0, 0.62, 0.59, 0.65, 0.19],
                 [1.0, 1.0, 0.0, 2.0, 0.22, 0.25, 0.80, 0.35]],
    }}).encode()  # fmt: skip


def test_bike_sharing_tutorial_curl_predicts_as_mlflow(mlflow_serve, serve_factory) -> None:  # type: ignore[no-untyped-def]
    uri = "models:/BikeSharing/1"
    theirs = post(mlflow_serve(uri).url, JSON, tutorial_body())
    ours = post(_turnout(serve_factory, uri).url, JSON, tutorial_body())
    assert (theirs.status_code, ours.status_code) == (200, 200), (theirs.text, ours.text)
    predictions = ours.json()["predictions"]
    assert predictions == theirs.json()["predictions"]
    assert len(predictions) == 2 and all(isinstance(p, float) for p in predictions)


@pytest.mark.parametrize("name", [n for n, s in MODELS.items() if s is not None])
def test_signatures_are_the_served_ones(serve_factory, name: str) -> None:  # type: ignore[no-untyped-def]
    served = httpx.get(f"{_turnout(serve_factory, f'models:/{name}/1').url}/info").json()
    schema = MODELS[name]
    assert schema is not None
    assert served["signature"] == [
        {"name": s.name, "type": s.type.name, "required": True} for s in schema.inputs
    ]


def test_mlflow_and_turnout_agree_on_health_endpoints(mlflow_serve, serve_factory) -> None:  # type: ignore[no-untyped-def]
    theirs, ours = (
        mlflow_serve("models:/Diabetes/1").url,
        _turnout(serve_factory, "models:/Diabetes/1").url,
    )
    for path, body in (("/ping", "\n"), ("/health", "\n"), ("/version", mlflow.__version__)):
        a, b = httpx.get(theirs + path), httpx.get(ours + path)
        assert (a.status_code, a.text, a.headers["content-type"]) == (
            b.status_code, b.text, b.headers["content-type"]) == (200, body, "application/json")  # fmt: skip
