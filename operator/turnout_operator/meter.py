"""Carrying out the analysis actions: `Measure` (the serving pods' own /metrics, and the
Prometheus query of a provider), `StartShadow` / `StopShadow` (the active pods' /admin/shadow).

Pods are reached at their IPs from inside the cluster, through the API server's pod proxy from
outside (as the smoke test reaches the preview Service). A measurement never raises: what could
not be read becomes an Error measurement saying which pod and why, and the analysis counts it as
Argo Rollouts counts a provider error. Mirroring is best effort: a pod that refuses is logged,
the analysis then sees fewer compared requests, and the lease ends any mirroring this operator
stops renewing.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Any, Protocol

import requests

from turnout_operator.domain.actions import Measure, StartShadow, StopShadow
from turnout_operator.domain.analysis import ColorFigures, Measurement
from turnout_operator.domain.manifests import ADMIN_TOKEN_HEADER, service_name
from turnout_operator.domain.spec import Color, PrometheusQuery
from turnout_operator.pod_metrics import Scrapes, figures, read

log = logging.getLogger("turnout_operator.meter")


class Pods(Protocol):
    """The part of the Kubernetes adapter the meter needs."""

    def ready_pods(self, namespace: str, name: str, color: Color) -> list[tuple[str, str]]: ...

    def pod_request(
        self, namespace: str, pod: str, ip: str, method: str, path: str, direct: bool,
        timeout: float, headers: dict[str, str] | None = None, body: Any = None,
    ) -> tuple[int, str]: ...  # fmt: skip


class Unreadable(Exception):
    """What keeps a measurement from being taken."""


class Meter:
    def __init__(self, pods: Pods, timeout: float, scrapes: Scrapes | None = None) -> None:
        self.pods, self.timeout = pods, timeout
        self.scrapes = scrapes or Scrapes()

    def measure(
        self, namespace: str, name: str, action: Measure, direct: bool, now: datetime
    ) -> Measurement:
        try:
            colors = {color: self._color(namespace, name, color, direct) for color in action.colors}
            result = query_prometheus(action.query, self.timeout) if action.query else None
        except Unreadable as exc:
            return Measurement(action.gate, action.version, now, error=str(exc))
        return Measurement(action.gate, action.version, now, colors, result)

    def _color(self, namespace: str, name: str, color: Color, direct: bool) -> ColorFigures:
        pods = self.pods.ready_pods(namespace, name, color)
        if not pods:
            raise Unreadable(f"no ready pod of {color} to read metrics from")
        readings = []
        for pod, ip in pods:
            try:
                code, text = self.pods.pod_request(
                    namespace, pod, ip, "GET", "/metrics", direct, self.timeout
                )
                if code != 200:
                    raise Unreadable(f"{color} pod {pod}: /metrics answered HTTP {code}")
                reading = read(text)
            except (requests.RequestException, OSError, ValueError) as exc:
                raise Unreadable(f"{color} pod {pod}: /metrics could not be read: {exc}") from exc
            readings.append(self.scrapes.interval(namespace, pod, reading))
        return figures(readings)

    def start_shadow(
        self, namespace: str, name: str, action: StartShadow, direct: bool, admin_token: str,
        inference_token: str | None,
    ) -> None:  # fmt: skip
        """Ask each ready pod of the active color to mirror to the preview Service."""
        body: dict[str, Any] = {
            "target": f"http://{service_name(name, 'preview')}.{namespace}.svc",
            "percent": action.percent,
            "maxRequestsPerSecond": action.max_requests_per_second,
            "ttlSeconds": action.lease_seconds,
        }
        if inference_token is not None:
            body["token"] = inference_token
        self._admin(namespace, name, action.color, "PUT", direct, admin_token, body)

    def stop_shadow(
        self, namespace: str, name: str, action: StopShadow, direct: bool, admin_token: str
    ) -> None:
        self._admin(namespace, name, action.color, "DELETE", direct, admin_token, None)

    def _admin(
        self, namespace: str, name: str, color: Color, method: str, direct: bool, token: str,
        body: dict[str, Any] | None,
    ) -> None:  # fmt: skip
        for pod, ip in self.pods.ready_pods(namespace, name, color):
            try:
                code, text = self.pods.pod_request(
                    namespace, pod, ip, method, "/admin/shadow", direct, self.timeout,
                    {ADMIN_TOKEN_HEADER: token}, body,
                )  # fmt: skip
            except (requests.RequestException, OSError) as exc:
                code, text = 0, str(exc)
            if code != 200:
                log.warning("%s /admin/shadow of %s/%s: HTTP %s: %s", method, namespace, pod,
                            code, text[:300])  # fmt: skip


def query_prometheus(query: PrometheusQuery, timeout: float) -> float | None:
    """The query's number (a scalar, or the first sample of a vector); None: no sample."""
    try:
        answer = requests.get(
            f"{query.address.rstrip('/')}/api/v1/query", params={"query": query.query},
            timeout=timeout,
        )  # fmt: skip
        reply = answer.json()
    except (requests.RequestException, ValueError) as exc:
        raise Unreadable(f"Prometheus at {query.address}: {exc}") from exc
    if answer.status_code != 200 or reply.get("status") != "success":
        raise Unreadable(
            f"Prometheus at {query.address} answered HTTP {answer.status_code}: "
            f"{reply.get('errorType', '')} {reply.get('error', '')}".strip()
        )
    data = reply.get("data") or {}
    if data.get("resultType") == "scalar":
        value = data["result"][1]
    elif data.get("resultType") == "vector" and data.get("result"):
        value = data["result"][0]["value"][1]
    elif data.get("resultType") == "vector":
        return None
    else:
        raise Unreadable(f"Prometheus at {query.address}: a {data.get('resultType')} result, not "
                         "a number")  # fmt: skip
    number = float(value)
    return number if math.isfinite(number) else None
