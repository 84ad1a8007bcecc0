"""The background notification sender against a real HTTP receiver on 127.0.0.1: what a retry
can cure is retried with backoff, a bounded number of times, what it cannot is dropped at once,
a full queue drops and counts instead of blocking, and every outcome is counted per channel."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import free_port, wait_until
from tests.receiver import Receiver
from turnout_operator.domain.notifications import Channel, Notification
from turnout_operator.metrics import OperatorMetrics
from turnout_operator.notifier import RESULTS, Notifier

NOTE = Notification(id="1", event="rollout.promoted", time="2026-11-23T12:00:00Z",
                    namespace="ml", name="bikes", model="bikes", version="4",
                    reason="Promoted", message="version 4 (green) is active")  # fmt: skip


class Counts:
    def __init__(self) -> None:
        self.seen: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def __call__(self, channel: str, result: str) -> None:
        with self._lock:
            self.seen[channel, result] += 1


@pytest.fixture
def counts() -> Counts:
    return Counts()


def notifier(counts: Counts, *channels: Channel, **settings: float) -> Notifier:
    settings = {"retries": 3, "retry_seconds": 0.05, "timeout_seconds": 1.0, **settings}
    return Notifier(channels, count=counts, **settings)  # type: ignore[arg-type]


@pytest.fixture
def stopping() -> Iterator[list[Notifier]]:
    made: list[Notifier] = []
    yield made
    for each in made:
        each.stop()


def test_a_5xx_is_retried_until_taken(counts: Counts, stopping: list[Notifier]) -> None:
    with Receiver(answers=[503, 500]) as receiver:
        n = notifier(counts, Channel(name="hook", url=receiver.url, format="json"))
        stopping.append(n)
        n.send("hook", NOTE)
        assert n.idle(timeout=10)
        assert [r.answered for r in receiver.received] == [503, 500, 200]
        assert [r.json()["version"] for r in receiver.delivered()] == ["4"]
    assert counts.seen == {("hook", "retried"): 2, ("hook", "sent"): 1}


def test_a_refused_connection_is_dropped_after_the_bounded_retries(
    counts: Counts, stopping: list[Notifier]
) -> None:
    n = notifier(counts, Channel(name="gone", url=f"http://127.0.0.1:{free_port()}/x"))
    stopping.append(n)
    n.send("gone", NOTE)
    assert n.idle(timeout=10)
    assert counts.seen == {("gone", "retried"): 3, ("gone", "dropped"): 1}


def test_a_4xx_is_not_retried(counts: Counts, stopping: list[Notifier]) -> None:
    with Receiver(answers=[404]) as receiver:
        n = notifier(counts, Channel(name="hook", url=receiver.url, format="slack"))
        stopping.append(n)
        n.send("hook", NOTE)
        assert n.idle(timeout=10)
        assert [r.answered for r in receiver.received] == [404]
    assert counts.seen == {("hook", "dropped"): 1}


def test_a_receiver_that_never_answers_times_out_and_holds_up_its_own_channel_only(
    counts: Counts, stopping: list[Notifier]
) -> None:
    with Receiver(hang=True) as stuck, Receiver() as fine:
        n = notifier(counts, Channel(name="stuck", url=stuck.url),
                     Channel(name="fine", url=fine.url), retries=1, timeout_seconds=0.5)  # fmt: skip
        stopping.append(n)
        n.send("stuck", NOTE)
        n.send("fine", NOTE)
        wait_until(lambda: fine.delivered(), timeout=5, what="the healthy channel's delivery")
        assert counts.seen[("stuck", "sent")] == 0
        assert n.idle(timeout=10)
    assert counts.seen == {("fine", "sent"): 1, ("stuck", "retried"): 1, ("stuck", "dropped"): 1}


def test_a_full_queue_drops_and_counts_instead_of_blocking(
    counts: Counts, stopping: list[Notifier]
) -> None:
    with Receiver(hang=True) as stuck:
        n = notifier(counts, Channel(name="stuck", url=stuck.url), queue_size=1, retries=0,
                     timeout_seconds=2.0)  # fmt: skip
        stopping.append(n)
        n.send("stuck", NOTE)  # taken by the sender, which waits for the answer
        wait_until(lambda: stuck.server_requests() == 1, timeout=5, what="the first POST")
        n.send("stuck", NOTE)  # queued
        n.send("stuck", NOTE)  # no room
        assert counts.seen == {("stuck", "overflow"): 1}
        assert n.idle(timeout=10)
    assert counts.seen == {("stuck", "overflow"): 1, ("stuck", "dropped"): 2}


def test_an_unknown_channel_sends_nothing(counts: Counts) -> None:
    n = notifier(counts)
    n.send("nowhere", NOTE)
    assert n.idle(timeout=1)
    assert counts.seen == {}


def test_every_channels_series_reads_zero_before_the_first_send() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    metrics.notification_channels(["slack-ml"], RESULTS)
    metrics.notification("slack-ml", "sent")
    values = {
        result: registry.get_sample_value(
            "turnout_operator_notifications_total", {"channel": "slack-ml", "result": result}
        )
        for result in RESULTS
    }
    assert values == {"sent": 1.0, "retried": 0.0, "dropped": 0.0, "overflow": 0.0}
