"""Exposure on the real control plane: the scenario of tests/integration/exposure.py with the
operator under the chart's RBAC (ingresses and httproutes: get, create, update, delete), the API
server validating the Ingress, and the Gateway API's own HTTPRoute CRD (tests/gateway_api.py)
installed while a ModelDeployment waits for it. The Service's type changes (LoadBalancer to
ClusterIP, a node port allocated then released) are the API server's own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from tests.conftest import wait_until
from tests.gateway_api import http_route_crd
from tests.integration import exposure
from tests.integration.cluster import Cluster
from tests.real.operator import establish_crd

pytestmark = [pytest.mark.real, pytest.mark.usefixtures("clean_model_deployments")]


def test_a_model_is_exposed_by_its_service_an_ingress_and_an_http_route(
    cluster: Cluster, api: client.ApiClient, tmp_path: Path
) -> None:
    manifest = http_route_crd(tmp_path / "go")
    extensions = client.ApiextensionsV1Api(api)
    name = manifest["metadata"]["name"]
    if any(c.metadata.name == name for c in extensions.list_custom_resource_definition().items):
        extensions.delete_custom_resource_definition(name)  # the scenario starts without it
        wait_until(lambda: all(c.metadata.name != name for c in
                               extensions.list_custom_resource_definition().items),
                   timeout=60, what="the HTTPRoute CRD gone")  # fmt: skip
    exposure.service_ingress_and_http_route(cluster, lambda: establish_crd(api, manifest))
