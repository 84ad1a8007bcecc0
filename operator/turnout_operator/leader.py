"""Leader election: the Lease's I/O around domain/leader.py's decisions, on a thread of its own.

Only the leader runs kopf (watches, reconciles, the webhook endpoint); a standby reads the Lease
every retry period and takes it when its holder released it (a clean stop) or stopped renewing
it (a crash) for the lease's duration. A leader that cannot renew within the renew deadline
calls `on_lost`, which ends the process (as controller-runtime does): its pod restarts as a
standby, and nothing it was doing can overlap the next leader's work.

It never decides: what to write and when to give up is `domain.leader.decide`'s.

`PodMark` labels the leader's own pod `turnout.dev/leader=true` (and takes the label off when it
stops leading, and at start, after a restart of the pod's container), so a Service that selects
it (the chart's registry webhook Service) sends its traffic to the leader alone: a standby runs
no webhook endpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from turnout_operator.domain import leader as L

log = logging.getLogger("turnout_operator.leader")
LEADER_LABEL = "turnout.dev/leader"


def _micro_time(wall: datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339, microseconds, UTC)."""
    return wall.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, identity: str, timing: L.Timing,
        *, on_change: Callable[[bool], None], on_lost: Callable[[str], None],
        mark: PodMark | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:  # fmt: skip
        self.leases = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity, self.timing = namespace, name, identity, timing
        self.on_change, self.on_lost, self.clock, self.wall = on_change, on_lost, clock, wall
        self.mark = mark
        self.memory = L.Memory()
        self.elected = threading.Event()
        self.stopped = threading.Event()
        self._acquired: str | None = None  # the acquireTime we wrote
        self._written: tuple[str, int] | None = None  # (resourceVersion, transitions) we wrote
        self._thread = threading.Thread(target=self._run, name="turnout-leader", daemon=True)

    def start(self) -> None:
        log.info("leader election on lease %s/%s as %s", self.namespace, self.name, self.identity)
        self._thread.start()

    def stop(self) -> None:
        """Stop campaigning and renewing, then release the Lease if we hold it: a standby takes
        it at its next retry instead of waiting out the lease."""
        self.stopped.set()
        self._thread.join(timeout=self.timing.renew_deadline_seconds)
        if self.elected.is_set() and self._written is not None:
            version, transitions = self._written
            released = self._body(version, "", 1, transitions, acquired=self._acquired)
            try:
                self.leases.replace_namespaced_lease(
                    self.name, self.namespace, released, _request_timeout=self.timing.retry_seconds
                )
                log.info("released lease %s/%s", self.namespace, self.name)
            except Exception as exc:  # a standby then waits out the lease
                log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)
            self.on_change(False)
            if self.mark is not None:
                self.mark.set(False)

    def _run(self) -> None:
        while not self.stopped.is_set():
            now = self.clock()
            decision, self.memory = L.decide(
                self._read(now), self.identity, now, self.memory, self.timing
            )
            if isinstance(decision, L.StepDown):
                log.error("lost the lease %s/%s: %s", self.namespace, self.name, decision.reason)
                self.on_lost(decision.reason)
                return
            if isinstance(decision, L.Acquire | L.Renew) and self._write(decision, now):
                self.memory = self.memory.written(now)
                if not self.elected.is_set():
                    log.info("leading (lease %s/%s)", self.namespace, self.name)
                    self.elected.set()
                    self.on_change(True)
                if self.mark is not None:  # once it holds (a no-op after that)
                    self.mark.set(True)
            self.stopped.wait(L.pause(self.clock(), self.memory, self.timing))

    def _timeout(self, now: float) -> float:
        """A request never outlives the renew deadline: a leader must be able to step down."""
        if self.memory.renewed_at is None:
            return self.timing.retry_seconds
        left = self.memory.renewed_at + self.timing.renew_deadline_seconds - now
        return max(0.1, min(self.timing.retry_seconds, left))

    def _read(self, now: float) -> L.Record | str | None:
        try:
            lease = self.leases.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self._timeout(now)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            log.warning("reading lease %s/%s: %s %s", self.namespace, self.name, exc.status,
                        exc.reason)  # fmt: skip
            return L.UNREADABLE
        except Exception as exc:  # connection refused, timeout
            log.warning("reading lease %s/%s: %s", self.namespace, self.name, exc)
            return L.UNREADABLE
        spec = lease.spec
        return L.Record(
            holder=spec.holder_identity or "",
            lease_seconds=float(spec.lease_duration_seconds or self.timing.lease_seconds),
            transitions=int(spec.lease_transitions or 0),
            version=lease.metadata.resource_version,
        )

    def _write(self, decision: L.Acquire | L.Renew, now: float) -> bool:
        if isinstance(decision, L.Acquire):
            self._acquired = _micro_time(self.wall())
        body = self._body(decision.version, self.identity, round(self.timing.lease_seconds),
                          decision.transitions, acquired=self._acquired)  # fmt: skip
        timeout = self._timeout(now)
        try:
            if decision.version is None:
                written = self.leases.create_namespaced_lease(
                    self.namespace, body, _request_timeout=timeout
                )
            else:
                written = self.leases.replace_namespaced_lease(
                    self.name, self.namespace, body, _request_timeout=timeout
                )
        except ApiException as exc:  # 409: another candidate wrote first
            level = logging.INFO if exc.status == 409 else logging.WARNING
            log.log(level, "writing lease %s/%s: %s %s", self.namespace, self.name, exc.status,
                    exc.reason)  # fmt: skip
            return False
        except Exception as exc:
            log.warning("writing lease %s/%s: %s", self.namespace, self.name, exc)
            return False
        self._written = (written.metadata.resource_version, decision.transitions)
        return True

    def _body(
        self, version: str | None, holder: str, seconds: int, transitions: int,
        acquired: str | None,
    ) -> dict[str, Any]:  # fmt: skip
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if version is not None:
            metadata["resourceVersion"] = version
        spec = {"holderIdentity": holder, "leaseDurationSeconds": seconds,
                "leaseTransitions": transitions, "renewTime": _micro_time(self.wall())}  # fmt: skip
        if acquired is not None:
            spec["acquireTime"] = acquired
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
                "spec": spec}  # fmt: skip


class PodMark:
    """The `turnout.dev/leader` label of this replica's own pod: set while it leads, absent
    otherwise. Best effort: a pod it cannot label is logged and tried again at the next renewal;
    meanwhile only the traffic of Services that select the label (registry webhooks, which
    polling backs up) misses the leader."""

    def __init__(self, api: client.ApiClient, namespace: str, pod: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace, self.pod = namespace, pod
        self.carries: bool | None = None  # the label as last written; None: not known

    def set(self, leading: bool) -> None:
        if self.carries == leading:
            return
        patch = {"metadata": {"labels": {LEADER_LABEL: "true" if leading else None}}}
        try:
            self.core.patch_namespaced_pod(self.pod, self.namespace, patch, _request_timeout=5)
        except Exception as exc:
            log.warning("could not %s the label %s of pod %s/%s: %s",
                        "set" if leading else "remove", LEADER_LABEL, self.namespace, self.pod,
                        exc)  # fmt: skip
            return
        self.carries = leading
