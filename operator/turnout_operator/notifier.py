"""Sending notifications, in the background, so that a slow or dead receiver never slows a rollout.

Reconciles only `send`: the notification is rendered and put on its channel's bounded queue, or
counted as `overflow` and dropped when the queue is full; it never blocks. Each channel has one
sender thread, so a receiver that is down holds up its own channel only, and a channel's
notifications arrive in the order they were sent (a rollout's `started` before its `promoted`).
A POST that fails for a reason a retry can cure (no connection, a timeout, 408, 429, a 5xx) is
tried again after a backoff doubling from `retry_seconds` (at most MAX_RETRY_SECONDS), at most
`retries` times; then it is dropped (`dropped`). Any other answer but a 2xx is not retried
(`dropped` too). Each POST times out after `timeout_seconds`.

What a restart loses: the notifications still queued or waiting for a retry. Delivery is at
least once otherwise: a reconcile that fails after sending plans, and sends, the same moment
again; the notification's id is then the same, so receivers can drop the repeat.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence

import requests

from turnout_operator.domain.formats import render
from turnout_operator.domain.notifications import Channel, Notification

log = logging.getLogger("turnout_operator.notifier")
MAX_RETRY_SECONDS = 30.0
RETRYABLE_STATUS = frozenset({408, 425, 429})
RESULTS = ("sent", "retried", "dropped", "overflow")

Count = Callable[[str, str], None]  # (channel, result)


class Notifier:
    def __init__(
        self, channels: Sequence[Channel], *, count: Count = lambda _c, _r: None,
        queue_size: int = 100, retries: int = 5, retry_seconds: float = 1.0,
        timeout_seconds: float = 5.0,
    ) -> None:  # fmt: skip
        self._senders = {
            c.name: _Sender(c, count, queue_size, retries, retry_seconds, timeout_seconds)
            for c in channels
        }

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self._senders)

    def send(self, channel: str, notification: Notification) -> None:
        """Queue `notification` for `channel`; never blocks. An unknown channel is logged (the
        spec check makes it an invalid spec before any plan names it)."""
        sender = self._senders.get(channel)
        if sender is None:
            log.warning("no notification channel %r: %s not sent", channel, notification.event)
            return
        sender.put(notification)

    def idle(self, timeout: float) -> bool:
        """Wait until every channel has nothing queued or in flight (tests, shutdown)."""
        return all(s.idle(timeout) for s in self._senders.values())

    def stop(self) -> None:
        for sender in self._senders.values():
            sender.stop()


class _Sender:
    """One channel's queue and thread."""

    def __init__(
        self, channel: Channel, count: Count, size: int, retries: int, retry_seconds: float,
        timeout: float,
    ) -> None:  # fmt: skip
        self.channel, self._count = channel, count
        self._retries, self._first, self._timeout = retries, retry_seconds, timeout
        self._queue: queue.Queue[tuple[str, bytes, str]] = queue.Queue(size)
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def put(self, notification: Notification) -> None:
        content_type, body = render(notification, self.channel.format)
        try:
            self._queue.put_nowait((content_type, body, notification.event))
        except queue.Full:
            log.warning("notification channel %s: queue full, %s dropped", self.channel.name,
                        notification.event)  # fmt: skip
            self._count(self.channel.name, "overflow")
            return
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"turnout-notify-{self.channel.name}", daemon=True
                )
                self._thread.start()

    def idle(self, timeout: float) -> bool:
        done = threading.Event()

        def join() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=join, daemon=True).start()
        return done.wait(timeout)

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stopped.is_set():
                try:
                    item = self._queue.get(timeout=1.0)
                except queue.Empty:
                    continue
                try:
                    self._deliver(session, *item)
                except Exception:  # a bug must not kill the sender thread
                    log.exception("notification channel %s failed", self.channel.name)
                finally:
                    self._queue.task_done()

    def _deliver(
        self, session: requests.Session, content_type: str, body: bytes, event: str
    ) -> None:
        name, delay = self.channel.name, self._first
        for attempt in range(self._retries + 1):
            retry, why = self._post(session, content_type, body)
            if why is None:
                self._count(name, "sent")
                return
            if not retry or attempt == self._retries or self._stopped.is_set():
                log.warning("notification channel %s: %s dropped after %d attempt(s): %s", name,
                            event, attempt + 1, why)  # fmt: skip
                self._count(name, "dropped")
                return
            log.info("notification channel %s: %s failed (%s), retrying in %.1f s", name, event,
                     why, delay)  # fmt: skip
            self._count(name, "retried")
            if self._stopped.wait(delay):
                self._count(name, "dropped")
                return
            delay = min(MAX_RETRY_SECONDS, delay * 2)

    def _post(
        self, session: requests.Session, content_type: str, body: bytes
    ) -> tuple[bool, str | None]:
        """(whether a retry may cure it, why it failed); why is None when it was delivered."""
        try:
            answer = session.post(self.channel.url, data=body, timeout=self._timeout,
                                  headers={"Content-Type": content_type})  # fmt: skip
        except requests.RequestException as exc:
            return True, type(exc).__name__  # the URL is a credential: not the message
        if answer.ok:
            return False, None
        status = answer.status_code
        return status >= 500 or status in RETRYABLE_STATUS, f"HTTP {status}"
