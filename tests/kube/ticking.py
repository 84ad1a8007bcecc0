"""What the emulator's controller stand-ins share (controller.py for Deployments, jobs.py for
Jobs): a thread that passes over its objects every `tick` seconds and at once after any write
to the store, and stops by killing the processes it started (SIGTERM, then SIGKILL after the
grace period)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from tests.kube.processes import Reaper
from tests.kube.store import Store

log = logging.getLogger(__name__)


class Ticking:
    thread_name = "kube-controller"

    def __init__(self, store: Store, log_dir: Path, *, tick: float = 0.1) -> None:
        self.store = store
        self.log_dir = log_dir
        self.tick = tick
        # Seconds to wait after a write wakes the controller before its pass. Every pass looks
        # at every object: with hundreds of them and a write every few ms (a benchmark),
        # passing once per write would keep the emulator's process busy doing nothing new.
        self.batch = 0.0
        self._reaper = Reaper()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)

    def start(self) -> None:
        self.store.subscribe(self._wake.set)
        self._thread.start()

    def stop(self) -> None:
        """Stop passing and kill every process it started."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(30)
        self.store.unsubscribe(self._wake.set)
        self._stop_all(time.monotonic())
        self._reaper.wait_all()

    def _run(self) -> None:
        while not self._stopping.is_set():
            if self._wake.wait(self.tick) and self.batch:
                self._stopping.wait(self.batch)  # let a burst of writes land: one pass for all
            self._wake.clear()
            if self._stopping.is_set():
                return
            now = time.monotonic()
            try:
                self._reconcile_all(now)
            except Exception:  # keep the controller alive; the log says what went wrong
                log.exception("%s: a pass failed", self.thread_name)
            self._reaper.reap(now)

    def _reconcile_all(self, now: float) -> None:
        raise NotImplementedError

    def _stop_all(self, now: float) -> None:
        raise NotImplementedError
