"""When to try again: capped exponential backoff inside a total time budget.

The server retries two things that may come up after it does, the registry (resolving the model
URI) and the artifact store (downloading the model), and gives up on each after a documented
time (`--registry-timeout`, `--artifact-timeout`). The schedule is decided here, from elapsed
time handed in, so it is tested without waiting; the callers do the waiting.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    budget: float  # seconds, in all, from the first attempt
    first: float = 1.0  # seconds before the second attempt
    cap: float = 60.0  # longest single wait

    def delay(self, attempt: int, elapsed: float) -> float | None:
        """Seconds to wait after failed attempt number `attempt` (0 for the first) when
        `elapsed` seconds have passed since the first began; None once the budget is spent.
        A wait never runs past the budget: the last attempt starts when it ends, and the caller
        bounds each attempt by `remaining` (at least a second), so all is over about a second
        after the budget."""
        remaining = self.budget - elapsed
        if remaining <= 0:
            return None
        return min(self.first * 2**attempt, self.cap, remaining)

    def remaining(self, elapsed: float, floor: float = 1.0) -> float:
        """The time an attempt may take now: what is left of the budget, but at least `floor`."""
        return max(floor, self.budget - elapsed)
