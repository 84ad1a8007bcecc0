"""The shadow endpoints in one process (`shadow.py`): the preview's `POST /shadow` scores a copy
through the data plane and compares it, leaving no trace in live traffic's metrics; the admin
endpoints are off without a token and check theirs. Real scikit-learn models saved by MLflow;
the apps are called through `httpx.ASGITransport`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import pytest_asyncio
from mlflow.models import infer_signature
from prometheus_client import CollectorRegistry
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeRegressor

from turnout_serving.app import create_app
from turnout_serving.dataplane import InferenceProtocol, InferenceRequest
from turnout_serving.domain.shadow import ShadowCopy, encode_batch
from turnout_serving.model_source import MlflowModelProvider, resolve
from turnout_serving.settings import ServingSettings

pytestmark = pytest.mark.asyncio

TOKEN, ADMIN = "inference-token", "admin-token"


@dataclass(frozen=True)
class Served:
    client: httpx.AsyncClient
    registry: CollectorRegistry
    labels: dict[str, str]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, {**self.labels, **labels})


def regression_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(rows, 3)).round(3), columns=["a", "b", "c"])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two regressors that differ (depth 2 and 6) and a classifier answering probabilities."""
    home = tmp_path_factory.mktemp("shadow-models")
    train = regression_frame(300, seed=1)
    target = train["a"] * 3 + train["b"] ** 2
    paths = {}
    for name, depth in (("shallow", 2), ("deep", 6)):
        tree = DecisionTreeRegressor(max_depth=depth, random_state=0).fit(train, target)
        paths[name] = home / name
        mlflow.sklearn.save_model(tree, paths[name], signature=infer_signature(train, target),
                                  serialization_format="cloudpickle")  # fmt: skip
    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = ["sl", "sw", "pl", "pw"]
    classifier = LogisticRegression(max_iter=500).fit(X, y)
    paths["proba"] = home / "proba"
    mlflow.sklearn.save_model(classifier, paths["proba"], pyfunc_predict_fn="predict_proba",
                              signature=infer_signature(X, classifier.predict_proba(X)),
                              serialization_format="cloudpickle")  # fmt: skip
    return paths


async def served(path: Path, cache: Path, **settings: Any) -> AsyncIterator[Served]:
    config = ServingSettings(model_uri=str(path), cache_dir=cache, **settings)
    registry = CollectorRegistry()
    app = create_app(config, MlflowModelProvider(resolve(str(path)), cache), registry)
    app.state.runtime.load()
    assert app.state.runtime.state.ready, app.state.runtime.state.error
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://preview") as client:
        yield Served(client, registry, app.state.runtime.metrics.labels)
    await app.state.mirror.close()


@pytest_asyncio.fixture
async def preview(models: dict[str, Path], tmp_path: Path) -> AsyncIterator[Served]:
    async for server in served(models["deep"], tmp_path, auth_tokens=TOKEN):
        yield server


def split(frame: pd.DataFrame) -> bytes:
    return json.dumps({"dataframe_split": {"columns": list(frame.columns),
                                           "data": frame.to_numpy().tolist()}}).encode()  # fmt: skip


def copy(
    body: bytes, answer: bytes, protocol: str = "mlflow", seconds: float = 0.004
) -> ShadowCopy:
    path = "/invocations" if protocol == "mlflow" else "/v2/models/deep/infer"
    return ShadowCopy(protocol=protocol, content_type="application/json", path=path,  # type: ignore[arg-type]
                      request_id="req-7", body=body, active_answer=answer,
                      active_latency_seconds=seconds)  # fmt: skip


def copy_of(body: bytes, answer: bytes, protocol: str = "mlflow", seconds: float = 0.004) -> bytes:
    """A batch of one copy, as the active sends it."""
    return encode_batch([copy(body, answer, protocol, seconds)])


def only(answer: httpx.Response) -> dict[str, Any]:
    """The one result of a batch of one copy."""
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert len(results) == 1
    return dict(results[0])


AUTH = {"authorization": f"Bearer {TOKEN}"}


async def live_metrics(server: Served) -> dict[str, float | None]:
    """What live traffic leaves in the metrics, and whether the copy was kept for feedback."""
    feedback = await server.client.post("/feedback", json={"request_id": "req-7", "label": 1.0},
                                        headers=AUTH)  # fmt: skip
    return {
        "requests": sum(server.sample("turnout_inference_requests_total", endpoint=e, code="200")
                        or 0.0 for e in ("invocations", "v2_infer")),
        "rows": server.sample("turnout_inference_rows_total"),
        "feedback": 1.0 if feedback.json()["results"][0]["result"] == "matched" else 0.0,
    }  # fmt: skip


