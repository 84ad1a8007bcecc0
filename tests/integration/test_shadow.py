"""Shadow traffic between two real `turnout-serve` processes: an active (Diabetes version 1,
blue) mirrors its live answers to a preview (the same version, or version 2) under an admin
lease; the preview compares. Counts are read where the operator reads them, on both servers'
/metrics, and the live side is checked to be unchanged by mirroring."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import Process, free_port, wait_until
from tests.integration.test_server import DIABETES_ROW, metric
from turnout_serving.mirror import SENDERS

pytestmark = pytest.mark.slow

ADMIN, PREVIEW_TOKEN = "admin-s3cret", "preview-s3cret"
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
COLUMNS = list(DIABETES_ROW)


@pytest.fixture(scope="module")
def active(serve_factory) -> Process:  # type: ignore[no-untyped-def]
    return serve_factory("models:/Diabetes/1", "--color", "blue",
                         env={"TURNOUT_ADMIN_TOKEN": ADMIN})  # fmt: skip


@pytest.fixture(scope="module")
def twin(serve_factory) -> Process:  # type: ignore[no-untyped-def]
    """The active's own version as a preview: every row must agree."""
    return serve_factory("models:/Diabetes/1", "--color", "green",
                         env={"TURNOUT_AUTH_TOKENS": PREVIEW_TOKEN})  # fmt: skip


@pytest.fixture(scope="module")
def successor(serve_factory) -> Process:  # type: ignore[no-untyped-def]
    return serve_factory("models:/Diabetes/2", "--color", "green")


