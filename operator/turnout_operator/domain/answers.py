"""When a registry answer fetched for one ModelDeployment may be handed to another.

Every ModelDeployment that follows the same reference (one registry, one set of credentials, one
`models:/NAME@alias`) would otherwise ask the registry the same question once per poll interval:
a hundred followers, a hundred identical requests. The operator keeps the last answer per
reference (answers.py) and hands it to each asker for which it is fresh enough:

- it was fetched at most half the asker's own poll interval before the asker asked (a failure:
  at most half the registry retry delay, so a short outage does not outlive its own retry), so
  no follower sees an answer much older than its interval, and the registry sees about two
  questions per reference per interval whatever the number of followers;
- it was fetched after the moment the asker names, if any: a registry webhook delivery says the
  reference moved, and an answer asked before it may be the old one.

Moments are seconds on one monotonic clock the caller reads. Pure: no clock, no threads here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class Freshness:
    """How old an answer one asker takes."""

    max_age: float  # seconds from the fetch's start to the asker's question, for an answer
    max_failure_age: float  # the same for a failure (the registry could not answer)
    after: float | None = None  # the fetch must have started at or after this moment

    @classmethod
    def of(
        cls, poll_interval_seconds: float, retry_seconds: float, after: float | None = None
    ) -> Freshness:
        """An asker polling every `poll_interval_seconds` and retrying a failure after
        `retry_seconds` at the earliest."""
        half = poll_interval_seconds / 2
        return cls(half, min(half, retry_seconds / 2), after)


@dataclass(frozen=True)
class Kept:
    """The last answer of one reference: when its fetch started, and whether it failed."""

    started: float
    failed: bool


class Decision(Enum):
    REUSE = "reuse"  # hand out the kept answer
    JOIN = "join"  # a fetch in flight will do: wait for it and take its answer
    WAIT = "wait"  # a fetch in flight started too early: wait for it, then decide again
    FETCH = "fetch"  # ask the registry (the one fetch in flight for this reference)


def usable(kept: Kept, asked: float, freshness: Freshness) -> bool:
    """Whether `kept` answers a question asked at moment `asked`."""
    if freshness.after is not None and kept.started < freshness.after:
        return False
    age = freshness.max_failure_age if kept.failed else freshness.max_age
    return kept.started >= asked - age


def decide(
    kept: Kept | None, in_flight: float | None, asked: float, freshness: Freshness
) -> Decision:
    """What an asker does with the kept answer (None: none) and the start of the fetch in
    flight (None: none). A fetch in flight is younger than anything kept, so joining it is
    enough unless it started before the moment the asker names."""
    if kept is not None and usable(kept, asked, freshness):
        return Decision.REUSE
    if in_flight is not None:
        too_early = freshness.after is not None and in_flight < freshness.after
        return Decision.WAIT if too_early else Decision.JOIN
    return Decision.FETCH
