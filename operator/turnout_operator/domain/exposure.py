"""How a ModelDeployment is reached: the active Service's type, port and metadata
(`spec.service`), an Ingress (`spec.ingress`) or a Gateway API HTTPRoute (`spec.httpRoute`), and
the URL in `status.url`.

The builders return plain dicts from their arguments; `expose(p)` is the planner's step that
compares what the cluster holds with what the spec asks for and says what to write. Each object
carries a record of what the operator wrote (`RECORD`, its canonical JSON): an unchanged record
means nothing to write, and the active Service's record names the annotations and labels the
operator set, so that dropping one from the spec removes it and leaves everyone else's alone.

The selector is never decided here: the active Service's selector stays the blue-green switch's.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import ApplyRoute, DeleteRoute, ExposeService
from turnout_operator.domain.manifests import labels, service_name
from turnout_operator.domain.observed import ExposureSeen
from turnout_operator.domain.plan_state import Pass
from turnout_operator.domain.spec import (
    HTTPRouteSpec,
    IngressSpec,
    ModelDeploymentSpec,
    ServiceSpec,
)
from turnout_operator.domain.status import ConditionStatus, RouteKind, set_condition

RECORD = "turnout.dev/exposure"
# A load balancer's address is written by its controller, which the operator does not watch:
# while the URL waits for one, the ModelDeployment is looked at again this often.
ADDRESS_POLL_SECONDS = 10
GATEWAY_GROUP = "gateway.networking.k8s.io"
# (group, version, plural) of each route kind, for the adapter's generic calls.
ROUTE_APIS: dict[RouteKind, tuple[str, str, str]] = {
    "Ingress": ("networking.k8s.io", "v1", "ingresses"),
    "HTTPRoute": (GATEWAY_GROUP, "v1", "httproutes"),
}


def record(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def service_record(service: ServiceSpec) -> str:
    return record(service.to_api())


def expose_service(body: dict[str, Any], service: ServiceSpec) -> dict[str, Any]:
    """The active Service `body` (manifests.build_service) with spec.service applied: its type,
    port, extra labels (the operator's win) and annotations, and the record of them."""
    meta = body["metadata"]
    return {
        **body,
        "metadata": {
            **meta,
            "labels": {**(service.labels or {}), **meta["labels"]},
            "annotations": {**(service.annotations or {}), RECORD: service_record(service)},
        },
        "spec": {
            **body["spec"],
            "type": service.type,
            "ports": [{**port, "port": service.port} for port in body["spec"]["ports"]],
        },
    }


def managed_keys(previous: str | None) -> tuple[set[str], set[str]]:
    """The annotation and label keys a Service's record says the operator set."""
    try:
        written = json.loads(previous or "{}")
    except ValueError:
        return set(), set()
    return set(written.get("annotations") or {}), set(written.get("labels") or {})


def build_ingress(name: str, namespace: str, ingress: IngressSpec, port: int) -> dict[str, Any]:
    """The Ingress `<name>`: the host (or any host) to the active Service, and the preview host,
    when asked, to the preview Service (always port 80)."""
    rules = [_ingress_rule(ingress.host, ingress.path, service_name(name, "active"), port)]
    if ingress.preview is not None:
        rules.append(_ingress_rule(ingress.preview.host, ingress.path,
                                   service_name(name, "preview"), 80))  # fmt: skip
    spec: dict[str, Any] = {"rules": rules}
    if ingress.class_name:
        spec["ingressClassName"] = ingress.class_name
    if ingress.tls is not None:
        hosts = [rule["host"] for rule in rules if "host" in rule]
        spec["tls"] = [{"hosts": hosts, "secretName": ingress.tls.secret_name}]
    return _route_object("networking.k8s.io/v1", "Ingress", name, namespace,
                         ingress.annotations, spec)  # fmt: skip


def _ingress_rule(host: str | None, path: str, service: str, port: int) -> dict[str, Any]:
    backend = {"service": {"name": service, "port": {"number": port}}}
    paths = [{"path": path, "pathType": "Prefix", "backend": backend}]
    rule: dict[str, Any] = {"http": {"paths": paths}}
    if host is not None:
        rule["host"] = host
    return rule


def build_http_route(name: str, namespace: str, route: HTTPRouteSpec, port: int) -> dict[str, Any]:
    """The HTTPRoute `<name>`: the path prefix on its hostnames to the active Service."""
    spec: dict[str, Any] = {
        "parentRefs": [ref.to_api() for ref in route.parent_refs],
        "rules": [{
            "matches": [{"path": {"type": "PathPrefix", "value": route.path}}],
            "backendRefs": [{"name": service_name(name, "active"), "port": port}],
        }],
    }  # fmt: skip
    if route.hostnames:
        spec["hostnames"] = list(route.hostnames)
    return _route_object(f"{GATEWAY_GROUP}/v1", "HTTPRoute", name, namespace,
                         route.annotations, spec)  # fmt: skip


def _route_object(
    api_version: str, kind: str, name: str, namespace: str,
    annotations: dict[str, str] | None, spec: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels(name),
            "annotations": {**(annotations or {}), RECORD: record(spec)},
        },
        "spec": spec,
    }


