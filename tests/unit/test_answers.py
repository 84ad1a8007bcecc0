"""Registry answers shared by the ModelDeployments that follow one reference: how old an answer
an asker takes, what a webhook's moment excludes, that credentials are never mixed, that a failure
is shared as an answer is, and that one fetch is in flight per reference however many threads ask.

What users rely on: the registry is asked about one reference about twice per poll interval
whatever the number of ModelDeployments following it, no ModelDeployment is handed an answer
much older than its own poll interval, and one fetched with another Secret's credentials never.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import wait_until
from turnout_operator.answers import Resolution, SharedAnswers
from turnout_operator.domain import reasons as R
from turnout_operator.domain.answers import Decision, Freshness, Kept, decide, usable
from turnout_operator.domain.observed import Resolved, ResolveFailed
from turnout_operator.metrics import OperatorMetrics
from turnout_operator.registry import ModelRegistry

V3 = Resolved("3", "models:/bikes/3", "run3")
V4 = Resolved("4", "models:/bikes/4", "run4")
DOWN = ResolveFailed(R.REGISTRY_UNAVAILABLE, "MLflow registry at http://mlflow is unavailable")
KEY = ("http://mlflow digest", "bikes", None, "champion", None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Fetches:
    """A registry stand-in: answers `answers` in order, counting the fetches."""

    def __init__(self, *answers: Resolution) -> None:
        self.answers = list(answers)
        self.count = 0

    def __call__(self) -> Resolution:
        self.count += 1
        return self.answers.pop(0)


# -- the decision --------------------------------------------------------------------------------


def test_freshness_is_half_the_poll_interval_and_half_the_retry_for_a_failure() -> None:
    assert Freshness.of(60, 10) == Freshness(30.0, 5.0, None)
    assert Freshness.of(8, 30, after=5.0) == Freshness(4.0, 4.0, 5.0)


@pytest.mark.parametrize(
    ("kept", "in_flight", "asked", "freshness", "decision"),
    [
        (None, None, 100.0, Freshness(30, 5), Decision.FETCH),
        (Kept(70.0, False), None, 100.0, Freshness(30, 5), Decision.REUSE),  # 30 s old: still
        (Kept(69.9, False), None, 100.0, Freshness(30, 5), Decision.FETCH),  # too old
        (Kept(69.9, False), 99.0, 100.0, Freshness(30, 5), Decision.JOIN),
        (Kept(95.0, True), None, 100.0, Freshness(30, 5), Decision.REUSE),  # a failure, 5 s old
        (Kept(94.9, True), None, 100.0, Freshness(30, 5), Decision.FETCH),
        (Kept(94.9, True), 97.0, 100.0, Freshness(30, 5), Decision.JOIN),
        # a webhook delivery at 98: only what was fetched from 98 on answers
        (Kept(97.9, False), None, 100.0, Freshness(30, 5, after=98.0), Decision.FETCH),
        (Kept(98.0, False), None, 100.0, Freshness(30, 5, after=98.0), Decision.REUSE),
        (Kept(97.9, False), 97.5, 100.0, Freshness(30, 5, after=98.0), Decision.WAIT),
        (Kept(97.9, False), 99.0, 100.0, Freshness(30, 5, after=98.0), Decision.JOIN),
        (None, 98.0, 100.0, Freshness(30, 5, after=98.0), Decision.JOIN),
        # a delivery later than the asker's own question (one that came while it waited)
        (Kept(99.0, False), None, 100.0, Freshness(30, 5, after=101.0), Decision.FETCH),
    ],
)  # fmt: skip
def test_decide(
    kept: Kept | None, in_flight: float | None, asked: float, freshness: Freshness,
    decision: Decision,
) -> None:  # fmt: skip
    assert decide(kept, in_flight, asked, freshness) is decision


def test_an_answer_is_usable_for_each_asker_by_its_own_interval() -> None:
    kept = Kept(100.0, False)
    assert usable(kept, 125.0, Freshness.of(60, 10))  # polls every minute: 25 s old will do
    assert not usable(kept, 125.0, Freshness.of(10, 10))  # polls every 10 s: 5 s at most


# -- the store -----------------------------------------------------------------------------------


def shared(clock: Clock, metrics: OperatorMetrics | None = None) -> SharedAnswers:
    if metrics is None:
        return SharedAnswers(clock)
    return SharedAnswers(clock, metrics.resolution_fetched, metrics.answers_shared.inc)


def test_followers_of_one_reference_share_one_fetch_per_half_interval() -> None:
    clock, fetch = Clock(), Fetches(V3, V4)
    metrics = OperatorMetrics(CollectorRegistry())
    answers = shared(clock, metrics)
    every_minute = Freshness.of(60, 10)
    assert [answers.answer(KEY, fetch, every_minute) for _ in range(100)] == [V3] * 100
    clock.now += 30
    assert answers.answer(KEY, fetch, every_minute) == V3  # 30 s old: still shared
    clock.now += 0.1
    assert answers.answer(KEY, fetch, every_minute) == V4  # older than half a minute: asked
    assert fetch.count == 2
    sample = metrics.registry.get_sample_value
    assert sample("turnout_operator_registry_resolutions_total", {"result": "Resolved"}) == 2
    assert sample("turnout_operator_registry_answers_shared_total") == 100


def test_an_answer_is_never_shared_across_credentials_or_references() -> None:
    clock = Clock()
    answers = shared(clock)
    alice = ModelRegistry("http://mlflow", {"MLFLOW_TRACKING_USERNAME": "alice",
                                            "MLFLOW_TRACKING_PASSWORD": "alice-s3cret"})  # fmt: skip
    bob = ModelRegistry("http://mlflow", {"MLFLOW_TRACKING_USERNAME": "alice",
                                          "MLFLOW_TRACKING_PASSWORD": "bob-s3cret"})  # fmt: skip
    nobody = ModelRegistry("http://mlflow/")
    assert len({alice.identity, bob.identity, nobody.identity}) == 3
    assert ModelRegistry("http://mlflow").identity == nobody.identity
    assert "s3cret" not in alice.identity + bob.identity
    denied = ResolveFailed(R.UNAUTHORIZED, "rejected the credentials")
    every_minute = Freshness.of(60, 10)
    got = [
        answers.answer((alice.identity, *KEY[1:]), Fetches(V3), every_minute),
        answers.answer((bob.identity, *KEY[1:]), Fetches(denied), every_minute),
        answers.answer((nobody.identity, *KEY[1:]), Fetches(denied), every_minute),
        answers.answer((alice.identity, "bikes", None, "challenger", None), Fetches(V4),
                       every_minute),
    ]  # fmt: skip
    assert got == [V3, denied, denied, V4]
    assert len(answers) == 4


def test_a_webhook_moment_takes_only_an_answer_fetched_after_it() -> None:
    clock, fetch = Clock(), Fetches(V3, V4)
    answers = shared(clock)
    every_hour = Freshness.of(3600, 10)
    assert answers.answer(KEY, fetch, every_hour) == V3
    clock.now += 1
    delivery = clock()  # the alias moved to version 4
    clock.now += 1
    woken = Freshness.of(3600, 10, after=delivery)
    assert [answers.answer(KEY, fetch, woken) for _ in range(8)] == [V4] * 8  # one fetch for all
    assert answers.answer(KEY, fetch, every_hour) == V4  # a follower that polls takes it too
    assert fetch.count == 2


def test_a_failure_is_shared_for_half_the_retry_delay() -> None:
    clock, fetch = Clock(), Fetches(DOWN, V3)
    metrics = OperatorMetrics(CollectorRegistry())
    answers = shared(clock, metrics)
    every_minute = Freshness.of(60, 10)
    assert [answers.answer(KEY, fetch, every_minute) for _ in range(50)] == [DOWN] * 50
    clock.now += 5.1  # the registry came back; the failure is no longer handed out
    assert answers.answer(KEY, fetch, every_minute) == V3
    sample = metrics.registry.get_sample_value
    resolutions = "turnout_operator_registry_resolutions_total"
    assert sample(resolutions, {"result": "RegistryUnavailable"}) == 1
    assert sample(resolutions, {"result": "Resolved"}) == 1
    assert sample(resolutions, {"result": "ModelNotFound"}) == 0
    assert sample("turnout_operator_registry_answers_shared_total") == 49


def test_answers_nobody_can_use_any_more_are_dropped() -> None:
    clock = Clock()
    answers = SharedAnswers(clock, keep_seconds=100)
    answers.answer(KEY, Fetches(V3), Freshness.of(60, 10))
    clock.now += 101
    answers.answer((*KEY[:3], "challenger", None), Fetches(V4), Freshness.of(60, 10))
    assert len(answers) == 1


class Gate:
    """A fetch that blocks until released: the registry answering slowly."""

    def __init__(self, answer: Resolution) -> None:
        self.answer, self.count = answer, 0
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self) -> Resolution:
        self.count += 1
        self.entered.set()
        assert self.release.wait(10)
        return self.answer


def ask_in_threads(
    count: int, ask: Callable[[], Resolution]
) -> tuple[list[threading.Thread], list[Resolution]]:
    got: list[Resolution] = []
    threads = [threading.Thread(target=lambda: got.append(ask())) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, got


def test_concurrent_askers_wait_for_the_one_fetch_in_flight() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    answers = SharedAnswers(on_fetched=metrics.resolution_fetched,
                            on_shared=metrics.answers_shared.inc)  # fmt: skip
    gate = Gate(V3)
    threads, got = ask_in_threads(16, lambda: answers.answer(KEY, gate, Freshness.of(60, 10)))
    assert gate.entered.wait(10)
    wait_until(lambda: answers.waiting == 15, timeout=10, what="15 askers waiting")
    gate.release.set()
    for thread in threads:
        thread.join(10)
    assert (gate.count, got, answers.waiting) == (1, [V3] * 16, 0)
    assert metrics.registry.get_sample_value("turnout_operator_registry_answers_shared_total") == 15


def test_a_fetch_in_flight_from_before_a_webhook_is_not_taken_for_after_it() -> None:
    clock = Clock()
    answers = SharedAnswers(clock)
    old, new = Gate(V3), Fetches(V4)
    first, got = ask_in_threads(1, lambda: answers.answer(KEY, old, Freshness.of(60, 10)))
    assert old.entered.wait(10)
    clock.now += 1  # the delivery comes while the old question is in flight
    woken = Freshness.of(60, 10, after=clock())
    later, got_later = ask_in_threads(1, lambda: answers.answer(KEY, new, woken))
    wait_until(lambda: answers.waiting == 1, timeout=10, what="the woken asker waiting")
    old.release.set()
    for thread in first + later:
        thread.join(10)
    assert (got, got_later, new.count) == ([V3], [V4], 1)


class Broken(Gate):
    """A fetch that raises once released (a bug, not a registry failure)."""

    def __call__(self) -> Resolution:
        super().__call__()
        raise RuntimeError("a bug")


def test_a_fetch_that_raises_is_not_kept_and_its_waiter_asks_again() -> None:
    answers = SharedAnswers()
    broken, fetch = Broken(V3), Fetches(V4)
    raised: list[BaseException] = []

    def first() -> None:
        try:
            answers.answer(KEY, broken, Freshness.of(60, 10))
        except RuntimeError as exc:
            raised.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    assert broken.entered.wait(10)
    waiter, got = ask_in_threads(1, lambda: answers.answer(KEY, fetch, Freshness.of(60, 10)))
    wait_until(lambda: answers.waiting == 1, timeout=10, what="an asker waiting")
    broken.release.set()
    for each in (thread, *waiter):
        each.join(10)
    assert ([str(e) for e in raised], got, fetch.count) == (["a bug"], [V4], 1)
