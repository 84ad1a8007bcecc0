"""Sampled logging of live requests and their answers, to stdout or an HTTP receiver.

`Runtime.infer` hands every live answer to `PayloadLog.offer` on the event loop (shadow copies
never: they are not what clients sent). With logging off (`payload_log_sample_rate` 0) that is
one attribute test. Otherwise a random draw picks `sample_rate` of the answers, and an `Entry`
(references to what was already computed, and the time) goes onto a bounded queue: O(1), never
blocking, never raising into the request. A full queue drops the entry and counts it.

One background thread takes entries off the queue, protects the columns named for redaction or
hashing and writes them (`domain/payload_log.py`): a JSON line on stdout, or an HTTP POST (a
JSON document, or two CloudEvents in binary mode) through one pooled urllib3 connection, with a
short timeout, a few retries and never following redirects. `turnout_payload_log_total{result}`
counts each entry once: `sent`, `failed` (after its retries), `dropped` (queue full). A sink
that hangs or is down holds the thread, never an answer: the queue fills and entries are dropped.

What it must never do: delay or fail a live answer, or hold more than `queue_size` entries.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import queue
import random
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

from prometheus_client import CollectorRegistry, Counter

from turnout_serving.dataplane import Answer, InferenceRequest
from turnout_serving.domain.payload_log import Entry, Protection, cloud_events, json_line
from turnout_serving.failure_runs import FailureRuns
from turnout_serving.metrics import BASE_LABELS
from turnout_serving.settings import ServingSettings

log = logging.getLogger("turnout_serving.payload_log")

RESULTS = ("sent", "failed", "dropped")
RETRY_FIRST_SECONDS = 0.1  # doubled after each failed attempt


class PayloadLogConfigError(ValueError):
    """The payload log is asked for but cannot work as configured (no salt to hash with)."""


class Sink(Protocol):
    def write(self, entry: Entry) -> None:
        """Deliver one entry; raises when it could not (the caller retries)."""
        ...

    def close(self) -> None: ...


class StdoutSink:
    """JSON lines on a stream (the process's stdout: the server's own logs go to stderr)."""

    def __init__(self, protection: Protection, stream: IO[str] | None = None) -> None:
        self._protection = protection
        self._stream = stream

    def write(self, entry: Entry) -> None:
        stream = self._stream or sys.stdout
        stream.write(json_line(entry, self._protection).decode() + "\n")
        stream.flush()

    def close(self) -> None:
        pass


class HttpSink:
    """POSTs to a receiver: the JSON document, or the request and response CloudEvents."""

    def __init__(
        self, url: str, protection: Protection, cloudevents: bool, timeout_seconds: float
    ) -> None:
        import urllib3

        self._url, self._protection, self._cloudevents = url, protection, cloudevents
        self._pool = urllib3.PoolManager(
            num_pools=1, maxsize=1, retries=False, timeout=urllib3.Timeout(total=timeout_seconds)
        )
        self._pending: dict[str, int] = {}  # request id -> events of it already delivered

    def write(self, entry: Entry) -> None:
        if not self._cloudevents:
            self._post({"content-type": "application/json"}, json_line(entry, self._protection))
            return
        events = cloud_events(entry, self._protection)
        done = self._pending.pop(entry.request_id, 0)
        for position, (headers, body) in enumerate(events[done:], start=done):
            try:
                self._post(headers, body)
            except Exception:
                self._pending[entry.request_id] = position  # a retry sends only what is left
                raise

    def _post(self, headers: dict[str, str], body: bytes) -> None:
        response = self._pool.request(
            "POST", self._url, body=body, headers=headers, redirect=False, preload_content=True
        )
        if not 200 <= response.status < 300:
            raise OSError(f"answered {response.status}: {response.data[:200]!r}")

    def close(self) -> None:
        self._pool.clear()


class _Stop:
    """Put on the queue to end the sender."""


class PayloadLog:
    """Sampling, the bounded queue and the one sender thread of a server's payload log."""

    def __init__(
        self,
        sink: Sink,
        registry: CollectorRegistry,
        labels: dict[str, str],
        *,
        sample_rate: float,
        queue_size: int,
        retries: int,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.sink, self.sample_rate, self.retries = sink, sample_rate, retries
        self._labels = labels
        self._draw = draw
        self._queue: queue.Queue[Entry | _Stop] = queue.Queue(queue_size)
        self._stopping = threading.Event()
        family = Counter(
            "turnout_payload_log",
            "Sampled live requests by what became of their log entry: sent, failed (after "
            "retries), dropped (queue full).",
            [*BASE_LABELS, "result"],
            registry=registry,
        )
        self._counts = {result: family.labels(**labels, result=result) for result in RESULTS}
        self._thread = threading.Thread(target=self._send_forever, name="payload-log", daemon=True)
        self._failures = FailureRuns(
            log,
            "payload log entries cannot be written (counted as failed; further failures are "
            "logged at debug level until one is): %s",
            "a payload log entry could not be written: %s",
            "payload log entries are written again",
        )

    @classmethod
    def from_settings(
        cls, settings: ServingSettings, registry: CollectorRegistry, labels: dict[str, str]
    ) -> PayloadLog | None:
        """The configured payload log, or None when it is off (sample rate 0)."""
        if settings.payload_log_sample_rate == 0:
            return None
        salt = b""
        if settings.payload_log_hash_salt_file is not None:
            try:
                salt = Path(settings.payload_log_hash_salt_file).read_bytes().strip()
            except OSError as exc:
                raise PayloadLogConfigError(f"cannot read the hash salt file: {exc}") from exc
        try:
            protection = Protection(
                frozenset(_names(settings.payload_log_redact)),
                frozenset(_names(settings.payload_log_hash)),
                salt,
            )
        except ValueError as exc:
            raise PayloadLogConfigError(f"payload log: {exc}") from exc
        sink: Sink
        if settings.payload_log_sink == "http":
            sink = HttpSink(
                settings.payload_log_url, protection,
                settings.payload_log_format == "cloudevents",
                settings.payload_log_timeout_seconds,
            )  # fmt: skip
        else:
            sink = StdoutSink(protection)
        return cls(
            sink, registry, labels,
            sample_rate=settings.payload_log_sample_rate,
            queue_size=settings.payload_log_queue_size,
            retries=settings.payload_log_retries,
        )  # fmt: skip

    # --- the request path -------------------------------------------------------------------

    def offer(self, request: InferenceRequest, answer: Answer, seconds: float) -> None:
        """Maybe log one live answer; returns at once and never raises."""
        try:
            if not request.live or self._draw() >= self.sample_rate:
                return
            entry = Entry(
                request_id=request.request_id,
                time=datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds"),
                protocol=request.protocol.value,
                path=request.path,
                latency_seconds=seconds,
                columns=answer.scored.columns,
                answer=answer.body,
                labels=self._labels,
            )
            self._queue.put_nowait(entry)
        except queue.Full:
            self._counts["dropped"].inc()
        except Exception:  # a live answer never fails for its log line
            log.exception("a live answer could not be offered to the payload log")

    # --- the sender thread ------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float) -> None:
        """Stop retrying, let the sender finish what is queued for up to `timeout` seconds."""
        self._stopping.set()
        with contextlib.suppress(queue.Full):  # a hung sink: the daemon thread ends with us
            self._queue.put(_Stop(), timeout=timeout)
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.sink.close()

    def _send_forever(self) -> None:
        while True:
            entry = self._queue.get()
            if isinstance(entry, _Stop):
                return
            failure = self._send(entry)
            self._counts["sent" if failure is None else "failed"].inc()
            self._failures.note(failure)

    def _send(self, entry: Entry) -> str | None:
        """Write one entry, retrying with backoff; None once written, else why not."""
        delay, failure = RETRY_FIRST_SECONDS, "not attempted"
        for attempt in range(self.retries + 1):
            try:
                self.sink.write(entry)
                return None
            except Exception as exc:
                failure = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries and not self._stopping.wait(delay):
                delay *= 2
                continue
            break
        return failure


def _names(columns: str) -> list[str]:
    return [name.strip() for name in columns.split(",") if name.strip()]
