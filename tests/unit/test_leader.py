"""Leader election's decisions (domain/leader.py): a table of single decisions, then a
property: over any timeline of candidates reading and writing one Lease with resourceVersion
checks (delayed writes, failed reads and writes, crashes, restarts, clean stops), never two
leaders at once."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout_operator.domain.leader import (
    UNREADABLE,
    Acquire,
    Decision,
    Memory,
    Record,
    Renew,
    StepDown,
    Timing,
    Wait,
    decide,
    pause,
)

T = Timing(lease_seconds=15, renew_deadline_seconds=10, retry_seconds=2)


def held(by: str, version: str = "7", transitions: int = 3) -> Record:
    return Record(holder=by, lease_seconds=15, transitions=transitions, version=version)


STANDBY = Memory(seen="7", seen_at=100.0)  # has seen version 7 since t=100
LEADER = Memory(seen="7", seen_at=100.0, renewed_at=100.0)  # renewed at t=100


@pytest.mark.parametrize(
    ("read", "now", "memory", "expected"),
    [
        # no Lease yet: create it
        (None, 0.0, Memory(), Acquire(None, 0)),
        # held by another, first seen now: wait a whole lease from now
        (held("b"), 500.0, Memory(), Wait(2.0)),
        # held by another, unchanged for less than the lease: wait
        (held("b"), 114.9, STANDBY, Wait(2.0)),
        # unchanged for the whole lease: take it, one more transition
        (held("b"), 115.0, STANDBY, Acquire("7", 4)),
        # renewed meanwhile (a new version): the wait starts again
        (held("b", version="8"), 130.0, STANDBY, Wait(2.0)),
        # released on a clean stop: take it at once
        (held(""), 100.0, STANDBY, Acquire("7", 4)),
        # ours from before a restart: take it back, same transitions
        (held("a"), 100.0, Memory(), Acquire("7", 3)),
        # the leader renews before its deadline
        (held("a"), 109.9, LEADER, Renew("7", 3)),
        # ... and steps down at it, whatever it reads
        (held("a"), 110.0, LEADER, StepDown("could not renew the lease for 10 s")),
        (UNREADABLE, 110.0, LEADER, StepDown("could not renew the lease for 10 s")),
        # a failed read: a leader retries sooner when its deadline is nearer than a retry
        (UNREADABLE, 109.0, LEADER, Wait(1.0)),
        (UNREADABLE, 100.0, STANDBY, Wait(2.0)),
        # another holds the Lease the leader thought it had: step down at once
        (held("b", version="9"), 101.0, LEADER, StepDown("the lease is held by b")),
        (None, 101.0, LEADER, StepDown("the lease was deleted")),
    ],
)
def test_a_decision(
    read: Record | str | None, now: float, memory: Memory, expected: Decision
) -> None:
    assert decide(read, "a", now, memory, T)[0] == expected


def test_a_new_version_is_remembered_from_when_it_was_first_seen() -> None:
    _, memory = decide(held("b", version="8"), "a", 130.0, STANDBY, T)
    assert memory == Memory(seen="8", seen_at=130.0)
    _, memory = decide(held("b", version="8"), "a", 140.0, memory, T)
    assert memory == Memory(seen="8", seen_at=130.0)
    assert decide(held("b", version="8"), "a", 145.0, memory, T)[0] == Acquire("8", 4)


def test_a_leader_leads_until_its_deadline_from_the_last_renewal_it_decided() -> None:
    memory = Memory().written(decided_at=50.0)
    assert (memory.leading(59.99, T), memory.leading(60.0, T)) == (True, False)
    assert pause(59.0, memory, T) == 1.0
    assert pause(10.0, Memory(), T) == 2.0


@pytest.mark.parametrize(("lease", "deadline", "retry"), [(10, 10, 2), (15, 10, 10), (15, 10, 0)])
def test_timings_that_could_give_two_leaders_are_refused(
    lease: float, deadline: float, retry: float
) -> None:
    with pytest.raises(ValueError, match="0 < retry < renew deadline < lease duration"):
        Timing(lease, deadline, retry)


# --- the property: never two leaders -------------------------------------------------------------


@dataclass
class Store:
    """One Lease on an API server: replaced only at the version read (else 409)."""

    record: Record | None = None
    versions: int = 0

    def write(self, decision: Acquire | Renew, holder: str, transitions: int) -> bool:
        current = None if self.record is None else self.record.version
        if decision.version != current:
            return False
        self.versions += 1
        self.record = Record(holder, T.lease_seconds, transitions, str(self.versions))
        return True


@dataclass
class Candidate:
    name: str
    memory: Memory = field(default_factory=Memory)
    alive: bool = True
    pending: tuple[Acquire | Renew, float] | None = None  # a write sent, not yet answered
    written: str = ""  # the version of its last write that landed

    def leading(self, now: float) -> bool:
        return self.alive and self.memory.leading(now, T)


# One step of a timeline: the clock moves on by `dt`, then candidate `who` does `what`: `tick`
# (reads the Lease, decides, and a write it decides lands at once), `send` (the same, but the
# write stays in flight), `land` or `lose` (the write in flight lands, or is lost), `unreadable`
# (its read fails), `crash` (SIGKILL), `stop` (SIGTERM: a leader releases), `restart`.
ACTIONS = ["tick"] * 6 + ["send", "land", "lose", "unreadable", "crash", "stop", "restart"]
steps = st.lists(
    st.tuples(st.floats(0.0, 6.0, allow_nan=False), st.integers(0, 2), st.sampled_from(ACTIONS)),
    max_size=120,
)


def land(store: Store, me: Candidate, decision: Acquire | Renew, decided_at: float) -> None:
    if store.write(decision, me.name, decision.transitions):
        me.written = str(store.versions)
        if me.alive:
            me.memory = me.memory.written(decided_at)


@settings(max_examples=500, deadline=None)
@given(steps)
def test_never_two_leaders_at_once(timeline: list[tuple[float, int, str]]) -> None:
    store = Store()
    candidates = [Candidate(name) for name in ("a", "b", "c")]
    now = 0.0
    for dt, who, what in timeline:
        now += dt
        me = candidates[who]
        if what == "restart" and not me.alive:  # the same pod, a new process
            candidates[who] = me = Candidate(me.name)
        elif what == "crash":
            me.alive = False  # a write in flight may still land
        elif what == "stop" and me.leading(now) and store.record is not None:
            me.alive = False  # steps down, then releases at the version it last wrote
            store.write(Renew(me.written, 0), "", store.record.transitions)
        elif what in ("land", "lose") and me.pending is not None:
            (decision, decided_at), me.pending = me.pending, None
            if what == "land":
                land(store, me, decision, decided_at)
        elif what in ("tick", "send", "unreadable") and me.alive and me.pending is None:
            read = UNREADABLE if what == "unreadable" else store.record
            decision, me.memory = decide(read, me.name, now, me.memory, T)
            if isinstance(decision, StepDown):
                me.alive = False  # the process exits
            elif isinstance(decision, Acquire | Renew):
                if what == "tick":
                    land(store, me, decision, now)
                else:
                    me.pending = (decision, now)
        leaders = [c.name for c in candidates if c.leading(now)]
        assert len(leaders) <= 1, f"two leaders at t={now}: {leaders}"
    # Then every candidate runs, its writes answered at once: within a lease and a retry, one
    # of them leads (and still never two).
    candidates = [c if c.alive else Candidate(c.name) for c in candidates]
    for _ in range(int((T.lease_seconds + T.retry_seconds) / T.retry_seconds) + 1):
        now += T.retry_seconds
        for i, me in enumerate(candidates):
            me.pending = None
            decision, me.memory = decide(store.record, me.name, now, me.memory, T)
            if isinstance(decision, StepDown):  # exits, and its pod restarts it
                candidates[i] = Candidate(me.name)
            elif isinstance(decision, Acquire | Renew) and store.write(
                decision, me.name, decision.transitions
            ):
                me.written, me.memory = str(store.versions), me.memory.written(now)
        assert len([c for c in candidates if c.leading(now)]) <= 1
    assert len([c for c in candidates if c.leading(now)]) == 1