def build_route(
    kind: RouteKind, name: str, namespace: str, spec: ModelDeploymentSpec
) -> dict[str, Any] | None:
    """The route of `kind` the spec asks for; None when it asks for none."""
    port = spec.service.port
    if kind == "Ingress":
        return None if spec.ingress is None else build_ingress(name, namespace, spec.ingress, port)
    if spec.http_route is None:
        return None
    return build_http_route(name, namespace, spec.http_route, port)


def applied(
    seen: ExposureSeen, spec: ModelDeploymentSpec, name: str, namespace: str
) -> ExposureSeen:
    """What the cluster holds once a plan's exposure actions are carried out: what a second
    planning pass of the same reconcile sees, so that it asks for nothing again."""
    records = {kind: build_route(kind, name, namespace, spec) for kind in ROUTE_APIS}
    ingress, route = (None if r is None else r["metadata"]["annotations"][RECORD]
                      for r in records.values())  # fmt: skip
    return replace(
        seen,
        service=None if seen.service is None else service_record(spec.service),
        ingress=ingress,
        http_route=route if seen.gateway_api else None,
    )


def url(spec: ModelDeploymentSpec, name: str, namespace: str, seen: ExposureSeen) -> str:
    """The first of: the Ingress' URL (its host, else its address once assigned), the
    HTTPRoute's (its first hostname that is no wildcard), the LoadBalancer's address once
    assigned, the in-cluster URL."""
    ingress, route, port = spec.ingress, spec.http_route, spec.service.port
    if ingress is not None:
        host = ingress.host or seen.ingress_address
        if host is not None and not host.startswith("*"):
            scheme = "https" if ingress.tls is not None else "http"
            return f"{scheme}://{host}{ingress.path.rstrip('/')}"
    if route is not None and seen.gateway_api:
        host = next((h for h in route.hostnames if not h.startswith("*")), None)
        if host is not None:
            return f"{route.scheme}://{host}{route.path.rstrip('/')}"
    suffix = "" if port == 80 else f":{port}"
    if spec.service.type == "LoadBalancer" and seen.load_balancer:
        return f"http://{_host(seen.load_balancer)}{suffix}"
    return f"http://{service_name(name, 'active')}.{namespace}.svc{suffix}"


def _waits_for_address(spec: ModelDeploymentSpec, seen: ExposureSeen) -> bool:
    """Whether the URL would change once a load balancer reports its address."""
    if spec.ingress is not None and spec.ingress.host is None:
        return seen.ingress_address is None
    return (
        spec.service.type == "LoadBalancer"
        and seen.load_balancer is None
        and (spec.ingress is None and (spec.http_route is None or not spec.http_route.hostnames))
    )


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address  # an IPv6 address in a URL


def expose(p: Pass) -> None:
    """The planner's step: the active Service's exposure, the routes, status.url and the
    Exposed condition."""
    seen = p.observed.exposure
    if seen is None:
        return
    spec, status, name, namespace = p.spec, p.status, p.observed.name, p.observed.namespace
    if seen.service is not None and seen.service != service_record(spec.service):
        p.actions.append(ExposeService())
    kept: list[RouteKind] = []
    found: dict[RouteKind, str | None] = {"Ingress": seen.ingress, "HTTPRoute": seen.http_route}
    for kind, present in found.items():
        wanted = build_route(kind, name, namespace, spec)
        if wanted is None or (kind == "HTTPRoute" and not seen.gateway_api):
            if present is not None:
                p.actions.append(DeleteRoute(kind))
            continue
        kept.append(kind)
        if present != wanted["metadata"]["annotations"][RECORD]:
            p.actions.append(ApplyRoute(kind))
    status.routes = kept
    status.url = url(spec, name, namespace, seen) if status.active_color else None
    if status.active_color and _waits_for_address(spec, seen):
        p.wakeups.append(p.after(ADDRESS_POLL_SECONDS))
    _exposed_condition(p, seen)


def _exposed_condition(p: Pass, seen: ExposureSeen) -> None:
    spec, status = p.spec, p.status
    if spec.ingress is None and spec.http_route is None:
        status.conditions = [c for c in status.conditions if c.type != R.EXPOSED]
        return
    verdict: tuple[ConditionStatus, str, str]
    if spec.http_route is not None and not seen.gateway_api:
        verdict = ("False", R.GATEWAY_API_MISSING,
                   f"spec.httpRoute: the cluster serves no {GATEWAY_GROUP}/v1 HTTPRoute (install "
                   "the Gateway API CRDs; the operator looks again at each resync)")  # fmt: skip
        previous = status.condition(R.EXPOSED)
        if previous is None or previous.reason != R.GATEWAY_API_MISSING:
            p.emit(True, R.GATEWAY_API_MISSING, verdict[2])
    else:
        verdict = ("True", R.ROUTED, " and ".join(status.routes) + " to the active Service")
    value, reason, message = verdict
    status.conditions = set_condition(
        status.conditions, R.EXPOSED, value, reason, message, p.now, p.observed.generation
    )
