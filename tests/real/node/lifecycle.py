"""The kubelet's decisions about a container's life, as pure functions of what happened and when:
whether an exited container restarts, how long its back-off is (CrashLoopBackOff), what a probe's
results add up to, and when a probe is due. The agent's pod workers carry them out.
"""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_BACKOFF = 10.0  # the kubelet's `backOffPeriod`
MAX_BACKOFF = 300.0  # `MaxContainerBackOff`
RESET_AFTER = 600.0  # a container that ran this long starts its back-off afresh


def should_restart(restart_policy: str, exit_code: int) -> bool:
    """`ShouldContainerBeRestarted` for a container that exited (the pod is not being deleted)."""
    if restart_policy == "Always":
        return True
    return restart_policy == "OnFailure" and exit_code != 0


@dataclass
class BackOff:
    """Per container: the first restart is at once; each later one waits 10 s, then twice as
    long as the last, at most `maximum`; a run of `reset_after` seconds resets it (the kubelet's
    `flowcontrol.Backoff` keyed by container, checked against the container's `finishedAt`)."""

    maximum: float = MAX_BACKOFF
    initial: float = INITIAL_BACKOFF
    reset_after: float = RESET_AFTER
    current: float = 0.0  # 0: no back-off yet

    def delay(self, started: float, finished: float) -> float:
        """Seconds to wait after an exit at `finished` of a run begun at `started`."""
        if finished - started >= self.reset_after:
            self.current = 0.0
        delay = self.current
        self.current = min(self.initial if not self.current else self.current * 2, self.maximum)
        return min(delay, self.maximum)


@dataclass(frozen=True)
class ProbeSpec:
    kind: str  # "startup" | "readiness" | "liveness"
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def of(cls, kind: str, spec: dict[str, object]) -> ProbeSpec:
        def number(key: str, default: float) -> float:
            value = spec.get(key)
            return float(value) if isinstance(value, int | float) else default

        return cls(kind, number("initialDelaySeconds", 0), number("periodSeconds", 10),
                   number("timeoutSeconds", 1), int(number("successThreshold", 1)),
                   int(number("failureThreshold", 3)))  # fmt: skip


@dataclass
class ProbeState:
    """The kubelet's prober worker for one probe of one container run: results count as
    consecutive runs; the result changes once a run reaches its threshold."""

    spec: ProbeSpec
    result: bool | None = None  # None: unknown (a startup probe before its first verdict)
    _last: bool | None = None
    _run: int = 0
    next_at: float = 0.0

    @classmethod
    def begin(cls, spec: ProbeSpec, started: float) -> ProbeState:
        initial = {"readiness": False, "liveness": True, "startup": None}[spec.kind]
        return cls(spec, initial, next_at=started + spec.initial_delay)

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, ok: bool, now: float) -> bool | None:
        """Count one probe's outcome; return the probe's result."""
        self.next_at = now + self.spec.period
        if ok == self._last:
            self._run += 1
        else:
            self._last, self._run = ok, 1
        threshold = self.spec.success_threshold if ok else self.spec.failure_threshold
        if self._run >= threshold:
            self.result = ok
            if not ok and self.spec.kind != "readiness":
                self._run = 0  # the container is killed; counting starts over with the next run
        return self.result
