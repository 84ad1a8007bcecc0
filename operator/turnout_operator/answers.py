"""The registry answers every ModelDeployment that follows the same reference shares.

All resolutions go through one `SharedAnswers` per operator: answers are kept by the reference's
key (the registry's identity, i.e. its tracking URI and a digest of the credentials used, and the
reference itself), so an answer fetched with one Secret's credentials is never handed to a
ModelDeployment that uses other credentials, or none. At most one fetch per key is in flight:
the askers who come meanwhile wait for it (single flight). When an answer may be reused, or a
fetch joined, is domain/answers.py's decision; this module only keeps the answers and the
flights, under one lock, and runs a fetch on the asker's own thread (the registry threads of
handlers.py), never under the lock.

A fetch that raises (a bug, not a registry failure: those are answers) is not kept: its waiters
decide again and one of them fetches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from turnout_operator.domain.answers import Decision, Freshness, Kept, decide
from turnout_operator.domain.observed import Resolved, ResolveFailed
from turnout_operator.domain.spec import MAX_POLL_INTERVAL_SECONDS

Resolution = Resolved | ResolveFailed


@dataclass
class _Flight:
    started: float
    done: threading.Event = field(default_factory=threading.Event)
    resolution: Resolution | None = None  # None: the fetch raised


class SharedAnswers:
    """Registry answers by key, shared by every asker for which they are fresh enough.

    `on_fetched(resolution)` is called once per fetch, `on_shared()` once per answer handed out
    without one. Answers older than `keep_seconds` (the longest poll interval) are dropped
    whenever a new one is kept, so keys of references no one follows any more do not pile up.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        on_fetched: Callable[[Resolution], None] = lambda resolution: None,
        on_shared: Callable[[], None] = lambda: None,
        keep_seconds: float = MAX_POLL_INTERVAL_SECONDS,
    ) -> None:
        self.clock = clock
        self._on_fetched, self._on_shared = on_fetched, on_shared
        self._keep = keep_seconds
        self._lock = threading.Lock()
        self._answers: dict[Hashable, tuple[Kept, Resolution]] = {}
        self._flights: dict[Hashable, _Flight] = {}
        self.waiting = 0  # askers waiting for a fetch in flight, now

    def answer(
        self, key: Hashable, fetch: Callable[[], Resolution], freshness: Freshness
    ) -> Resolution:
        """The answer for `key` that `freshness` accepts: a kept one, the one of a fetch in
        flight, or `fetch()`'s own (blocking: call it off the event loop)."""
        asked = self.clock()
        while True:
            with self._lock:
                kept = self._answers.get(key)
                flight = self._flights.get(key)
                decision = decide(kept[0] if kept else None, flight.started if flight else None,
                                  asked, freshness)  # fmt: skip
                if decision is Decision.REUSE:
                    assert kept is not None
                    self._on_shared()
                    return kept[1]
                if decision is Decision.FETCH:
                    flight = self._flights[key] = _Flight(self.clock())
                else:
                    self.waiting += 1
            assert flight is not None
            if decision is Decision.FETCH:
                return self._fetch(key, flight, fetch)
            flight.done.wait()
            with self._lock:
                self.waiting -= 1
            if decision is Decision.JOIN and flight.resolution is not None:
                self._on_shared()
                return flight.resolution

    def _fetch(self, key: Hashable, flight: _Flight, fetch: Callable[[], Resolution]) -> Resolution:
        try:
            resolution = fetch()
        except BaseException:
            with self._lock:
                del self._flights[key]
            flight.done.set()
            raise
        with self._lock:
            flight.resolution = resolution
            self._answers[key] = (Kept(flight.started, isinstance(resolution, ResolveFailed)),
                                  resolution)  # fmt: skip
            del self._flights[key]
            self._drop_older_than(flight.started - self._keep)
        flight.done.set()
        self._on_fetched(resolution)
        return resolution

    def _drop_older_than(self, moment: float) -> None:
        for key in [k for k, (kept, _) in self._answers.items() if kept.started < moment]:
            del self._answers[key]

    def __len__(self) -> int:
        """How many answers are kept."""
        with self._lock:
            return len(self._answers)
