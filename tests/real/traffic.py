"""Steady client traffic through a Service while rollouts happen, counted: what a user of the
active Service sees during switches, aborts, rollbacks and an operator's restart.

A thread sends one prediction at a time through the API server's service proxy (as `kubectl
proxy` users and the smoke test do), at most `rate` a second, for at most `max_seconds` and
`max_requests`. Every answer is recorded with the phase it was sent in (`phase(...)` names the
phase from then on), its status (or the connection error), and its latency.

    with Traffic(kube.http, "/api/v1/namespaces/ns/services/md:http/proxy/invocations", body) as t:
        t.phase("switch")
        ...
    t.failures()          # [] is the promise
    t.summary()           # per phase: count, failed, p50, p99 (seconds)
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx


@dataclass(frozen=True)
class Answer:
    phase: str
    sent: float  # time.monotonic()
    seconds: float
    status: int | None  # None: no HTTP answer
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.status != 200


@dataclass
class Traffic:
    client: Callable[[], httpx.Client]
    path: str
    body: dict[str, Any]
    rate: float = 20.0
    max_seconds: float = 900.0
    max_requests: int = 50_000
    answers: list[Answer] = field(default_factory=list)
    _phase: str = "steady"
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def phase(self, name: str) -> None:
        """Requests sent from now on count for phase `name`."""
        self._phase = name

    def wait_answers(self, count: int, timeout: float = 60) -> None:
        """Until `count` answers of the current phase have come (whatever their status)."""
        deadline = time.monotonic() + timeout
        while self.count(self._phase) < count:
            assert time.monotonic() < deadline, f"{count} answers in phase {self._phase}"
            assert self._thread is not None and self._thread.is_alive(), "traffic stopped"
            time.sleep(0.05)

    def count(self, phase: str) -> int:
        return sum(1 for a in list(self.answers) if a.phase == phase)

    def failures(self) -> list[Answer]:
        return [a for a in list(self.answers) if a.failed]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per phase, in order of first request: count, failed, p50 and p99 latency (s)."""
        phases: dict[str, list[Answer]] = {}
        for answer in list(self.answers):
            phases.setdefault(answer.phase, []).append(answer)
        return {name: _figures(answers) for name, answers in phases.items()}

    def _run(self) -> None:
        began = time.monotonic()
        gap = 1.0 / self.rate
        with self.client() as http:
            while (
                not self._stop.is_set()
                and len(self.answers) < self.max_requests
                and time.monotonic() - began < self.max_seconds
            ):
                sent, phase = time.monotonic(), self._phase
                try:
                    status, error = http.post(self.path, json=self.body).status_code, ""
                except httpx.HTTPError as exc:
                    status, error = None, f"{type(exc).__name__}: {exc}"
                seconds = time.monotonic() - sent
                self.answers.append(Answer(phase, sent, seconds, status, error))
                self._stop.wait(max(0.0, gap - seconds))


def _figures(answers: list[Answer]) -> dict[str, float]:
    latencies = sorted(a.seconds for a in answers)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "count": len(answers),
        "failed": sum(a.failed for a in answers),
        "p50": quantiles[49],
        "p99": quantiles[98],
    }
