"""Token buckets (`domain/ratelimit.py`): the bucket's arithmetic, and the per-client limits of
the inference endpoints (what passes, the `Retry-After` it is told, the bound on keys kept), with
the clock handed in."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout_serving.domain.ratelimit import RateLimits, TokenBucket

# --- the token bucket -----------------------------------------------------------------------


def test_the_bucket_starts_full_refills_at_its_rate_and_holds_at_most_its_capacity() -> None:
    bucket = TokenBucket(rate=2.0, capacity=2.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert [bucket.take(0.25), bucket.take(0.5), bucket.take(0.5)] == [False, True, False]
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, False]  # not 200 saved up


def test_a_clock_that_steps_back_adds_no_tokens() -> None:
    bucket = TokenBucket(rate=1.0, capacity=1.0, now=10.0)
    assert [bucket.take(10.0), bucket.take(5.0), bucket.take(10.5)] == [True, False, False]
    assert bucket.take(11.5) is True


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    rate=st.floats(0.1, 1000),
    steps=st.lists(st.floats(0, 2), min_size=1, max_size=300),
)
def test_the_bucket_never_grants_more_than_its_capacity_plus_its_rate_over_the_time(
    rate: float, steps: list[float]
) -> None:
    capacity = max(1.0, rate)
    bucket, now, granted = TokenBucket(rate, capacity, 0.0), 0.0, 0
    for step in steps:
        now += step
        granted += bucket.take(now)
    assert granted <= capacity + rate * now + 1e-9


def test_wait_is_the_time_to_the_next_token_and_spends_nothing() -> None:
    bucket = TokenBucket(rate=4.0, capacity=1.0, now=0.0)
    assert bucket.wait(0.0) == 0.0
    assert bucket.take(0.0) is True
    assert bucket.wait(0.0) == 0.25
    assert bucket.wait(0.1) == pytest.approx(0.15)
    assert bucket.take(0.25) is True


# --- per-client limits ----------------------------------------------------------------------


def test_a_client_gets_its_burst_then_waits_a_whole_number_of_seconds() -> None:
    limits = RateLimits(requests_per_second=0.5, burst=3, max_keys=10)
    assert [limits.admit("a", 0.0) for _ in range(4)] == [0, 0, 0, 2]  # 1 token takes 2 s
    assert limits.admit("a", 1.5) == 1  # 0.5 s left: rounded up
    assert limits.admit("a", 2.0) == 0
    assert limits.admit("b", 2.0) == 0  # another client has its own bucket


def test_retry_after_is_at_least_one_second_however_fast_the_refill() -> None:
    limits = RateLimits(requests_per_second=1000, burst=1, max_keys=10)
    assert [limits.admit("a", 0.0), limits.admit("a", 0.0)] == [0, 1]


def test_the_least_recently_seen_client_is_forgotten_first() -> None:
    limits = RateLimits(requests_per_second=1, burst=1, max_keys=2)
    assert [limits.admit("a", 0.0), limits.admit("b", 0.0)] == [0, 0]
    assert limits.admit("a", 0.0) == 1  # a seen again: b is now the oldest
    assert limits.admit("c", 0.0) == 0  # b forgotten
    assert len(limits) == 2
    assert limits.admit("a", 0.0) == 1  # a kept its empty bucket
    assert limits.admit("b", 0.0) == 0  # b came back with a full one


@pytest.mark.parametrize(("rate", "burst", "keys"), [(0, 1, 1), (-1, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_limits_that_would_refuse_everything_are_refused(
    rate: float, burst: int, keys: int
) -> None:
    with pytest.raises(ValueError, match="requests_per_second > 0"):
        RateLimits(rate, burst, keys)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    rate=st.floats(0.01, 1000),
    burst=st.integers(1, 100),
    steps=st.lists(st.floats(0, 3), min_size=1, max_size=300),
)
def test_retry_after_is_the_least_whole_wait_that_passes_and_no_client_passes_more_than_allowed(
    rate: float, burst: int, steps: list[float]
) -> None:
    limits, now, passed = RateLimits(rate, burst, max_keys=1), 0.0, 0
    for step in steps:
        now += step
        retry_after = limits.admit("client", now)
        if retry_after > 1:  # one second less would not have been enough
            assert copy.deepcopy(limits).admit("client", now + retry_after - 1) > 0
        if retry_after > 0:  # waiting as told is enough
            now += retry_after
            assert limits.admit("client", now) == 0
        passed += 1
    assert passed <= burst + rate * now + 1e-6
