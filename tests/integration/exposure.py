"""Exposure scenarios shared by the emulator's suite (tests/integration/test_operator.py, whose
RBAC test then sees the calls) and the real control plane's (tests/real/test_exposure.py, where
the API server validates the Ingress and the Gateway API's own CRD validates the HTTPRoute).

What users rely on: spec.service makes the active Service what it says, in place, while the
blue-green selector stays where the rollout put it; an Ingress and an HTTPRoute are made, owned,
changed and removed with the spec; a cluster without the Gateway API says so in a condition and
one Event, and gets the route once the CRD is installed; status.url follows the precedence the
docs state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.conftest import wait_until
from tests.integration.cluster import Cluster, conditions

NAME = "exposed"
SERVICE = {"type": "LoadBalancer", "port": 8000, "labels": {"team": "ml"},
           "annotations": {"example.com/lb-scheme": "internal"}}  # fmt: skip
INGRESS = {"host": "exposed.example.com", "path": "/", "tls": {"secretName": "exposed-tls"},
           "annotations": {"example.com/rewrite": "off"},
           "preview": {"host": "preview.exposed.example.com"}}  # fmt: skip
ROUTE = {"parentRefs": [{"name": "public", "sectionName": "https"}],
         "hostnames": ["exposed.example.com"], "scheme": "https"}  # fmt: skip
# The rules only exposure uses: a suite that exposes nothing (the feature matrix) leaves exactly
# these unused; test_operator.py's RBAC test sees each used by the scenario below.
RULES = {
    (group, resource, verb)
    for group, resource in (("networking.k8s.io", "ingresses"),
                            ("gateway.networking.k8s.io", "httproutes"))
    for verb in ("get", "create", "update", "delete")
}  # fmt: skip
INGRESSES = ("networking.k8s.io/v1", "Ingress")
ROUTES = ("gateway.networking.k8s.io/v1", "HTTPRoute")


def _owned_by_the_model_deployment(obj: dict[str, Any]) -> None:
    [owner] = obj["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("ModelDeployment", NAME, True)


def _backends(ingress: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    return [
        (rule["host"], path["path"], path["backend"]["service"]["name"],
         path["backend"]["service"]["port"]["number"])
        for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]
    ]  # fmt: skip


def _wait_status(cluster: Cluster, what: str, check: Callable[[dict[str, Any]], bool]) -> Any:
    return wait_until(lambda: (s := cluster.status(NAME)) and check(s) and s,
                      timeout=60, interval=0.2, what=what)  # fmt: skip


def service_ingress_and_http_route(
    cluster: Cluster, install_gateway_api: Callable[[], None]
) -> None:
    """Exposed through a LoadBalancer Service, an Ingress and (once the cluster serves the
    Gateway API) an HTTPRoute; then changed, then dropped, then back to a plain ClusterIP."""
    ns = cluster.namespace
    cluster.apply(NAME, {"name": "Diabetes", "version": "1"}, service=SERVICE, ingress=INGRESS,
                  httpRoute=ROUTE, strategy={"blueGreen": {"smokeTest": False}})  # fmt: skip
    status = cluster.wait_phase(NAME, "Healthy", activeVersion="1", activeColor="blue")
    status = _wait_status(cluster, "the Exposed condition",
                          lambda s: "Exposed" in conditions(s))  # fmt: skip
    assert conditions(status)["Exposed"] == ("False", "GatewayAPIMissing")
    assert (status["url"], status["routes"]) == ("https://exposed.example.com", ["Ingress"])
    assert cluster.reasons(NAME).count("GatewayAPIMissing") == 1

    service = cluster.kube.get("v1", "Service", ns, NAME)
    assert (service["spec"]["type"], service["spec"]["selector"]["turnout.dev/color"]) == (
        "LoadBalancer", "blue")  # fmt: skip
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", 8000, "http")]  # fmt: skip
    assert service["metadata"]["labels"]["team"] == "ml"
    assert service["metadata"]["annotations"]["example.com/lb-scheme"] == "internal"
    preview = cluster.kube.get("v1", "Service", ns, f"{NAME}-preview")
    assert (preview["spec"]["type"], preview["spec"]["ports"][0]["port"]) == ("ClusterIP", 80)

    ingress = cluster.kube.get(*INGRESSES, ns, NAME)
    _owned_by_the_model_deployment(ingress)
    assert _backends(ingress) == [("exposed.example.com", "/", NAME, 8000),
                                  ("preview.exposed.example.com", "/", f"{NAME}-preview", 80)]  # fmt: skip
    assert ingress["spec"]["tls"] == [{
        "hosts": ["exposed.example.com", "preview.exposed.example.com"],
        "secretName": "exposed-tls"}]  # fmt: skip
    assert ingress["metadata"]["annotations"]["example.com/rewrite"] == "off"
    assert cluster.predict(NAME).status_code == 200  # the Service still reaches the pods

    # The Gateway API arrives: the route follows at the next resync.
    install_gateway_api()
    status = _wait_status(cluster, "the HTTPRoute",
                          lambda s: conditions(s).get("Exposed") == ("True", "Routed"))  # fmt: skip
    assert status["routes"] == ["Ingress", "HTTPRoute"]
    route = cluster.kube.get(*ROUTES, ns, NAME)
    _owned_by_the_model_deployment(route)
    assert route["spec"]["parentRefs"][0]["name"] == "public"
    assert route["spec"]["hostnames"] == ["exposed.example.com"]
    assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == NAME
    assert route["spec"]["rules"][0]["backendRefs"][0]["port"] == 8000

    # Both change: each is replaced, the rules the spec dropped go.
    cluster.patch_spec(NAME, {"ingress": {**INGRESS, "path": "/v2", "preview": None},
                              "httpRoute": {**ROUTE, "hostnames": ["models.example.com"]}})  # fmt: skip
    wait_until(lambda: _backends(cluster.kube.get(*INGRESSES, ns, NAME))
               == [("exposed.example.com", "/v2", NAME, 8000)],
               timeout=30, what="the Ingress replaced")  # fmt: skip
    wait_until(lambda: cluster.kube.get(*ROUTES, ns, NAME)["spec"]["hostnames"]
               == ["models.example.com"], timeout=30, what="the HTTPRoute replaced")  # fmt: skip
    _wait_status(cluster, "the new URL", lambda s: s.get("url") == "https://exposed.example.com/v2")

    # The load balancer gets its address; then the spec drops both routes: the URL is the
    # load balancer's, and the routes are deleted.
    cluster.kube.patch("v1", "Service", ns, NAME,
                       {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}},
                       subresource="status")  # fmt: skip
    cluster.patch_spec(NAME, {"ingress": None, "httpRoute": None})
    status = _wait_status(cluster, "the load balancer's URL",
                          lambda s: s.get("url") == "http://203.0.113.7:8000")  # fmt: skip
    assert status["routes"] == []
    assert "Exposed" not in conditions(status)
    wait_until(lambda: cluster.kube.get(*INGRESSES, ns, NAME) is None
               and cluster.kube.get(*ROUTES, ns, NAME) is None,
               timeout=30, what="the routes deleted")  # fmt: skip

    # Back to a plain ClusterIP on port 80: changed in place, the operator's own annotations
    # and labels removed, someone else's kept, the selector untouched.
    cluster.kube.patch("v1", "Service", ns, NAME,
                       {"metadata": {"annotations": {"example.com/someone-else": "kept"}}})  # fmt: skip
    uid = service["metadata"]["uid"]
    cluster.patch_spec(NAME, {"service": None})
    _wait_status(cluster, "the in-cluster URL",
                 lambda s: s.get("url") == f"http://{NAME}.{ns}.svc")  # fmt: skip
    service = wait_until(
        lambda: (s := cluster.kube.get("v1", "Service", ns, NAME))["spec"]["type"] == "ClusterIP"
        and s, timeout=30, what="the Service back to ClusterIP")  # fmt: skip
    assert service["metadata"]["uid"] == uid  # the same Service, changed in place
    assert service["spec"]["selector"]["turnout.dev/color"] == "blue"
    assert [(p["port"], p.get("nodePort")) for p in service["spec"]["ports"]] == [(80, None)]
    assert "team" not in service["metadata"]["labels"]
    annotations = service["metadata"]["annotations"]
    assert "example.com/lb-scheme" not in annotations
    assert annotations["example.com/someone-else"] == "kept"
    assert cluster.predict(NAME).status_code == 200