async def test_the_preview_compares_a_copy_and_counts_nothing_as_live_traffic(
    models: dict[str, Path], tmp_path: Path, preview: Served
) -> None:
    frame = regression_frame(5, seed=2)
    async for active in served(models["shallow"], tmp_path / "active"):
        answered = await active.client.post("/invocations", content=split(frame),
                                            headers={"content-type": "application/json"})  # fmt: skip
    assert answered.status_code == 200
    compared = await preview.client.post("/shadow", content=copy_of(split(frame), answered.content),
                                         headers=AUTH)  # fmt: skip
    summary = only(compared)
    shallow = np.array(answered.json()["predictions"])
    deep = np.array((await preview.client.post(
        "/invocations", content=split(frame), headers={**AUTH, "content-type": "application/json"}
    )).json()["predictions"])  # fmt: skip
    diff = np.abs(deep - shallow)
    rel = diff / np.maximum(np.abs(deep), np.abs(shallow))
    agree = (rel <= 0.01).sum()
    assert {k: v for k, v in summary.items() if k != "latencySeconds"} == {
        "result": "compared", "kind": "regression", "rows": 5, "agreement": agree / 5,
        "meanAbsDiff": pytest.approx(diff.mean()), "maxAbsDiff": pytest.approx(diff.max()),
        "meanRelDiff": pytest.approx(rel.mean()), "maxRelDiff": pytest.approx(rel.max()),
        "activeLatencySeconds": 0.004,
    }  # fmt: skip
    assert diff.max() > 0  # the two trees differ
    assert preview.sample("turnout_shadow_requests_total", result="compared") == 1
    assert preview.sample("turnout_shadow_agreement_ratio") == agree / 5
    assert preview.sample("turnout_shadow_window_rows") == 5
    assert preview.sample("turnout_shadow_abs_diff_count") == 5
    assert preview.sample("turnout_shadow_abs_diff_sum") == pytest.approx(diff.sum())
    assert preview.sample("turnout_shadow_latency_seconds_sum", side="active") == 0.004
    assert preview.sample("turnout_shadow_latency_seconds_count", side="preview") == 1
    # the one live request (to read the deep tree's answer) is all live traffic saw
    assert await live_metrics(preview) == {"requests": 1.0, "rows": 5.0, "feedback": 0.0}


async def test_a_copy_in_the_open_inference_protocol_is_scored_in_it(preview: Served) -> None:
    frame = regression_frame(3, seed=3)
    body = json.dumps({"inputs": [{"name": c, "shape": [3], "datatype": "FP64",
                                   "data": frame[c].tolist()} for c in frame.columns]}).encode()  # fmt: skip
    own = await preview.client.post("/v2/models/deep/infer", content=body, headers=AUTH)
    assert own.status_code == 200, own.text
    compared = await preview.client.post("/shadow", content=copy_of(body, own.content, "open_inference"),
                                         headers=AUTH)  # fmt: skip
    assert (only(compared)["result"], only(compared)["agreement"], only(compared)["maxAbsDiff"]) == (
        "compared", 1.0, 0.0)  # fmt: skip
    assert preview.sample("turnout_shadow_agreement_ratio") == 1.0


