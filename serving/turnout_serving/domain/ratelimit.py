"""Token buckets: shadow traffic's cap on copies, and the inference endpoints' rate limit.

`RateLimits` keeps one bucket per client key (the bearer token when auth is on, the client's
address otherwise) and answers, per request, whether it may pass or how many seconds to wait
(`Retry-After`). The number of keys is bounded: the least recently seen key is forgotten first,
so a scan from many addresses cannot grow memory; a forgotten key comes back with a full bucket,
which is what any new client gets.

Pure: the clock reading is handed in; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import math
from collections import OrderedDict


class TokenBucket:
    """`rate` tokens a second, holding at most `capacity`; starts full."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity = rate, capacity
        self._tokens, self._last = capacity, now

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now

    def take(self, now: float) -> bool:
        """One token if there is one (refilled for the time since the last call)."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait(self, now: float) -> float:
        """Seconds until the next token (0 when one is there); spends nothing."""
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) / self.rate)


class RateLimits:
    """One token bucket per client key: `requests_per_second` refill, `burst` capacity, at most
    `max_keys` keys kept (least recently seen forgotten first)."""

    def __init__(self, requests_per_second: float, burst: int, max_keys: int) -> None:
        if requests_per_second <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("requests_per_second > 0, burst >= 1 and max_keys >= 1 are needed")
        self.requests_per_second, self.burst, self.max_keys = requests_per_second, burst, max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def admit(self, key: str, now: float) -> int:
        """0 when the request may pass (a token is spent), else the whole seconds to wait before
        asking again (`Retry-After`, rounded up, at least 1)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.requests_per_second, float(self.burst), now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if bucket.take(now):
            return 0
        return max(1, math.ceil(bucket.wait(now)))
