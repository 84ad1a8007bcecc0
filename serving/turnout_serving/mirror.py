"""The active side of shadow traffic: copy a share of live answers to the preview.

`Runtime.infer` hands every live answer to `Mirror.offer` on the event loop. With no lease
(the default) that is one attribute test. Under a lease (`PUT /admin/shadow`), `Lease.decide`
draws and spends the token bucket, and a copy (the request body, its content type, protocol,
path and request id, the answer body and the scoring time) goes onto a bounded queue: O(1),
never blocking, never raising into the request. A full queue (by count, or by the bytes it
holds) drops the copy and counts it. `SENDERS` background tasks post the copies to the
target's `POST /shadow` through one pooled `aiohttp.ClientSession` with a short timeout, never
following redirects; a target that does not answer 2xx in time is counted as `failed`. (aiohttp,
not httpx: a post costs the active about 70 µs of CPU with it and 600 µs with httpx, measured
on this machine, and every copy is CPU the live traffic does not get.)

What it must never do: delay or fail a live answer, hold more than its bounds, or keep sending
after the lease ended (copies still queued then are dropped as `dropped_stopped`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from turnout_serving.dataplane import Answer, InferenceRequest
from turnout_serving.domain.shadow import Decision, Lease, ShadowConfig, ShadowCopy, encode_copy
from turnout_serving.http import REQUEST_ID_HEADER
from turnout_serving.metrics import ShadowMetrics

log = logging.getLogger("turnout_serving.shadow")

SENDERS = 4  # copies in flight to the preview at once
MAX_QUEUED_BYTES = 64 * 2**20  # request and answer bodies waiting, in all
ACTIVE_RESULTS = ("mirrored", "dropped_queue_full", "dropped_rate", "dropped_stopped", "failed")


@dataclass(frozen=True)
class _Copy:
    request: InferenceRequest
    answer: bytes
    seconds: float
    config: ShadowConfig  # of the lease it was taken under: its target and token

    @property
    def size(self) -> int:
        return len(self.request.body) + len(self.answer)


class Mirror:
    """Mirroring of one server's live answers, as the last admin PUT configured it."""

    def __init__(
        self,
        metrics: ShadowMetrics,
        *,
        queue_size: int,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.metrics = metrics
        self._timeout = timeout_seconds
        self._clock, self._draw = clock, draw
        self._lease: Lease | None = None
        self._off_because = "never started"
        self._queue: asyncio.Queue[_Copy] = asyncio.Queue(queue_size)
        self._queued_bytes = 0
        self._sending = 0
        self._client: aiohttp.ClientSession | None = None
        self._senders: list[asyncio.Task[None]] = []
        self._failing = False

    # --- the admin endpoints ----------------------------------------------------------------

    def configure(self, config: ShadowConfig) -> dict[str, Any]:
        """Start mirroring, or renew and reconfigure the lease; the state after."""
        now = self._clock()
        lease = self._current(now)
        self._lease = lease.renewed(config, now) if lease else Lease(config, now)
        if not self._senders:
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=SENDERS),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                trust_env=False,  # pod to pod: no proxy from the environment, no .netrc
            )
            self._senders = [asyncio.create_task(self._send_copies()) for _ in range(SENDERS)]
        if lease is None:
            log.info("mirroring %g%% of live answers (at most %g a second) to %s for %g s",
                     config.percent, config.max_requests_per_second, config.target,
                     config.ttl_seconds)  # fmt: skip
        return self.state()

    def stop(self, because: str) -> dict[str, Any]:
        if self._lease is not None:
            log.info("mirroring to %s stopped: %s", self._lease.config.target, because)
            self._lease, self._off_because = None, because
        return self.state()

    def state(self) -> dict[str, Any]:
        lease = self._current(self._clock())
        found: dict[str, Any] = {"mirroring": lease is not None}
        if lease is None:
            found["reason"] = self._off_because
        else:
            config = lease.config
            found.update({
                "target": config.target,
                "percent": config.percent,
                "maxRequestsPerSecond": config.max_requests_per_second,
                "ttlSeconds": config.ttl_seconds,
                "expiresInSeconds": round(lease.expires_at - self._clock(), 3),
                "tokenSet": config.token is not None,
            })  # fmt: skip
        counts = self.metrics.counts
        found["queued"], found["sending"] = self._queue.qsize(), self._sending
        found["counts"] = {result: counts[result] for result in ACTIVE_RESULTS}
        return found

    def _current(self, now: float) -> Lease | None:
        """The lease, unless it has run out (then mirroring stops here)."""
        if self._lease is not None and self._lease.expired(now):
            self.stop("the lease expired (no PUT within ttlSeconds)")
        return self._lease

    # --- the request path -------------------------------------------------------------------

    def offer(self, request: InferenceRequest, answer: Answer, seconds: float) -> None:
        """Maybe copy one live answer; returns at once."""
        lease = self._lease
        if lease is None:
            return
        try:
            decision = lease.decide(self._clock(), self._draw())
            if decision is Decision.SEND:
                self._enqueue(_Copy(request, answer.body, seconds, lease.config))
            elif decision is Decision.DROPPED_RATE:
                self.metrics.count("dropped_rate")
            elif decision is Decision.EXPIRED:
                self._current(self._clock())
        except Exception:  # a live answer never fails for its copy
            log.exception("a live answer could not be offered for mirroring")

    def _enqueue(self, copy: _Copy) -> None:
        if self._queued_bytes + copy.size > MAX_QUEUED_BYTES:
            self.metrics.count("dropped_queue_full")
            return
        try:
            self._queue.put_nowait(copy)
        except asyncio.QueueFull:
            self.metrics.count("dropped_queue_full")
            return
        self._queued_bytes += copy.size

    # --- sending ----------------------------------------------------------------------------

    async def _send_copies(self) -> None:
        while True:
            copy = await self._queue.get()
            self._queued_bytes -= copy.size
            if not self._still_wanted(copy):
                self.metrics.count("dropped_stopped")
                continue
            self._sending += 1
            try:
                self._note(await self._send(copy))
            finally:
                self._sending -= 1

    def _still_wanted(self, copy: _Copy) -> bool:
        """Whether a lease is in force that sends where the copy's did (renewals included)."""
        lease = self._current(self._clock())
        if lease is None:
            return False
        return (lease.config.target, lease.config.token) == (copy.config.target, copy.config.token)

    async def _send(self, copy: _Copy) -> str | None:
        """Post one copy; None when the target took it, else why not."""
        assert self._client is not None
        request, config = copy.request, copy.config
        envelope = encode_copy(ShadowCopy(
            protocol=request.protocol.value, content_type=request.content_type,
            path=request.path, request_id=request.request_id, body=request.body,
            active_answer=copy.answer, active_latency_seconds=copy.seconds,
        ))  # fmt: skip
        headers = {"content-type": "application/json", REQUEST_ID_HEADER: request.request_id}
        if config.token is not None:
            headers["authorization"] = f"Bearer {config.token.get_secret_value()}"
        try:
            async with self._client.post(
                f"{config.target}/shadow", data=envelope, headers=headers, allow_redirects=False
            ) as response:
                answer = await response.read()  # read to the end: the connection is reused
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not 200 <= response.status < 300:
            return f"answered {response.status}: {answer[:200].decode(errors='replace')}"
        return None

    def _note(self, failure: str | None) -> None:
        """Count a send; log the first failure of a run of them, and the recovery."""
        self.metrics.count("mirrored" if failure is None else "failed")
        if failure is not None and not self._failing:
            log.warning("a shadow copy could not be sent (counted as failed; further failures "
                        "are logged at debug level until one succeeds): %s", failure)  # fmt: skip
        elif failure is not None:
            log.debug("a shadow copy could not be sent: %s", failure)
        elif self._failing:
            log.info("shadow copies reach the preview again")
        self._failing = failure is not None

    async def close(self) -> None:
        """Stop sending and close the connections (server shutdown)."""
        self.stop("the server is shutting down")
        for task in self._senders:
            task.cancel()
        for task in self._senders:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._senders = []
        if self._client is not None:
            await self._client.close()
            self._client = None