async def test_probabilities_are_compared_by_their_top_class(
    models: dict[str, Path], tmp_path: Path
) -> None:
    X, _ = load_iris(return_X_y=True, as_frame=True)
    X.columns = ["sl", "sw", "pl", "pw"]
    rows = X.iloc[[0, 60, 120]]
    async for server in served(models["proba"], tmp_path):
        own = await server.client.post("/invocations", content=split(rows),
                                       headers={"content-type": "application/json"})  # fmt: skip
        probabilities = np.array(own.json()["predictions"])
        assert probabilities.shape == (3, 3)
        flipped = probabilities[:, ::-1]  # an active that ranks the classes the other way round
        answer = json.dumps({"predictions": flipped.tolist()}).encode()
        found = only(await server.client.post("/shadow", content=copy_of(split(rows), answer)))
        top_agrees = (probabilities.argmax(axis=1) == flipped.argmax(axis=1)).mean()
        assert (found["kind"], found["rows"], found["agreement"]) == (
            "probabilities",
            3,
            top_agrees,
        )
        assert found["meanAbsDiff"] == pytest.approx(np.abs(probabilities - flipped).mean())


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1.0]]}}).encode(), 400, "missing inputs"),
        (b'{"dataframe_split": {"columns": ["a", "b", "c"], "data": [["x", 1, 2]]}}', 400, "column a"),
    ],
)  # fmt: skip
async def test_a_copy_the_preview_cannot_score_is_an_error_with_its_status_not_a_500(
    preview: Served, body: bytes, status: int, message: str
) -> None:
    answer = await preview.client.post("/shadow", content=copy_of(body, b'{"predictions": [1.0]}'),
                                       headers=AUTH)  # fmt: skip
    found = only(answer)
    assert (found["result"], found["status"], found["reason"]) == ("error", status, str(status))
    assert message in found["message"]
    assert preview.sample("turnout_shadow_requests_total", result="error") == 1
    assert preview.sample("turnout_shadow_errors_total", reason=str(status)) == 1
    assert preview.sample("turnout_shadow_requests_total", result="compared") == 0
    assert (
        preview.sample("turnout_inference_requests_total", endpoint="invocations", code=str(status))
        == 0
    )


async def test_a_batch_gets_one_result_per_copy_in_order_and_each_is_counted(
    preview: Served,
) -> None:
    frame = regression_frame(2, seed=6)
    own = await preview.client.post("/invocations", content=split(frame),
                                    headers={**AUTH, "content-type": "application/json"})  # fmt: skip
    batch = [copy(split(frame), own.content), copy(b'{"dataframe_split": {}}', own.content),
             copy(split(frame), b'{"predictions": [1.0, 2.0, 3.0]}'), copy(split(frame), own.content)]  # fmt: skip
    answer = await preview.client.post("/shadow", content=encode_batch(batch), headers=AUTH)
    assert answer.status_code == 200
    assert [(r["result"], r["reason"] if r["result"] == "error" else r["agreement"])
            for r in answer.json()["results"]] == [
        ("compared", 1.0), ("error", "400"), ("error", "incomparable"), ("compared", 1.0)]  # fmt: skip
    assert preview.sample("turnout_shadow_requests_total", result="compared") == 2
    assert preview.sample("turnout_shadow_requests_total", result="error") == 2
    assert preview.sample("turnout_shadow_window_rows") == 4


async def test_answers_that_cannot_be_compared_are_an_error_saying_why(preview: Served) -> None:
    body = split(regression_frame(2, seed=4))
    found = only(await preview.client.post("/shadow", headers=AUTH,
                                           content=copy_of(body, b'{"predictions": [1.0]}')))  # fmt: skip
    assert (found["result"], found["status"], found["reason"]) == ("error", None, "incomparable")
    assert found["message"] == (
        "the answers cannot be compared: the active answered shape [1], the preview [2]"
    )
    assert preview.sample("turnout_shadow_errors_total", reason="incomparable") == 1
    assert np.isnan(preview.sample("turnout_shadow_agreement_ratio"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "headers", "status", "fragment"),
    [
        (b'{"protocol": "mlflow"}', AUTH, 400, "Invalid shadow copies: copies: Field required"),
        (
            b'{"copies": [{"protocol": "mlflow"}]}',
            AUTH,
            400,
            "Invalid shadow copies: copies.0.path: Field required",
        ),
        (b"{", AUTH, 400, "Invalid shadow copies: body: Invalid JSON"),
        (b"{}", {}, 401, "X-Turnout-Token"),
        (b"{}", {"authorization": "Bearer wrong"}, 401, "X-Turnout-Token"),
    ],
)
async def test_what_is_no_copy_is_refused_and_counted_as_an_error(
    preview: Served, content: bytes, headers: dict[str, str], status: int, fragment: str
) -> None:
    answer = await preview.client.post("/shadow", content=content, headers=headers)
    assert answer.status_code == status
    assert fragment in answer.json()["message"]
    assert preview.sample("turnout_shadow_requests_total", result="error") == 1
    assert preview.sample("turnout_shadow_errors_total", reason=str(status)) == 1


