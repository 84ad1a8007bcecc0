"""Exposure (domain/exposure.py): the active Service as spec.service says, the Ingress and the
HTTPRoute as built, what the planner writes and removes, and the URL users read in status.url."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import ApplyRoute, DeleteRoute, Emit, ExposeService
from turnout_operator.domain.exposure import (
    RECORD,
    applied,
    build_http_route,
    build_ingress,
    expose_service,
    service_record,
    url,
)
from turnout_operator.domain.manifests import Defaults, build_service
from turnout_operator.domain.observed import ColorState, ExposureSeen, Observed
from turnout_operator.domain.planner import Plan, plan
from turnout_operator.domain.spec import (
    HTTPRouteSpec,
    IngressSpec,
    ModelDeploymentSpec,
    ServiceSpec,
)
from turnout_operator.domain.status import HistoryEntry, ModelDeploymentStatus
from turnout_operator.domain.validation import check

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
BASE = {"model": {"name": "bikes", "version": "3"}, "replicas": 1}


def spec(**fields: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({**BASE, **fields})


def test_spec_service_sets_type_port_labels_and_annotations_of_the_active_service() -> None:
    service = ServiceSpec.model_validate({
        "type": "LoadBalancer", "port": 8000,
        "annotations": {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"},
        "labels": {"team": "ml", "turnout.dev/service-role": "mine"},
    })  # fmt: skip
    body = expose_service(build_service("bikes", "ml", "active", "green"), service)
    assert body["spec"] == {
        "type": "LoadBalancer",
        "selector": {"turnout.dev/model-deployment": "bikes", "turnout.dev/color": "green"},
        "ports": [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}],
    }
    assert body["metadata"]["labels"] == {
        "app.kubernetes.io/name": "turnout-serve", "app.kubernetes.io/instance": "bikes",
        "turnout.dev/model-deployment": "bikes", "app.kubernetes.io/managed-by": "turnout",
        "team": "ml", "turnout.dev/service-role": "active",  # the operator's label wins
    }  # fmt: skip
    assert body["metadata"]["annotations"] == {
        "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
        RECORD: json.dumps(service.to_api(), sort_keys=True, separators=(",", ":")),
    }


def test_an_ingress_routes_its_host_to_the_active_service_and_the_preview_host_to_the_preview(
) -> None:  # fmt: skip
    ingress = IngressSpec.model_validate({
        "className": "nginx", "host": "bikes.example.com", "path": "/v1",
        "tls": {"secretName": "bikes-tls"}, "annotations": {"nginx.ingress.kubernetes.io/x": "1"},
        "preview": {"host": "preview.bikes.example.com"},
    })  # fmt: skip
    body = build_ingress("bikes", "ml", ingress, 8000)
    backend = lambda name, port: {"service": {"name": name, "port": {"number": port}}}  # noqa: E731
    assert (body["apiVersion"], body["kind"], body["metadata"]["name"]) == (
        "networking.k8s.io/v1",
        "Ingress",
        "bikes",
    )
    assert body["spec"] == {
        "ingressClassName": "nginx",
        "rules": [
            {"host": "bikes.example.com", "http": {"paths": [
                {"path": "/v1", "pathType": "Prefix", "backend": backend("bikes", 8000)}]}},
            {"host": "preview.bikes.example.com", "http": {"paths": [
                {"path": "/v1", "pathType": "Prefix", "backend": backend("bikes-preview", 80)}]}},
        ],
        "tls": [{"hosts": ["bikes.example.com", "preview.bikes.example.com"],
                 "secretName": "bikes-tls"}],
    }  # fmt: skip
    assert body["metadata"]["annotations"]["nginx.ingress.kubernetes.io/x"] == "1"
    assert json.loads(body["metadata"]["annotations"][RECORD]) == body["spec"]


def test_an_http_route_attaches_to_its_gateways_and_routes_to_the_active_service() -> None:
    route = HTTPRouteSpec.model_validate({
        "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
        "hostnames": ["bikes.example.com"], "path": "/",
    })  # fmt: skip
    body = build_http_route("bikes", "ml", route, 80)
    assert (body["apiVersion"], body["kind"]) == ("gateway.networking.k8s.io/v1", "HTTPRoute")
    assert body["spec"] == {
        "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
        "hostnames": ["bikes.example.com"],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                   "backendRefs": [{"name": "bikes", "port": 80}]}],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "seen", "expected"),
    [
        ({}, ExposureSeen(), "http://bikes.ml.svc"),
        ({"service": {"port": 8000}}, ExposureSeen(), "http://bikes.ml.svc:8000"),
        ({"service": {"type": "NodePort"}}, ExposureSeen(), "http://bikes.ml.svc"),
        ({"service": {"type": "LoadBalancer"}}, ExposureSeen(), "http://bikes.ml.svc"),
        ({"service": {"type": "LoadBalancer", "port": 8000}},
         ExposureSeen(load_balancer="203.0.113.7"), "http://203.0.113.7:8000"),
        ({"service": {"type": "LoadBalancer"}},
         ExposureSeen(load_balancer="2001:db8::1"), "http://[2001:db8::1]"),
        ({"ingress": {"host": "bikes.example.com"}}, ExposureSeen(), "http://bikes.example.com"),
        ({"ingress": {"host": "bikes.example.com", "path": "/v1/", "tls": {"secretName": "t"}}},
         ExposureSeen(), "https://bikes.example.com/v1"),
        ({"ingress": {}}, ExposureSeen(), "http://bikes.ml.svc"),
        ({"ingress": {}}, ExposureSeen(ingress_address="lb.example.net"), "http://lb.example.net"),
        ({"ingress": {"host": "*.example.com"}}, ExposureSeen(), "http://bikes.ml.svc"),
        ({"httpRoute": {"parentRefs": [{"name": "gw"}], "hostnames": ["*.x.io", "bikes.x.io"],
                        "scheme": "https"}}, ExposureSeen(), "https://bikes.x.io"),
        ({"httpRoute": {"parentRefs": [{"name": "gw"}], "hostnames": ["bikes.x.io"]}},
         ExposureSeen(gateway_api=False), "http://bikes.ml.svc"),
        ({"ingress": {"host": "a.example.com"},
          "httpRoute": {"parentRefs": [{"name": "gw"}], "hostnames": ["b.example.com"]}},
         ExposureSeen(), "http://a.example.com"),
    ],
)  # fmt: skip
def test_the_url_is_the_route_s_else_the_load_balancer_s_else_the_in_cluster_one(
    fields: dict[str, Any], seen: ExposureSeen, expected: str
) -> None:
    assert url(spec(**fields), "bikes", "ml", seen) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"service": {"type": "ExternalName"}},
        {"service": {"port": 0}},
        {"service": {"labels": {"team": "not a label value"}}},
        {"ingress": {"host": "Bikes.Example.com"}},
        {"ingress": {"path": "v1"}},
        {"ingress": {"tls": {"secretName": ""}}},
        {"httpRoute": {"parentRefs": []}},
        {"httpRoute": {"parentRefs": [{"name": "gw"}], "scheme": "ftp"}},
    ],
)
def test_an_exposure_the_api_server_would_refuse_is_refused_with_the_field(
    fields: dict[str, Any],
) -> None:
    [key] = fields
    with pytest.raises(ValidationError) as refused:
        spec(**fields)
    assert refused.value.errors()[0]["loc"][0] == key


def serving() -> ModelDeploymentStatus:
    return ModelDeploymentStatus(
        phase="Healthy", desired_version="3", active_version="3", active_color="blue",
        model_uri="models:/bikes/3",
        history=[HistoryEntry(version="3", color="blue", promoted_at="2026-11-23T11:00:00Z",
                              outcome="Promoted")],
    )  # fmt: skip


def planned(desired: ModelDeploymentSpec, seen: ExposureSeen, **status: Any) -> Plan:
    observed = Observed(
        status=serving().model_copy(update=status), name="bikes", namespace="ml",
        colors={"blue": ColorState(version="3", replicas=1, available=1)},
        active_selector="blue", preview_selector="blue", exposure=seen,
    )  # fmt: skip
    return plan(desired, observed, NOW)


def exposure_actions(result: Plan) -> list[object]:
    kinds = (ExposeService, ApplyRoute, DeleteRoute, Emit)
    return [a for a in result.actions if isinstance(a, kinds)]


INGRESS = {"host": "bikes.example.com"}
ROUTE = {"parentRefs": [{"name": "gw"}], "hostnames": ["bikes.example.com"]}


def record_of(desired: ModelDeploymentSpec, kind: str) -> str:
    build = build_ingress if kind == "Ingress" else build_http_route
    route = desired.ingress if kind == "Ingress" else desired.http_route
    return str(build("bikes", "ml", route, 80)["metadata"]["annotations"][RECORD])  # type: ignore[operator]


def test_nothing_is_written_when_the_cluster_holds_what_the_spec_asks_for() -> None:
    desired = spec(service={"type": "NodePort"}, ingress=INGRESS, httpRoute=ROUTE)
    seen = ExposureSeen(service=service_record(desired.service),
                        ingress=record_of(desired, "Ingress"), http_route=record_of(desired, "HTTPRoute"))  # fmt: skip
    result = planned(desired, seen, routes=["Ingress", "HTTPRoute"])
    assert exposure_actions(result) == []
    assert (result.status.url, result.status.routes) == (
        "http://bikes.example.com",
        ["Ingress", "HTTPRoute"],
    )
    [exposed] = [c for c in result.status.conditions if c.type == R.EXPOSED]
    assert (exposed.status, exposed.reason, exposed.message) == (
        "True",
        R.ROUTED,
        "Ingress and HTTPRoute to the active Service",
    )
    assert result.requeue_after is None


def test_a_changed_service_spec_updates_the_service_and_never_moves_its_selector() -> None:
    before, after = spec(), spec(service={"type": "LoadBalancer", "port": 8000})
    result = planned(after, ExposureSeen(service=service_record(before.service)))
    assert exposure_actions(result) == [ExposeService()]
    assert [a for a in result.actions if type(a).__name__ == "PointService"] == []
    # the address is not there yet: the in-cluster URL, and a look again soon
    assert result.status.url == "http://bikes.ml.svc:8000"
    assert result.status.endpoints.active == "http://bikes.ml.svc:8000"
    assert result.requeue_after == 10.0


def test_routes_are_made_when_asked_and_deleted_when_the_spec_drops_them() -> None:
    desired = spec(ingress=INGRESS)
    made = planned(desired, ExposureSeen(service=service_record(desired.service)))
    assert exposure_actions(made) == [ApplyRoute("Ingress")]
    assert made.status.routes == ["Ingress"]
    changed = planned(spec(ingress={**INGRESS, "path": "/v2"}),
                      ExposureSeen(service=service_record(desired.service),
                                   ingress=record_of(desired, "Ingress")))  # fmt: skip
    assert exposure_actions(changed) == [ApplyRoute("Ingress")]
    dropped = planned(spec(), ExposureSeen(service=service_record(desired.service),
                                           ingress=record_of(desired, "Ingress")),
                      routes=["Ingress"])  # fmt: skip
    assert exposure_actions(dropped) == [DeleteRoute("Ingress")]
    assert (dropped.status.routes, dropped.status.url) == ([], "http://bikes.ml.svc")
    assert [c.type for c in dropped.status.conditions if c.type == R.EXPOSED] == []


def test_an_http_route_without_the_gateway_api_is_a_condition_and_one_event_not_a_loop() -> None:
    desired = spec(httpRoute=ROUTE)
    seen = ExposureSeen(service=service_record(desired.service), gateway_api=False)
    first = planned(desired, seen)
    message = ("spec.httpRoute: the cluster serves no gateway.networking.k8s.io/v1 HTTPRoute "
               "(install the Gateway API CRDs; the operator looks again at each resync)")  # fmt: skip
    assert exposure_actions(first) == [Emit("Warning", R.GATEWAY_API_MISSING, message)]
    [exposed] = [c for c in first.status.conditions if c.type == R.EXPOSED]
    assert (exposed.status, exposed.reason) == ("False", R.GATEWAY_API_MISSING)
    assert (first.status.routes, first.status.url, first.requeue_after) == (
        [],
        "http://bikes.ml.svc",
        None,
    )
    again = planned(desired, seen, conditions=first.status.conditions)
    assert exposure_actions(again) == []  # the event is news once
    assert first.status.phase == "Healthy"  # the model still serves in the cluster


def test_no_url_before_a_version_is_active() -> None:
    desired = spec(ingress=INGRESS)
    observed = Observed(status=ModelDeploymentStatus(), name="bikes", namespace="ml",
                        exposure=ExposureSeen())  # fmt: skip
    result = plan(desired, observed, NOW + timedelta(seconds=1))
    assert result.status.url is None
    assert ApplyRoute("Ingress") in result.actions


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"service": {"annotations": {"not a key": "x"}}}, "spec.service.annotations"),
        ({"ingress": {"annotations": {"-bad/key": "x"}}}, "spec.ingress.annotations"),
        ({"httpRoute": {"parentRefs": [{"name": "gw"}], "annotations": {"a b": "x"}}},
         "spec.httpRoute.annotations"),
    ],
)  # fmt: skip
def test_an_annotation_the_api_server_would_refuse_is_an_invalid_spec_naming_its_field(
    fields: dict[str, Any], field: str
) -> None:
    checked = check("bikes", "ml", {**BASE, **fields}, Defaults("turnout-serve:1", "http://m"), ())
    assert {p.field for p in checked.problems} == {field}


def test_a_second_pass_sees_what_the_first_wrote_and_asks_for_nothing_again() -> None:
    """A reconcile plans again after a smoke test: the exposure written by the first pass is
    taken as there (domain/exposure.applied), so the second writes nothing of it."""
    desired = spec(service={"port": 8000}, ingress=INGRESS, httpRoute=ROUTE)
    first_seen = ExposureSeen(service="", load_balancer=None, ingress=None, http_route="old")
    first = planned(desired, first_seen, routes=["HTTPRoute"])
    assert exposure_actions(first) == [ExposeService(), ApplyRoute("Ingress"),
                                       ApplyRoute("HTTPRoute")]  # fmt: skip
    second_seen = applied(first_seen, desired, "bikes", "ml")
    second = planned(desired, second_seen, routes=first.status.routes,
                     conditions=first.status.conditions)  # fmt: skip
    assert exposure_actions(second) == []
    assert second.status.routes == first.status.routes == ["Ingress", "HTTPRoute"]
    # without a Service yet (PointService creates it as the spec says), none is assumed
    assert applied(ExposureSeen(), desired, "bikes", "ml").service is None
    dropped = applied(second_seen, spec(), "bikes", "ml")
    assert (dropped.ingress, dropped.http_route) == (None, None)