def rows(count: int, seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    base = np.array([DIABETES_ROW[c] for c in COLUMNS])
    return (base + rng.normal(scale=0.02, size=(count, len(COLUMNS)))).round(4).tolist()


def invocations(url: str, data: list[list[float]]) -> httpx.Response:
    return httpx.post(f"{url}/invocations",
                      json={"dataframe_split": {"columns": COLUMNS, "data": data}})  # fmt: skip


def v2_infer(url: str, data: list[list[float]]) -> httpx.Response:
    inputs = [{"name": c, "shape": [len(data)], "datatype": "FP64",
               "data": [row[i] for row in data]} for i, c in enumerate(COLUMNS)]  # fmt: skip
    return httpx.post(f"{url}/v2/models/Diabetes/infer", json={"inputs": inputs})


def predictions(answer: httpx.Response) -> list[float]:
    found = answer.json()
    return found["predictions"] if "predictions" in found else found["outputs"][0]["data"]


def mirror_to(active: Process, target: str, **changes: Any) -> dict[str, Any]:
    body = {"target": target, "percent": 100, "maxRequestsPerSecond": 1000, "ttlSeconds": 60,
            **changes}  # fmt: skip
    answer = httpx.put(f"{active.url}/admin/shadow", json=body, headers=ADMIN_AUTH)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def shadow_state(active: Process) -> dict[str, Any]:
    return dict(httpx.get(f"{active.url}/admin/shadow", headers=ADMIN_AUTH).json())


@pytest.fixture
def stop_mirroring(active: Process) -> Iterator[None]:
    yield
    httpx.delete(f"{active.url}/admin/shadow", headers=ADMIN_AUTH)


def settled(active: Process) -> dict[str, Any]:
    """The active's shadow state once nothing is queued or being sent."""
    return wait_until(lambda: (s := shadow_state(active))["queued"] == s["sending"] == 0 and s,
                      timeout=30, interval=0.05, what="the mirror to settle")  # fmt: skip


def live(proc: Process) -> dict[str, float]:
    """What a server's live traffic shows on its /metrics."""
    return {
        "invocations": sum(metric(proc.url, "turnout_inference_requests_total", endpoint=e,
                                  code=c) or 0.0 for e in ("invocations", "v2_infer")
                           for c in ("200", "400", "401", "500", "503")),
        "rows": metric(proc.url, "turnout_inference_rows_total") or 0.0,
        "drift_rows": metric(proc.url, "turnout_drift_window_rows") or 0.0,
        "duration_count": sum(metric(proc.url, "turnout_inference_request_duration_seconds_count",
                                     endpoint=e) or 0.0 for e in ("invocations", "v2_infer")),
    }  # fmt: skip


def shadow(proc: Process, name: str, **labels: str) -> float:
    found = metric(proc.url, f"turnout_shadow_{name}", **labels)
    assert found is not None, f"turnout_shadow_{name} {labels} is not on {proc.url}/metrics"
    return found


def test_an_identical_preview_agrees_on_every_mirrored_row_and_live_traffic_is_untouched(
    active: Process, twin: Process, stop_mirroring: None
) -> None:
    requests, per = 20, 3
    batches = [rows(per, seed) for seed in range(requests)]
    send = [invocations if i % 2 else v2_infer for i in range(requests)]
    unmirrored = [predictions(s(active.url, b)) for s, b in zip(send, batches, strict=True)]
    active_before, twin_before = live(active), live(twin)
    compared = shadow(twin, "requests_total", result="compared")
    errors = shadow(twin, "requests_total", result="error")
    diffs, diff_sum = shadow(twin, "abs_diff_count"), shadow(twin, "abs_diff_sum")
    mirror_to(active, twin.url, token=PREVIEW_TOKEN)
    answers = [s(active.url, b) for s, b in zip(send, batches, strict=True)]
    assert [a.status_code for a in answers] == [200] * requests
    assert [predictions(a) for a in answers] == unmirrored  # mirroring changes no answer
    state = settled(active)
    assert state["counts"]["mirrored"] == requests and state["counts"]["failed"] == 0
    assert shadow(active, "requests_total", result="mirrored") == requests
    assert shadow(twin, "requests_total", result="compared") == compared + requests
    assert shadow(twin, "requests_total", result="error") == errors
    assert shadow(twin, "agreement_ratio") == 1.0
    assert shadow(twin, "abs_diff_count") == diffs + requests * per
    assert shadow(twin, "abs_diff_sum") == diff_sum == 0.0
    assert shadow(twin, "latency_seconds_count", side="active") == compared + requests
    assert shadow(twin, "latency_seconds_count", side="preview") == compared + requests
    assert shadow(twin, "latency_seconds_sum", side="active") > 0
    # the active counts its live requests once, as without mirroring; the preview none of them
    after = live(active)
    assert after["invocations"] == active_before["invocations"] + requests
    assert after["rows"] == active_before["rows"] + requests * per
    assert after["drift_rows"] == min(1000, active_before["drift_rows"] + requests * per)
    assert live(twin) == twin_before
    ids = [a.headers["X-Request-Id"] for a in answers]
    kept = httpx.post(f"{twin.url}/feedback", headers={"X-Turnout-Token": PREVIEW_TOKEN},
                      json=[{"request_id": i, "label": 100.0} for i in ids])  # fmt: skip
    assert {r["result"] for r in kept.json()["results"]} == {"unknown"}  # copies: no feedback


def test_a_new_version_shows_how_far_its_predictions_are_from_the_active(
    active: Process, successor: Process, stop_mirroring: None
) -> None:
    requests = 12
    batches = [rows(1, 100 + seed) for seed in range(requests)]
    before = live(successor)
    mirror_to(active, successor.url)
    mine = [predictions(invocations(active.url, b))[0] for b in batches]
    assert settled(active)["counts"]["failed"] == 0
    assert shadow(successor, "requests_total", result="compared") == requests
    assert live(successor) == before
    theirs = [predictions(invocations(successor.url, b))[0] for b in batches]
    diff = np.abs(np.array(theirs) - np.array(mine))
    assert diff.min() > 0  # 100 and 50 boosted trees: no row alike
    assert shadow(successor, "abs_diff_count") == requests
    assert shadow(successor, "abs_diff_sum") == pytest.approx(diff.sum(), rel=1e-9)
    within = diff <= 0.01 * np.maximum(np.abs(mine), np.abs(theirs))
    assert shadow(successor, "agreement_ratio") == pytest.approx(within.mean())
    assert shadow(successor, "window_rows") == requests


def test_the_lease_runs_out_by_itself(active: Process, twin: Process, stop_mirroring: None) -> None:
    state = mirror_to(active, twin.url, token=PREVIEW_TOKEN, ttlSeconds=2)
    assert state["mirroring"] is True and 0 < state["expiresInSeconds"] <= 2
    mirrored = settled(active)["counts"]["mirrored"]
    invocations(active.url, rows(1, 1))
    assert settled(active)["counts"]["mirrored"] == mirrored + 1
    wait_until(lambda: shadow_state(active)["mirroring"] is False, timeout=15, interval=0.1,
               what="the lease to expire")  # fmt: skip
    compared = shadow(twin, "requests_total", result="compared")
    for seed in range(5):
        assert invocations(active.url, rows(1, seed)).status_code == 200
    state = shadow_state(active)
    assert (state["reason"], state["queued"], state["sending"]) == (
        "the lease expired (no PUT within ttlSeconds)", 0, 0)  # fmt: skip
    assert state["counts"]["mirrored"] == mirrored + 1
    assert shadow(twin, "requests_total", result="compared") == compared


def test_delete_stops_mirroring(active: Process, twin: Process) -> None:
    mirror_to(active, twin.url, token=PREVIEW_TOKEN)
    stopped = httpx.delete(f"{active.url}/admin/shadow", headers=ADMIN_AUTH)
    assert stopped.status_code == 200
    assert (stopped.json()["mirroring"], stopped.json()["reason"]) == (
        False, "stopped by DELETE /admin/shadow")  # fmt: skip
    counts = settled(active)["counts"]
    for seed in range(5):
        assert invocations(active.url, rows(1, seed)).status_code == 200
    assert settled(active)["counts"] == counts


def test_a_preview_that_refuses_the_copy_is_counted_on_both_sides(
    active: Process, twin: Process, stop_mirroring: None
) -> None:
    failed = settled(active)["counts"]["failed"]
    refused = shadow(twin, "errors_total", reason="401")
    mirror_to(active, twin.url)  # no token for the preview, which requires one
    for seed in range(4):  # one at a time: each copy in a post of its own
        assert invocations(active.url, rows(1, seed)).status_code == 200
        wait_until(lambda n=seed: settled(active)["counts"]["failed"] == failed + n + 1,  # type: ignore[misc]
                   timeout=10, interval=0.02, what="the copy to fail")  # fmt: skip
    assert shadow(active, "requests_total", result="failed") == failed + 4
    assert shadow(twin, "errors_total", reason="401") == refused + 4


def test_a_dead_target_is_counted_as_failed_and_live_answers_are_unchanged(
    active: Process, stop_mirroring: None
) -> None:
    batches = [rows(2, 200 + seed) for seed in range(10)]
    expected = [predictions(invocations(active.url, b)) for b in batches]
    failed = settled(active)["counts"]["failed"]
    mirror_to(active, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    answers = [invocations(active.url, b) for b in batches]
    assert [a.status_code for a in answers] == [200] * len(batches)
    assert [predictions(a) for a in answers] == expected
    assert settled(active)["counts"]["failed"] == failed + len(batches)
    assert httpx.get(f"{active.url}/ping").status_code == 200


def test_a_full_queue_drops_copies_and_counts_them(serve_factory) -> None:  # type: ignore[no-untyped-def]
    cramped = serve_factory("models:/Diabetes/1", env={
        "TURNOUT_ADMIN_TOKEN": ADMIN, "TURNOUT_SHADOW_QUEUE_SIZE": "2",
        "TURNOUT_SHADOW_TIMEOUT_SECONDS": "60"})  # fmt: skip
    with socket.socket() as silent:  # takes connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        mirror_to(cramped, f"http://127.0.0.1:{silent.getsockname()[1]}")
        for n in range(1, SENDERS + 1):  # one post per slot, each waiting for an answer
            assert invocations(cramped.url, rows(1, n)).status_code == 200
            wait_until(lambda n=n: shadow_state(cramped)["sending"] == n, timeout=10,  # type: ignore[misc]
                       interval=0.02, what=f"{n} copies in flight")  # fmt: skip
        offered = 12
        for n in range(offered):  # every slot busy: two wait in the queue, the rest are dropped
            assert invocations(cramped.url, rows(1, 100 + n)).status_code == 200
        state = shadow_state(cramped)
        assert (state["sending"], state["queued"]) == (SENDERS, 2)
        assert state["counts"]["dropped_queue_full"] == offered - 2
        assert shadow(cramped, "requests_total", result="dropped_queue_full") == offered - 2
        assert shadow(cramped, "requests_total", result="mirrored") == 0
    cramped.stop()


def test_the_admin_endpoints_need_the_admin_token_and_are_off_without_one(
    active: Process, twin: Process
) -> None:
    body = {"target": twin.url, "percent": 100, "maxRequestsPerSecond": 10, "ttlSeconds": 5}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Turnout-Admin-Token": "wrong"},
                    {"X-Turnout-Token": ADMIN}):  # fmt: skip
        answer = httpx.put(f"{active.url}/admin/shadow", json=body, headers=headers)
        assert answer.status_code == 401, headers
    assert shadow_state(active)["mirroring"] is False
    through_proxy = httpx.get(
        f"{active.url}/admin/shadow", headers={"X-Turnout-Admin-Token": ADMIN}
    )
    assert through_proxy.status_code == 200
    off = httpx.put(f"{twin.url}/admin/shadow", json=body, headers=ADMIN_AUTH)
    assert off.status_code == 404
    assert "The admin endpoints are off" in off.json()["message"]
    wrong = httpx.put(
        f"{active.url}/admin/shadow", json={**body, "percent": 200}, headers=ADMIN_AUTH
    )
    assert wrong.status_code == 400
    assert "percent: Input should be less than or equal to 100" in wrong.json()["message"]
