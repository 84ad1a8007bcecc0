"""Model-version tags (`turnout.dev/<namespace>.<name>` = active | preview | rejected | retired,
and the live figures of live_record.py), written in the background so that MLflow never slows
or stalls a rollout.

A tag is an audit trail for people browsing the registry, not state the operator reads back. If
reconciles wrote tags themselves, a registry that accepts connections and never answers would
hold every reconcile thread for its whole retry budget, and an automatic rollback could wait
behind it. So reconciles only `put` the tag they want; one writer thread writes them in the
order they were asked for (a newer wish for the same tag replaces one not yet written) and
retries what failed for a reason a retry can cure (the registry down or
busy) with backoff doubling from `first_retry` to `max_retry`. A version or model deleted from
the registry, or credentials it rejects, are not retried (logged once); a later `put` for the
same tag, which brings the ModelDeployment's current credentials, tries again.

What a restart loses: tags still waiting for the registry when the operator stops. They are
written again at the version's next transition. The `turnout_operator_tag_writes_pending` gauge
says how many are waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from turnout_operator.domain import reasons
from turnout_operator.registry_http import RegistryError

log = logging.getLogger("turnout_operator.tags")
RETRYABLE = frozenset({reasons.REGISTRY_UNAVAILABLE})


class Tagger(Protocol):
    tracking_uri: str

    def tag(self, name: str, version: str, key: str, value: str) -> None: ...


@dataclass(frozen=True)
class TagKey:
    tracking_uri: str
    model: str
    version: str
    key: str


@dataclass
class _Pending:
    registry: Tagger
    state: str  # a VersionState, or a live figure (live_record.py)
    due: float
    delay: float  # the wait after the next failure


class TagWriter:
    def __init__(
        self,
        *,
        first_retry: float = 2.0,
        max_retry: float = 300.0,
        on_pending: Callable[[int], None] = lambda _: None,
    ) -> None:
        self._first, self._max = first_retry, max_retry
        self._on_pending = on_pending
        self._pending: dict[TagKey, _Pending] = {}
        self._busy: TagKey | None = None  # the tag being written right now
        self._lock = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def put(self, registry: Tagger, model: str, version: str, key: str, state: str) -> None:
        """Ask for `key=state` on the version; replaces an older wish for the same tag."""
        tag = TagKey(registry.tracking_uri, model, version, key)
        with self._lock:
            self._pending[tag] = _Pending(registry, state, time.monotonic(), self._first)
            self._on_pending(len(self._pending))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="turnout-tags", daemon=True)
                self._thread.start()
            self._lock.notify()

    def idle(self, timeout: float) -> bool:
        """Wait until nothing is being written or due now (tests, shutdown); True if so."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._busy is not None or self._next_due() is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))
            return True

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify()

    @property
    def pending(self) -> dict[TagKey, str]:
        with self._lock:
            return {tag: p.state for tag, p in self._pending.items()}

    def _run(self) -> None:
        while True:
            with self._lock:
                tag = self._next_due()
                while tag is None and not self._stopped:
                    self._lock.wait(self._wait())
                    tag = self._next_due()
                if self._stopped:
                    return
                assert tag is not None
                wish = self._pending.pop(tag)
                self._busy = tag
            try:
                self._write(tag, wish)
            finally:
                with self._lock:
                    self._busy = None
                    self._on_pending(len(self._pending))
                    self._lock.notify_all()

    def _write(self, tag: TagKey, wish: _Pending) -> None:
        try:
            wish.registry.tag(tag.model, tag.version, tag.key, wish.state)
        except RegistryError as exc:
            if exc.failure.reason not in RETRYABLE:
                log.warning("not tagging %s v%s %s=%s: %s", tag.model, tag.version, tag.key,
                            wish.state, exc)  # fmt: skip
                return
            log.warning("tagging %s v%s %s=%s failed, retrying in %.0f s: %s", tag.model,
                        tag.version, tag.key, wish.state, wish.delay, exc)  # fmt: skip
            with self._lock:
                if tag not in self._pending:  # a newer wish wins over this retry
                    retry = _Pending(wish.registry, wish.state, time.monotonic() + wish.delay,
                                     min(self._max, wish.delay * 2))  # fmt: skip
                    self._pending[tag] = retry
        except Exception:  # a bug must not kill the writer thread
            log.exception("tagging %s v%s failed", tag.model, tag.version)

    def _next_due(self) -> TagKey | None:
        now = time.monotonic()
        due = [(p.due, i, tag) for i, (tag, p) in enumerate(self._pending.items()) if p.due <= now]
        return min(due)[2] if due else None

    def _wait(self) -> float:
        if not self._pending:
            return 60.0
        return max(0.01, min(p.due for p in self._pending.values()) - time.monotonic())
