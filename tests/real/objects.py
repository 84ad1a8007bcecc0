"""The emulator's direct-access interface (`tests/kube/emulator.py`: create, get, list, patch,
delete, events) over a real API server, so the operator's scenario helpers in
tests/integration/cluster.py drive either one.

Calls go through `kubernetes`' dynamic client with the credentials given (the admin's, for a test
playing the user); a patch is a JSON merge patch, as the emulator's and `kubectl patch
--type=merge`. `url` and `http()` reach the API server's service proxy with the same credentials.
"""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from tests.kube.emulator import events_about
from tests.real import controlplane as cp

Obj = dict[str, Any]


class RealKube:
    def __init__(self, plane: cp.ControlPlane, kubeconfig: Path | None = None) -> None:
        self.plane = plane
        self.api = config.new_client_from_config(config_file=str(kubeconfig or plane.kubeconfig))
        self.dynamic = DynamicClient(self.api)

    @property
    def url(self) -> str:
        return self.plane.server

    def http(self, timeout: float = 30) -> httpx.Client:
        """An httpx client for the API server as the admin (for the service proxy)."""
        http = self.plane.http()
        http.timeout = httpx.Timeout(timeout)
        return http

    def close(self) -> None:
        self.api.close()

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def create(self, obj: Obj) -> Obj:
        resource = self._resource(obj["apiVersion"], obj["kind"])
        namespace = obj.get("metadata", {}).get("namespace")
        return dict(resource.create(body=obj, namespace=namespace).to_dict())

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        try:
            found = self._resource(api_version, kind).get(name=name, namespace=namespace)
        except NotFoundError:
            return None
        return dict(found.to_dict())

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, labels: str | None = None
    ) -> builtins.list[Obj]:
        found = self._resource(api_version, kind).get(namespace=namespace, label_selector=labels)
        return [dict(item) for item in found.to_dict()["items"]]

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Obj,
        *,
        subresource: str | None = None,
    ) -> Obj:
        resource = self._resource(api_version, kind)
        if subresource is not None:
            resource = resource.subresources[subresource]
        found = resource.patch(body=patch, name=name, namespace=namespace,
                               content_type="application/merge-patch+json")  # fmt: skip
        return dict(found.to_dict())

    def delete(
        self, api_version: str, kind: str, namespace: str | None, name: str, **options: Any
    ) -> Obj:
        body = client.V1DeleteOptions(**options) if options else None
        found = self._resource(api_version, kind).delete(name=name, namespace=namespace, body=body)
        return dict(found.to_dict())

    def events(
        self, namespace: str | None = None, involved_name: str | None = None
    ) -> builtins.list[Obj]:
        """Core v1 Events, oldest first."""
        return events_about(self.list, namespace, involved_name)
