"""The live quality of each version while it served, recorded on its MLflow model version, so
that MLflow's UI shows a version's production figures beside its training run's.

Tags, per ModelDeployment that serves the version (`turnout.live/<namespace>.<name>.<figure>`):
`mae`, `rmse` (regressors) or `accuracy` (classifiers), `rows` (the labelled predictions they
stand on) and `updated` (when they were read, UTC). They are the active pods' own live-quality
gauges (fed by `POST /feedback`), read with `pod_metrics.live_reading` and combined over the
pods.

Reconciles only say what serves (`serving`, a dictionary update). One thread of its own reads
the pods: at most once per `interval` seconds per ModelDeployment, and once more for a version
the moment it stops being active (its pods still run then: the old color is scaled down
later), and hands the tags to the `TagWriter`, which writes them with its retries. So neither
the pods nor MLflow ever slow a reconcile. The same read keeps what the retraining triggers
look at (`watched`: drift, live and training error), which reconciles take from memory. A read
that finds no labelled prediction writes nothing: a version's tags keep the last figures it had.
What a restart loses: nothing but the reads' schedule (the first read comes at once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import requests

from turnout_operator.domain.spec import Color
from turnout_operator.meter import Pods
from turnout_operator.pod_metrics import (
    LiveQuality,
    Watched,
    live_quality,
    live_reading,
    watched,
)
from turnout_operator.tags import Tagger, TagWriter

log = logging.getLogger("turnout_operator.live")
TAG_PREFIX = "turnout.live/"


@dataclass
class Served:
    """A version a ModelDeployment serves (or served), and when its pods were last read."""

    model: str
    version: str
    color: Color
    registry: Callable[[], Tagger]  # the ModelDeployment's registry, built when writing
    read_at: float | None = None


class LiveRecorder:
    def __init__(
        self,
        pods: Pods,
        tags: TagWriter,
        *,
        interval: float,
        timeout: float,
        direct: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pods, self._tags = pods, tags
        self._interval, self._timeout, self._direct = interval, timeout, direct
        self._clock, self._wall = clock, wall
        self._serving: dict[tuple[str, str], Served] = {}
        self._leaving: list[tuple[str, str, Served]] = []  # read once more, then forgotten
        self._watched: dict[tuple[str, str], Watched] = {}
        self._lock = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def serving(
        self, namespace: str, name: str, model: str, version: str | None, color: Color | None,
        registry: Callable[[], Tagger],
    ) -> None:  # fmt: skip
        """What the ModelDeployment serves now (None: nothing). A version that was active
        and is no longer is read one last time."""
        key = (namespace, name)
        with self._lock:
            current = self._serving.get(key)
            if current is not None and (current.model, current.version, current.color) == (
                model, version, color,
            ):  # fmt: skip
                current.registry = registry  # the latest credentials
                return
            if current is not None:
                self._leaving.append((namespace, name, current))
            if version is None or color is None:
                self._serving.pop(key, None)
            else:
                self._serving[key] = Served(model, version, color, registry)
            self._lock.notify()

    def start(self) -> None:
        """Start reading in the background (the operator does; tests call `record_due`)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="turnout-live", daemon=True)
                self._thread.start()

    def forget(self, namespace: str, name: str) -> None:
        """A deleted ModelDeployment: its pods go with it, nothing more to read."""
        with self._lock:
            self._serving.pop((namespace, name), None)
            self._watched.pop((namespace, name), None)

    def watched(self, namespace: str, name: str, version: str | None) -> Watched | None:
        """What the last read of the ModelDeployment's active pods saw, if they served
        `version`."""
        with self._lock:
            found = self._watched.get((namespace, name))
        return found if found is not None and found.version == version else None

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify()

    def record_due(self) -> float:
        """Read and tag what is due now; the seconds until the next read is due."""
        with self._lock:
            now = self._clock()
            due = [(ns, name, served) for ns, name, served in self._leaving]
            self._leaving = []
            for (ns, name), served in self._serving.items():
                if served.read_at is None or now - served.read_at >= self._interval:
                    served.read_at = now
                    due.append((ns, name, served))
            wait = min(
                (served.read_at + self._interval - now for served in self._serving.values()
                 if served.read_at is not None),
                default=self._interval,
            )  # fmt: skip
        for namespace, name, served in due:
            try:
                self._record(namespace, name, served)
            except Exception:  # a bug must not end the thread
                log.exception("recording the live quality of %s/%s failed", namespace, name)
        return max(0.0, wait)

    def _run(self) -> None:
        while True:
            wait = self.record_due()
            with self._lock:
                if not self._stopped and not self._new():
                    self._lock.wait(wait)
                if self._stopped:
                    return

    def _new(self) -> bool:
        """Something to read at once: a version that left, or one never read."""
        return bool(self._leaving) or any(s.read_at is None for s in self._serving.values())

    def _record(self, namespace: str, name: str, served: Served) -> None:
        quality = self._read(namespace, name, served)
        if quality.rows == 0:
            return
        figures = {"mae": quality.mae, "rmse": quality.rmse, "accuracy": quality.accuracy}
        values = {k: f"{v:.6g}" for k, v in figures.items() if v is not None}
        values |= {"rows": str(quality.rows), "updated": self._wall().isoformat(timespec="seconds")}
        registry = served.registry()
        for figure, value in values.items():
            key = f"{TAG_PREFIX}{namespace}.{name}.{figure}"
            self._tags.put(registry, served.model, served.version, key, value)

    def _read(self, namespace: str, name: str, served: Served) -> LiveQuality:
        """The version's live quality over the ready pods of its color that answer; what the
        retraining triggers see of them is kept (`watched`)."""
        readings, texts = [], []
        for pod, ip in self._pods.ready_pods(namespace, name, served.color):
            try:
                code, text = self._pods.pod_request(
                    namespace, pod, ip, "GET", "/metrics", self._direct(), self._timeout
                )
                if code == 200:
                    readings.append(live_reading(text, served.version))
                    texts.append(text)
            except (requests.RequestException, OSError, ValueError) as exc:
                log.info("live quality of %s/%s: pod %s: %s", namespace, name, pod, exc)
        if texts:
            with self._lock:
                current = self._serving.get((namespace, name))
                if current is not None and current.version == served.version:  # still active
                    self._watched[(namespace, name)] = watched(texts, served.version)
        return live_quality(readings)
