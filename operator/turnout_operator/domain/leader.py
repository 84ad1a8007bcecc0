"""Leader election on a coordination.k8s.io/v1 Lease, decided as client-go's leaderelection
decides it: a pure function of the Lease as read, what this candidate remembers and its own
clock. It never reads a clock or talks to the API server; `leader.py` does, and carries out the
decision.

Why this is safe (never two leaders for one timeline):
- A candidate takes a Lease held by another only once it has seen the same resourceVersion for
  the Lease's whole duration *by its own clock* (never by the renewTime written in it: clocks of
  two machines differ), and writes with that resourceVersion, so a renewal in between makes its
  write fail (409).
- A leader counts itself leader only until `renew_deadline` after its last successful renewal
  (measured from when it decided to renew, before the write), and `renew_deadline` is shorter
  than the lease: by the time another could take the Lease, the old leader has stepped down.
- A Lease released on a clean stop (holder "") is taken at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Timing:
    """client-go's three durations (controller-runtime's defaults)."""

    lease_seconds: float = 15.0  # how long a standby waits on an unchanged Lease
    renew_deadline_seconds: float = 10.0  # a leader that could not renew for this long steps down
    retry_seconds: float = 2.0  # between two attempts to acquire or renew

    def __post_init__(self) -> None:
        if not 0 < self.retry_seconds < self.renew_deadline_seconds < self.lease_seconds:
            raise ValueError(
                "leader election needs 0 < retry < renew deadline < lease duration, got "
                f"{self.retry_seconds:g} < {self.renew_deadline_seconds:g} < {self.lease_seconds:g}"
            )


@dataclass(frozen=True)
class Record:
    """A Lease as read: its holder ("" once released), duration, transitions and version."""

    holder: str
    lease_seconds: float
    transitions: int
    version: str


UNREADABLE = "unreadable"  # the read failed (API server unreachable, timeout, 5xx)


@dataclass(frozen=True)
class Memory:
    """What a candidate remembers between two decisions: the version it last saw and since when
    (its own clock), and, while it leads, when it last decided a renewal that succeeded."""

    seen: str | None = None
    seen_at: float = 0.0
    renewed_at: float | None = None

    def leading(self, now: float, timing: Timing) -> bool:
        return self.renewed_at is not None and now < self.renewed_at + timing.renew_deadline_seconds

    def written(self, decided_at: float) -> Memory:
        """The write decided at `decided_at` (an Acquire or a Renew) succeeded."""
        return replace(self, renewed_at=decided_at)


@dataclass(frozen=True)
class Acquire:
    """Write the Lease as ours: create it (version None) or replace the version read."""

    version: str | None
    transitions: int


@dataclass(frozen=True)
class Renew:
    version: str
    transitions: int


@dataclass(frozen=True)
class Wait:
    """Nothing to write: try again after `seconds`."""

    seconds: float


@dataclass(frozen=True)
class StepDown:
    """Stop leading now (the process exits); `reason` says why."""

    reason: str


Decision = Acquire | Renew | Wait | StepDown


def decide(
    read: Record | str | None, me: str, now: float, memory: Memory, timing: Timing
) -> tuple[Decision, Memory]:
    """What candidate `me` does with the Lease it read at `now` (None: there is none;
    UNREADABLE: the read failed), and what it remembers next."""
    was_leading = memory.renewed_at is not None
    if was_leading and not memory.leading(now, timing):
        return StepDown(
            f"could not renew the lease for {timing.renew_deadline_seconds:g} s"
        ), memory
    if isinstance(read, str):
        return Wait(pause(now, memory, timing)), memory
    if read is None:
        if was_leading:
            return StepDown("the lease was deleted"), memory
        return Acquire(None, 0), memory
    if read.version != memory.seen:
        memory = replace(memory, seen=read.version, seen_at=now)
    if read.holder == me:
        if was_leading:
            return Renew(read.version, read.transitions), memory
        # ours from before a restart (the identity is the pod's name): nobody else took it
        return Acquire(read.version, read.transitions), memory
    if was_leading:
        return StepDown(f"the lease is held by {read.holder}"), memory
    if read.holder and now < memory.seen_at + read.lease_seconds:
        return Wait(pause(now, memory, timing)), memory
    return Acquire(read.version, read.transitions + 1), memory


def pause(now: float, memory: Memory, timing: Timing) -> float:
    """How long to wait before the next read: the retry period, or less, since a leader must
    wake in time to step down at its deadline."""
    if memory.renewed_at is None:
        return timing.retry_seconds
    deadline = memory.renewed_at + timing.renew_deadline_seconds
    return max(0.0, min(timing.retry_seconds, deadline - now))