async def test_live_answers_reach_the_mirror_and_copies_do_not(
    models: dict[str, Path], tmp_path: Path
) -> None:
    config = ServingSettings(model_uri=str(models["deep"]), cache_dir=tmp_path)
    app = create_app(config, MlflowModelProvider(resolve(str(models["deep"])), tmp_path),
                     CollectorRegistry())  # fmt: skip
    runtime = app.state.runtime
    runtime.load()
    seen: list[tuple[str, bool, float]] = []
    runtime.on_live_answer = lambda request, answer, seconds: seen.append(
        (request.request_id, answer.body.startswith(b'{"predictions"'), seconds)
    )
    body = split(regression_frame(2, seed=5))
    for request_id, live in (("live-1", True), ("copy-1", False), ("live-2", True)):
        await runtime.infer(InferenceRequest(body, "application/json", request_id,
                                             InferenceProtocol.MLFLOW, live=live))  # fmt: skip
    assert [(r, ok) for r, ok, _ in seen] == [("live-1", True), ("live-2", True)]
    assert all(seconds > 0 for _, _, seconds in seen)


# --- the admin endpoints --------------------------------------------------------------------


async def test_without_an_admin_token_the_admin_endpoints_are_off(preview: Served) -> None:
    for method in ("GET", "PUT", "DELETE"):
        answer = await preview.client.request(method, "/admin/shadow", headers={
            "authorization": f"Bearer {TOKEN}", "X-Turnout-Admin-Token": "anything"})  # fmt: skip
        assert answer.status_code == 404
        assert "The admin endpoints are off" in answer.json()["message"]


@pytest_asyncio.fixture
async def active(models: dict[str, Path], tmp_path: Path) -> AsyncIterator[Served]:
    async for server in served(models["shallow"], tmp_path, admin_token=ADMIN):
        yield server


GOOD = {"target": "http://127.0.0.1:9/", "percent": 10, "maxRequestsPerSecond": 5,
        "ttlSeconds": 30, "token": "t"}  # fmt: skip


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"X-Turnout-Admin-Token": "wrong"},
     {"X-Turnout-Token": ADMIN}],  # the inference header is not the admin's
)  # fmt: skip
async def test_the_admin_endpoints_need_the_admin_token(
    active: Served, headers: dict[str, str]
) -> None:
    for method in ("GET", "PUT", "DELETE"):
        answer = await active.client.request(method, "/admin/shadow", headers=headers, json=GOOD)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
        assert "X-Turnout-Admin-Token" in answer.json()["message"]


@pytest.mark.parametrize("header", ["authorization", "X-Turnout-Admin-Token"])
async def test_put_get_delete_start_show_and_stop_mirroring(active: Served, header: str) -> None:
    auth = {header: f"Bearer {ADMIN}" if header == "authorization" else ADMIN}
    started = await active.client.put("/admin/shadow", json=GOOD, headers=auth)
    assert started.status_code == 200, started.text
    state = started.json()
    assert state.pop("expiresInSeconds") == pytest.approx(30, abs=1)
    assert state == {
        "mirroring": True, "target": "http://127.0.0.1:9", "percent": 10.0,
        "maxRequestsPerSecond": 5.0, "ttlSeconds": 30.0, "tokenSet": True, "queued": 0,
        "sending": 0, "counts": {"mirrored": 0, "dropped_queue_full": 0, "dropped_rate": 0,
                                 "dropped_stopped": 0, "failed": 0},
    }  # fmt: skip
    assert "t" not in json.dumps({k: v for k, v in started.json().items() if k == "token"})
    shown = (await active.client.get("/admin/shadow", headers=auth)).json()
    assert (shown["mirroring"], shown["target"]) == (True, "http://127.0.0.1:9")
    stopped = await active.client.delete("/admin/shadow", headers=auth)
    assert stopped.status_code == 200
    assert {k: stopped.json()[k] for k in ("mirroring", "reason")} == {
        "mirroring": False, "reason": "stopped by DELETE /admin/shadow"}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**GOOD, "percent": 150}, "percent: Input should be less than or equal to 100"),
        ({**GOOD, "target": "file:///etc/passwd"}, "target: URL scheme should be 'http' or 'https'"),
        ({k: v for k, v in GOOD.items() if k != "ttlSeconds"}, "ttlSeconds: Field required"),
    ],
)  # fmt: skip
async def test_a_wrong_admin_body_is_a_400_naming_the_field(
    active: Served, body: dict[str, Any], message: str
) -> None:
    answer = await active.client.put("/admin/shadow", json=body,
                                     headers={"authorization": f"Bearer {ADMIN}"})  # fmt: skip
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "BAD_REQUEST"
    assert message in answer.json()["message"]
    shown = (
        await active.client.get("/admin/shadow", headers={"authorization": f"Bearer {ADMIN}"})
    ).json()
    assert shown["mirroring"] is False
