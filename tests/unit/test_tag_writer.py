"""The background writer of MLflow model-version tags: newest wish wins, transient registry
failures are retried with backoff, permanent ones are not, and reconciles never wait."""

from __future__ import annotations

import threading
import time

from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import VersionState
from turnout_operator.domain.observed import ResolveFailed
from turnout_operator.registry_http import RegistryError
from turnout_operator.tags import TagKey, TagWriter

KEY = "turnout.dev/ml.bikes"


class FakeRegistry:
    """Records writes; fails the first `failures` with `reason`; `gate` holds every write."""

    def __init__(self, failures: int = 0, reason: str = R.REGISTRY_UNAVAILABLE) -> None:
        self.tracking_uri = "http://mlflow:5000"
        self.failures, self.reason = failures, reason
        self.written: list[tuple[str, VersionState]] = []
        self.attempts: list[float] = []
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()

    def tag(self, name: str, version: str, key: str, state: VersionState) -> None:
        self.entered.set()
        self.gate.wait(5)
        self.attempts.append(time.monotonic())
        if self.failures:
            self.failures -= 1
            raise RegistryError(ResolveFailed(self.reason, "MLflow registry is unavailable"))
        self.written.append((version, state))


def test_tags_are_written_in_the_order_asked_and_a_newer_wish_replaces_an_unwritten_one() -> None:
    registry, counts = FakeRegistry(), []
    writer = TagWriter(on_pending=counts.append)
    registry.gate.clear()  # hold the writer on its first write
    writer.put(registry, "bikes", "3", KEY, "preview")
    assert registry.entered.wait(5)  # 3=preview is being written
    writer.put(registry, "bikes", "4", KEY, "preview")
    writer.put(registry, "bikes", "4", KEY, "active")  # replaces 4=preview, never written
    writer.put(registry, "bikes", "3", KEY, "retired")
    registry.gate.set()
    assert writer.idle(timeout=5)
    assert registry.written == [("3", "preview"), ("4", "active"), ("3", "retired")]
    assert writer.pending == {}
    assert counts[-1] == 0
    writer.stop()


def test_an_unavailable_registry_is_retried_with_doubling_backoff() -> None:
    registry = FakeRegistry(failures=3)
    writer = TagWriter(first_retry=0.05, max_retry=0.1)
    started = time.monotonic()
    writer.put(registry, "bikes", "4", KEY, "active")
    time.sleep(0.01)
    assert writer.pending == {TagKey("http://mlflow:5000", "bikes", "4", KEY): "active"}
    deadline = time.monotonic() + 5
    while not registry.written and time.monotonic() < deadline:
        time.sleep(0.01)
    assert registry.written == [("4", "active")]
    gaps = [b - a for a, b in zip(registry.attempts, registry.attempts[1:], strict=False)]
    # after each failure: 0.05 s, then 0.1 s, then 0.1 s (capped); at least that, never much more
    assert len(gaps) == 3
    assert all(wait <= gap < wait + 0.25 for gap, wait in zip(gaps, (0.05, 0.1, 0.1), strict=True))
    assert registry.attempts[0] - started < 0.25  # the first attempt at once
    writer.stop()


def test_a_missing_version_or_rejected_credentials_are_not_retried() -> None:
    for reason in (R.MODEL_NOT_FOUND, R.UNAUTHORIZED):
        registry = FakeRegistry(failures=1, reason=reason)
        writer = TagWriter(first_retry=0.01)
        writer.put(registry, "bikes", "9", KEY, "rejected")
        assert writer.idle(timeout=5)
        time.sleep(0.05)
        assert (len(registry.attempts), registry.written, writer.pending) == (1, [], {})
        writer.stop()


def test_a_newer_wish_wins_over_a_pending_retry() -> None:
    registry = FakeRegistry(failures=1)
    writer = TagWriter(first_retry=0.2)
    writer.put(registry, "bikes", "4", KEY, "active")
    assert writer.idle(timeout=5)  # the first attempt failed; its retry is 0.2 s away
    writer.put(registry, "bikes", "4", KEY, "rejected")
    assert writer.idle(timeout=5)
    time.sleep(0.3)
    assert registry.written == [("4", "rejected")]
    writer.stop()


def test_put_never_waits_for_the_registry() -> None:
    registry = FakeRegistry()
    registry.gate.clear()
    writer = TagWriter()
    started = time.monotonic()
    for version in range(50):
        writer.put(registry, "bikes", str(version), KEY, "retired")
    assert time.monotonic() - started < 0.5
    registry.gate.set()
    assert writer.idle(timeout=5)
    assert len(registry.written) == 50
    writer.stop()
