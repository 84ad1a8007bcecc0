"""A real Prometheus scrapes a real turnout-serve: the queries dashboards and alerts rely on answer,
and the drift gauges move past the documented threshold on shifted traffic and only then."""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from tests.conftest import Process, start_prometheus, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prometheus_for(tmp_path_factory: pytest.TempPathFactory) -> Iterator:  # type: ignore[type-arg]
    running: list[Process] = []

    def launch(*targets: Process) -> str:
        hosts = ", ".join(f"'{t.url.removeprefix('http://')}'" for t in targets)
        proc = start_prometheus(tmp_path_factory.mktemp("prometheus"),
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: turnout\n    static_configs: [{{targets: [{hosts}]}}]\n",
        )  # fmt: skip
        running.append(proc)
        return proc.url

    yield launch
    for proc in running:
        proc.stop()


def query(prom: str, expr: str) -> list[dict]:  # type: ignore[type-arg]
    answer = httpx.get(f"{prom}/api/v1/query", params={"query": expr}).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]  # type: ignore[no-any-return]


def values(prom: str, expr: str) -> dict[str, float]:
    """Series of an instant query, keyed by their `feature` label (or "" when none)."""
    return {r["metric"].get("feature", ""): float(r["value"][1]) for r in query(prom, expr)}


def send(proc: Process, frame: np.ndarray, columns: list[str], batch: int = 50) -> None:
    for start_row in range(0, len(frame), batch):
        rows = frame[start_row : start_row + batch].tolist()
        answer = httpx.post(f"{proc.url}/invocations",
                            json={"dataframe_split": {"columns": columns, "data": rows}})  # fmt: skip
        assert answer.status_code == 200


def test_latency_quantiles_and_drift_through_prometheus(serve_factory, prometheus_for) -> None:  # type: ignore[no-untyped-def]
    steady = serve_factory("models:/Diabetes/1", "--color", "blue", "--drift-window-rows", "400")
    shifted = serve_factory("models:/Diabetes/1", "--color", "green", "--drift-window-rows", "400")
    prom = prometheus_for(steady, shifted)
    X, _ = load_diabetes(return_X_y=True, as_frame=True)
    columns = list(X.columns)
    rng = np.random.default_rng(7)
    sample = X.to_numpy()[rng.integers(0, len(X), 400)]
    moved = sample.copy()
    moved[:, columns.index("bmi")] += 1.0 * X["bmi"].std()  # a 1 sigma shift of one feature
    # A rate needs a sample from before the traffic: the zero-valued series exist from the start.
    wait_until(lambda: values(prom, "sum(up)") == {"": 2.0}, timeout=60, interval=0.2,
               what="prometheus to scrape both servers")  # fmt: skip
    send(steady, sample, columns)
    send(shifted, moved, columns)

    p99 = 'histogram_quantile(0.99, sum by (le, color) (rate(turnout_inference_request_duration_seconds_bucket{endpoint="invocations"}[1m])))'
    answers = wait_until(
        lambda: (series := query(prom, p99)) and all(math.isfinite(float(s["value"][1]))
                                                     for s in series) and len(series) == 2 and series,
        timeout=60, interval=0.5, what="finite p99 latency of both servers from prometheus",
    )  # fmt: skip
    for series in answers:
        assert 0 < float(series["value"][1]) <= 10.0

    # Window sizes and p-values come from the same scrape: once Prometheus shows both windows
    # full, the p-values it holds are those of the traffic sent.
    def rows() -> dict[str, float]:
        series = query(prom, "turnout_drift_window_rows")
        return {r["metric"]["color"]: float(r["value"][1]) for r in series}

    # 400 rows exactly fill the 20 blocks of 20 rows of a 400-row window.
    wait_until(lambda: rows() == {"blue": 400.0, "green": 400.0}, timeout=60, interval=0.5,
               what="both drift windows full in prometheus")  # fmt: skip

    def drift(color: str) -> dict[str, float]:
        return values(prom, f'turnout_feature_drift_p_value{{color="{color}",test="ks"}}')

    bound = 0.05 / 11  # Bonferroni over 10 features + the prediction
    green, blue = drift("green"), drift("blue")
    assert len(green) == len(blue) == 10
    assert green["bmi"] < bound
    assert min(blue.values()) >= bound
    detected = query(prom, "turnout_drift_detected")
    assert {r["metric"]["color"]: float(r["value"][1]) for r in detected} == {
        "blue": 0.0, "green": 1.0,
    }  # fmt: skip
    psi = values(prom, 'turnout_feature_drift_psi{color="green"}')
    assert psi["bmi"] > 0.1 and math.isfinite(psi["bmi"])
