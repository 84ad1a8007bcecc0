"""Retry schedules inside a time budget (registry resolution, artifact downloads)."""

from __future__ import annotations

import pytest

from turnout_serving.domain.backoff import Backoff
from turnout_serving.model_source import RegistryUnavailable, ResolvedSource, resolve_within


@pytest.mark.parametrize(
    ("backoff", "attempt", "elapsed", "delay"),
    [
        (Backoff(60), 0, 0.0, 1.0),
        (Backoff(60), 1, 1.0, 2.0),
        (Backoff(60), 4, 15.0, 16.0),
        (Backoff(60), 5, 31.0, 29.0),  # capped by what is left
        (Backoff(60), 6, 60.0, None),  # spent
        (Backoff(600, first=2, cap=60), 6, 126.0, 60.0),  # capped by the longest wait
        (Backoff(3), 0, 3.5, None),
    ],
)
def test_delay(backoff: Backoff, attempt: int, elapsed: float, delay: float | None) -> None:
    assert backoff.delay(attempt, elapsed) == delay


def test_an_attempt_may_take_what_is_left_but_at_least_a_second() -> None:
    assert [Backoff(10).remaining(e) for e in (0, 9.5, 12)] == [10, 1.0, 1.0]


def test_resolve_within_retries_until_the_budget_is_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    calls: list[float | None] = []

    def unavailable(uri: str, seconds: float | None = None) -> ResolvedSource:
        calls.append(seconds)
        now[0] += 0.5  # each attempt takes half a second
        raise RegistryUnavailable(f"Cannot resolve {uri!r}: no answer")

    monkeypatch.setattr("turnout_serving.model_source.resolve", unavailable)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    with pytest.raises(RegistryUnavailable) as failed:
        resolve_within("models:/M@a", 6, clock=lambda: now[0], sleep=sleep)
    # attempts start at 0, 1.5, 4 and 6 s: the last wait fills the budget, the last attempt gets
    # a second
    assert waits == [1.0, 2.0, 1.5]
    assert calls == [6.0, 4.5, 2.0, 1.0]
    assert str(failed.value) == "Cannot resolve 'models:/M@a': no answer (gave up after 6s: see " \
        "--registry-timeout)"  # fmt: skip


def test_resolve_within_does_not_retry_what_the_registry_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from turnout_serving.model_source import ModelSourceError

    calls = []

    def refused(uri: str, seconds: float | None = None) -> ResolvedSource:
        calls.append(uri)
        raise ModelSourceError("no such alias")

    monkeypatch.setattr("turnout_serving.model_source.resolve", refused)
    with pytest.raises(ModelSourceError, match="no such alias"):
        resolve_within("models:/M@a", 60, clock=lambda: 0.0, sleep=lambda s: None)
    assert calls == ["models:/M@a"]
