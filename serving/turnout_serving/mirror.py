"""The active side of shadow traffic: copy a share of live answers to the preview.

`Runtime.infer` hands every live answer to `Mirror.offer` on the event loop. With no lease
(the default) that is one attribute test. Under a lease (`PUT /admin/shadow`), `Lease.decide`
draws and spends the token bucket, and a copy (the request body, its content type, protocol,
path and request id, the answer body and the scoring time) goes onto a bounded queue: O(1),
never blocking, never raising into the request. A full queue (by count, or by the bytes it
holds) drops the copy and counts it.

A background task sends the copies to the target's `POST /shadow` in batches: it waits for one
of `SENDERS` sending slots, takes the first copy, lets up to `LINGER_SECONDS` pass for more to
arrive (less once a full batch waits), and posts what came (up to `MAX_BATCH_COPIES` copies,
`MAX_BATCH_BYTES` of bodies) through one pooled `aiohttp.ClientSession`, with a short timeout
and never following redirects. A batch the target does not take with a 2xx in time counts its
copies as `failed`. Batching is what keeps
mirroring cheap: an HTTP post costs the active about 70 µs of CPU (aiohttp; httpx takes 600 µs),
and copies arriving together share one. While every slot is busy nothing is taken from the
queue, so a slow target fills it and further copies are dropped, never held in memory.

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
from typing import TYPE_CHECKING, Any

from turnout_serving.dataplane import Answer, InferenceRequest
from turnout_serving.domain.shadow import (
    MAX_BATCH_COPIES,
    Decision,
    Lease,
    ShadowConfig,
    ShadowCopy,
    encode_batch,
)
from turnout_serving.failure_runs import FailureRuns
from turnout_serving.metrics import ShadowMetrics

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("turnout_serving.shadow")

SENDERS = 4  # batches in flight to the preview at once
LINGER_SECONDS = 0.1  # a batch waits at most this long after its first copy for more to join it
LINGER_STEP_SECONDS = 0.01  # how often it looks whether a full batch waits
MAX_BATCH_BYTES = 2**20  # request and answer bodies in one batch (a larger copy goes alone)
MAX_QUEUED_BYTES = 64 * 2**20  # bodies waiting, in all
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

    def wire(self) -> ShadowCopy:
        request = self.request
        return ShadowCopy(
            protocol=request.protocol.value, content_type=request.content_type,
            path=request.path, request_id=request.request_id, body=request.body,
            active_answer=self.answer, active_latency_seconds=self.seconds,
        )  # fmt: skip


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
        linger_seconds: float = LINGER_SECONDS,
    ) -> None:
        self.metrics = metrics
        self._timeout, self._linger = timeout_seconds, linger_seconds
        self._clock, self._draw = clock, draw
        self._lease: Lease | None = None
        self._off_because = "never started"
        self._queue: asyncio.Queue[_Copy] = asyncio.Queue(queue_size)
        self._waiting = 0  # copies queued, or taken for a batch not posted yet
        self._waiting_bytes = 0
        self._sending = 0  # copies in batches being posted
        self._client: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(SENDERS)
        self._tasks: set[asyncio.Task[None]] = set()  # the batcher and the posts in flight
        self._failures = FailureRuns(
            log,
            "shadow copies could not be sent (counted as failed; further failures are logged "
            "at debug level until a batch goes through): %s",
            "shadow copies could not be sent: %s",
            "shadow copies reach the preview again",
        )

    # --- the admin endpoints ----------------------------------------------------------------

    def configure(self, config: ShadowConfig) -> dict[str, Any]:
        """Start mirroring, or renew and reconfigure the lease; the state after."""
        now = self._clock()
        lease = self._current(now)
        self._lease = lease.renewed(config, now) if lease else Lease(config, now)
        if self._client is None:
            import aiohttp  # here: a server that never mirrors spares its import (175 ms, 9 MB)

            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=SENDERS),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                trust_env=False,  # pod to pod: no proxy from the environment, no .netrc
            )
            self._spawn(self._batch_copies())
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
        found["queued"], found["sending"] = self._waiting, self._sending
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
        if self._waiting_bytes + copy.size > MAX_QUEUED_BYTES:
            self.metrics.count("dropped_queue_full")
            return
        try:
            self._queue.put_nowait(copy)
        except asyncio.QueueFull:
            self.metrics.count("dropped_queue_full")
            return
        self._waiting += 1
        self._waiting_bytes += copy.size

    # --- sending ----------------------------------------------------------------------------

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _batch_copies(self) -> None:
        """Forever: a free slot, then a batch, posted in the background."""
        carried: _Copy | None = None  # taken, but too big for the last batch
        while True:
            await self._slots.acquire()
            try:
                first = carried or await self._queue.get()
                carried = None
                await self._gather(self._linger)
                batch, size = [first], first.size
                while len(batch) < MAX_BATCH_COPIES and not self._queue.empty():
                    copy = self._queue.get_nowait()
                    if size + copy.size > MAX_BATCH_BYTES:
                        carried = copy
                        break
                    batch.append(copy)
                    size += copy.size
            except BaseException:
                self._slots.release()
                raise
            self._spawn(self._post(batch))

    async def _gather(self, seconds: float) -> None:
        """Let up to `seconds` pass for more copies to join a batch, but no longer than until a
        full batch waits: at a high rate, lingering would cap the throughput at one batch per
        linger and let the queue overflow meanwhile."""
        loop = asyncio.get_running_loop()  # real waiting: the loop's clock, not the lease's
        deadline = loop.time() + seconds
        while self._queue.qsize() < MAX_BATCH_COPIES - 1 and (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(left, LINGER_STEP_SECONDS))

    async def _post(self, batch: list[_Copy]) -> None:
        """Post one batch (holding a slot); count each copy."""
        try:
            wanted = self._still_wanted(batch)
            self._taken(batch)
            self._sending += len(wanted)
            try:
                if wanted:
                    try:
                        failure = await self._send(wanted)
                    except Exception as exc:  # a bug here must not lose the count
                        log.exception("shadow copies could not be posted")
                        failure = f"{type(exc).__name__}: {exc}"
                    self._note(failure, len(wanted))
            finally:
                self._sending -= len(wanted)
        finally:
            self._slots.release()

    def _taken(self, batch: list[_Copy]) -> None:
        self._waiting -= len(batch)
        self._waiting_bytes -= sum(copy.size for copy in batch)

    def _still_wanted(self, batch: list[_Copy]) -> list[_Copy]:
        """The copies taken under a lease that still sends where it did (renewals included);
        the others are counted as `dropped_stopped`."""
        lease = self._current(self._clock())
        sends_to = (lease.config.target, lease.config.token) if lease else None
        wanted = [c for c in batch if (c.config.target, c.config.token) == sends_to]
        for _ in range(len(batch) - len(wanted)):
            self.metrics.count("dropped_stopped")
        return wanted

    async def _send(self, batch: list[_Copy]) -> str | None:
        """Post a batch to its target; None when the target took it, else why not."""
        import aiohttp

        assert self._client is not None
        config = batch[0].config
        headers = {"content-type": "application/json"}
        if config.token is not None:
            headers["authorization"] = f"Bearer {config.token.get_secret_value()}"
        body = encode_batch([copy.wire() for copy in batch])
        try:
            async with self._client.post(
                f"{config.target}/shadow", data=body, headers=headers, allow_redirects=False
            ) as response:
                answer = await response.read()  # read to the end: the connection is reused
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not 200 <= response.status < 300:
            return f"answered {response.status}: {answer[:200].decode(errors='replace')}"
        return None

    def _note(self, failure: str | None, copies: int) -> None:
        """Count a batch's copies; log the first failure of a run of them, and the recovery."""
        for _ in range(copies):
            self.metrics.count("mirrored" if failure is None else "failed")
        self._failures.note(failure)

    async def close(self) -> None:
        """Stop sending and close the connections (server shutdown)."""
        self.stop("the server is shutting down")
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.close()
            self._client = None
