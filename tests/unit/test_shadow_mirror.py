"""The active side of shadow traffic (`mirror.py`): what reaches the preview, what is counted, and
that offering a live answer never blocks, fails or outlives the lease. The target is a real HTTP
server on 127.0.0.1 (`aiohttp.web`, in the test's event loop); the clock and the random draw are
handed in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from tests.conftest import free_port
from turnout_serving import mirror as mirror_module
from turnout_serving.dataplane import Answer, InferenceProtocol, InferenceRequest
from turnout_serving.domain.shadow import MAX_BATCH_COPIES, ShadowCopy, decode_batch, read_config
from turnout_serving.metrics import ShadowMetrics
from turnout_serving.mirror import SENDERS, Mirror
from turnout_serving.predictor import Scored

pytestmark = pytest.mark.asyncio

LABELS = {"model": "Diabetes", "version": "1", "color": "blue"}
ANSWER = Answer(b'{"predictions": [151.0]}', Scored(raw=None, rows=1, columns={}, predictions=None))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    content: bytes


Respond = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Target:
    """The preview: records what it was sent and answers with `respond` (200 by default)."""

    def __init__(self, server: TestServer) -> None:
        self.url = str(server.make_url("")).rstrip("/")
        self.received: list[Received] = []
        self.respond: Respond | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(Received(request.path, {k.lower(): v for k, v in request.headers.items()},
                                      await request.read()))  # fmt: skip
        if self.respond is not None:
            return await self.respond(request)
        return web.json_response({"result": "compared"})


@pytest_asyncio.fixture
async def target() -> AsyncIterator[Target]:
    app = web.Application()
    server = TestServer(app, host="127.0.0.1")
    found: list[Target] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        return await found[0].handle(request)

    app.router.add_route("*", "/{tail:.*}", handle)
    await server.start_server()
    found.append(Target(server))
    yield found[0]
    await server.close()


def request(n: int, protocol: InferenceProtocol = InferenceProtocol.MLFLOW) -> InferenceRequest:
    path = "/invocations" if protocol is InferenceProtocol.MLFLOW else "/v2/models/Diabetes/infer"
    return InferenceRequest(f'{{"n": {n}}}'.encode(), "application/json", f"req-{n}", protocol,
                            live=True, path=path)  # fmt: skip


def lease(target: Target | str, **changes: Any) -> Any:
    url = target.url if isinstance(target, Target) else target
    body = {"target": url, "percent": 100, "maxRequestsPerSecond": 1000, "ttlSeconds": 30,
            **changes}  # fmt: skip
    return read_config(json.dumps(body).encode())


def make(*, queue_size: int = 256, draws: list[float] | None = None, clock: Clock | None = None,
         timeout: float = 2.0, linger: float = 0.0) -> Mirror:  # fmt: skip
    values = iter(draws) if draws is not None else None
    return Mirror(
        ShadowMetrics(CollectorRegistry(), LABELS),
        queue_size=queue_size,
        timeout_seconds=timeout,
        clock=clock or Clock(),
        draw=(lambda: next(values)) if values is not None else (lambda: 0.0),
        linger_seconds=linger,
    )


def sent(target: Target) -> list[ShadowCopy]:
    """Every copy the target received, in the order received."""
    return [copy for received in target.received for copy in decode_batch(received.content)]


async def settled(mirror: Mirror, timeout: float = 5.0) -> dict[str, Any]:
    """The state once nothing is queued or being sent (polled, with a deadline)."""
    async with asyncio.timeout(timeout):
        while True:
            state = mirror.state()
            if state["queued"] == 0 and state["sending"] == 0:
                return state
            await asyncio.sleep(0.001)


def counts(**given: int) -> dict[str, int]:
    return {"mirrored": 0, "dropped_queue_full": 0, "dropped_rate": 0, "dropped_stopped": 0,
            "failed": 0, **given}  # fmt: skip


def held(target: Target) -> asyncio.Event:
    """Make the target hold every request until the event is set."""
    release = asyncio.Event()

    async def hold(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response({"result": "compared"})

    target.respond = hold
    return release


async def fill_the_senders(mirror: Mirror, target: Target) -> None:
    """Copies req-0 ... req-(SENDERS-1), one batch a sending slot, each held by the target."""
    for n in range(SENDERS):
        mirror.offer(request(n), ANSWER, 0.001)
        await until(lambda n=n: len(target.received) == n + 1)  # type: ignore[misc]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


async def test_every_drawn_live_answer_reaches_the_target_as_a_copy(target: Target) -> None:
    mirror = make()
    mirror.configure(lease(target, token="preview-token"))
    for n, protocol in enumerate([InferenceProtocol.MLFLOW, InferenceProtocol.OPEN_INFERENCE]):
        mirror.offer(request(n, protocol), ANSWER, 0.0015)
    state = await settled(mirror)
    assert state["counts"] == counts(mirrored=2)
    assert mirror.metrics.counts["mirrored"] == 2
    assert {r.path for r in target.received} == {"/shadow"}
    copies = sorted(sent(target), key=lambda c: c.request_id)
    assert [(c.protocol, c.path, c.request_id, c.content_type, c.body, c.active_answer,
             c.active_latency_seconds) for c in copies] == [
        ("mlflow", "/invocations", "req-0", "application/json", b'{"n": 0}', ANSWER.body, 0.0015),
        ("open_inference", "/v2/models/Diabetes/infer", "req-1", "application/json", b'{"n": 1}',
         ANSWER.body, 0.0015),
    ]  # fmt: skip
    for received in target.received:
        assert received.headers["authorization"] == "Bearer preview-token"
        assert received.headers["content-type"] == "application/json"
    await mirror.close()


async def test_a_target_with_a_path_gets_the_copies_under_it(target: Target) -> None:
    mirror = make()
    mirror.configure(lease(f"{target.url}/models/diabetes/"))
    mirror.offer(request(1), ANSWER, 0.001)
    assert (await settled(mirror))["counts"] == counts(mirrored=1)
    assert [r.path for r in target.received] == ["/models/diabetes/shadow"]
    assert "authorization" not in target.received[0].headers  # no token given, none sent
    await mirror.close()


async def test_without_a_lease_nothing_is_sent_or_counted(target: Target) -> None:
    mirror = make()
    for n in range(5):
        mirror.offer(request(n), ANSWER, 0.001)
    state = await settled(mirror)
    assert state == {"mirroring": False, "reason": "never started", "queued": 0, "sending": 0,
                     "counts": counts()}  # fmt: skip
    assert target.received == []


async def test_only_the_drawn_share_is_sent_and_the_rate_caps_it(target: Target) -> None:
    mirror = make(draws=[0.05, 0.5, 0.09, 0.95, 0.01, 0.02, 0.03])
    mirror.configure(lease(target, percent=10, maxRequestsPerSecond=2))
    for n in range(7):
        mirror.offer(request(n), ANSWER, 0.001)
    state = await settled(mirror)
    # drawn: 0, 2, 4, 5, 6; the bucket (2 a second, starts with 2) takes 0 and 2
    assert state["counts"] == counts(mirrored=2, dropped_rate=3)
    assert sorted(c.request_id for c in sent(target)) == ["req-0", "req-2"]
    await mirror.close()


async def redirect(request: web.Request) -> web.StreamResponse:
    if request.path == "/shadow":
        raise web.HTTPTemporaryRedirect("/elsewhere")
    return web.json_response({"result": "compared"})


async def slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(5)
    return web.json_response({})


@pytest.mark.parametrize(
    ("respond", "why"),
    [
        (lambda r: web.Response(status=500, text="boom"), "answered 500: boom"),
        (lambda r: web.json_response({"message": "token"}, status=401), 'answered 401: {"message": "token"}'),
        (redirect, "answered 307"),
        (slow, "TimeoutError"),
    ],
    ids=["500", "401", "redirect", "timeout"],
)  # fmt: skip
async def test_a_target_that_does_not_take_the_copy_is_counted_as_failed_and_never_followed(
    target: Target, respond: Any, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        found = respond(request)
        return await found if asyncio.iscoroutine(found) else found

    target.respond = answer
    mirror = make(timeout=0.3)
    mirror.configure(lease(target))
    for n in range(3):
        mirror.offer(request(n), ANSWER, 0.001)
    state = await settled(mirror)
    assert state["counts"] == counts(failed=3)
    assert {r.path for r in target.received} == {"/shadow"}  # a redirect is not followed
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and why in warnings[0]  # the first failure of a run, not each
    await mirror.close()


async def test_a_target_nobody_listens_on_is_counted_as_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mirror = make()
    mirror.configure(lease(f"http://127.0.0.1:{free_port()}"))
    for n in range(3):
        mirror.offer(request(n), ANSWER, 0.001)
    assert (await settled(mirror))["counts"] == counts(failed=3)
    assert "ClientConnectorError" in caplog.text
    await mirror.close()


async def test_a_full_queue_drops_the_copy_and_counts_it_without_waiting(target: Target) -> None:
    release = held(target)
    mirror = make(queue_size=3)
    mirror.configure(lease(target))
    await fill_the_senders(mirror, target)
    offered = 20
    for n in range(offered):  # while every slot is busy, nothing leaves the queue
        mirror.offer(request(100 + n), ANSWER, 0.001)
        await asyncio.sleep(0)
    state = mirror.state()
    assert (state["sending"], state["queued"]) == (SENDERS, 3)
    assert state["counts"] == counts(dropped_queue_full=offered - 3)
    release.set()
    state = await settled(mirror)
    assert state["counts"] == counts(mirrored=SENDERS + 3, dropped_queue_full=offered - 3)
    await mirror.close()


async def test_copies_arriving_together_share_one_post(target: Target) -> None:
    mirror = make(linger=0.05)
    mirror.configure(lease(target))
    for n in range(10):
        mirror.offer(request(n), ANSWER, 0.001)
        await asyncio.sleep(0.001)
    assert (await settled(mirror))["counts"] == counts(mirrored=10)
    assert len(target.received) == 1
    assert [c.request_id for c in sent(target)] == [f"req-{n}" for n in range(10)]
    await mirror.close()


async def test_a_full_batch_waiting_is_posted_without_lingering(target: Target) -> None:
    """Lingering gathers copies when they come slowly; with a batch's worth already queued
    (a high rate) it would only cap the throughput at one batch per linger."""
    mirror = make(linger=30.0)  # longer than the test may take: any linger would time it out
    mirror.configure(lease(target))
    for n in range(3 * MAX_BATCH_COPIES):
        mirror.offer(request(n), ANSWER, 0.001)
    await until(lambda: len(target.received) == 3)
    assert [len(decode_batch(r.content)) for r in target.received] == [MAX_BATCH_COPIES] * 3
    assert (await settled(mirror))["counts"] == counts(mirrored=3 * MAX_BATCH_COPIES)
    await mirror.close()


async def test_a_batch_holds_at_most_its_bytes_and_its_copies(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        mirror_module, "MAX_BATCH_BYTES", 3 * (len(request(1).body) + len(ANSWER.body))
    )
    mirror = make()
    mirror.configure(lease(target))
    for n in range(7):
        mirror.offer(request(n), ANSWER, 0.001)
    assert (await settled(mirror))["counts"] == counts(mirrored=7)
    assert [len(decode_batch(r.content)) for r in target.received] == [3, 3, 1]
    assert [c.request_id for c in sent(target)] == [f"req-{n}" for n in range(7)]
    await mirror.close()


async def test_the_queue_is_bounded_by_bytes_too(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mirror_module, "MAX_QUEUED_BYTES", 100)
    mirror = make()
    mirror.configure(lease(target))
    big = InferenceRequest(
        b"x" * 90, "application/json", "big", InferenceProtocol.MLFLOW, live=True
    )
    mirror.offer(big, ANSWER, 0.001)  # 90 + 24 bytes of answer: over 100
    mirror.offer(request(1), ANSWER, 0.001)
    state = await settled(mirror)
    assert state["counts"] == counts(mirrored=1, dropped_queue_full=1)
    await mirror.close()


async def test_the_lease_runs_out_ttl_seconds_after_the_last_put(target: Target) -> None:
    clock = Clock()
    mirror = make(clock=clock)
    mirror.configure(lease(target, ttlSeconds=30))
    clock.now += 20
    state = mirror.configure(lease(target, ttlSeconds=30))  # renewed: 30 s from now
    assert (state["mirroring"], state["expiresInSeconds"]) == (True, 30.0)
    clock.now += 29
    mirror.offer(request(1), ANSWER, 0.001)
    assert (await settled(mirror))["counts"] == counts(mirrored=1)
    clock.now += 1
    mirror.offer(request(2), ANSWER, 0.001)
    state = await settled(mirror)
    assert state == {"mirroring": False, "reason": "the lease expired (no PUT within ttlSeconds)",
                     "queued": 0, "sending": 0, "counts": counts(mirrored=1)}  # fmt: skip
    assert [c.request_id for c in sent(target)] == ["req-1"]
    await mirror.close()


async def test_copies_still_queued_when_mirroring_stops_are_dropped_not_sent(
    target: Target,
) -> None:
    release = held(target)
    mirror = make()
    mirror.configure(lease(target))
    await fill_the_senders(mirror, target)
    for n in range(5):
        mirror.offer(request(10 + n), ANSWER, 0.001)
    stopped = mirror.stop("stopped by DELETE /admin/shadow")
    assert (stopped["mirroring"], stopped["reason"]) == (False, "stopped by DELETE /admin/shadow")
    mirror.offer(request(99), ANSWER, 0.001)  # after the stop: not even considered
    release.set()
    state = await settled(mirror)
    assert state["counts"] == counts(mirrored=SENDERS, dropped_stopped=5)
    assert len(sent(target)) == SENDERS
    await mirror.close()


async def test_a_put_to_another_target_sends_nothing_queued_for_the_first_there(
    target: Target,
) -> None:
    release = held(target)
    mirror = make()
    mirror.configure(lease(target))
    await fill_the_senders(mirror, target)
    mirror.offer(request(10), ANSWER, 0.001)
    mirror.offer(request(11), ANSWER, 0.001)
    mirror.configure(lease(f"{target.url}/other"))
    mirror.offer(request(50), ANSWER, 0.001)
    release.set()
    state = await settled(mirror)
    assert state["counts"] == counts(mirrored=SENDERS + 1, dropped_stopped=2)
    assert [r.path for r in target.received].count("/other/shadow") == 1
    assert [c.request_id for c in decode_batch(target.received[-1].content)] == ["req-50"]
    await mirror.close()


async def test_offering_never_raises_into_the_request(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_draw() -> float:
        raise RuntimeError("no randomness today")

    mirror = Mirror(ShadowMetrics(CollectorRegistry(), LABELS), queue_size=4, timeout_seconds=1,
                    draw=broken_draw)  # fmt: skip
    mirror.configure(lease(target))
    mirror.offer(request(1), ANSWER, 0.001)
    assert "a live answer could not be offered for mirroring" in caplog.text
    await mirror.close()


async def test_close_stops_the_senders_and_mirroring(target: Target) -> None:
    mirror = make()
    mirror.configure(lease(target))
    await mirror.close()
    mirror.offer(request(1), ANSWER, 0.001)
    assert mirror.state() == {"mirroring": False, "reason": "the server is shutting down",
                              "queued": 0, "sending": 0, "counts": counts()}  # fmt: skip
