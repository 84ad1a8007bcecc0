"""The node agent's kube-proxy, in the old `userspace` mode: it watches the Services and
EndpointSlices of all namespaces and, for each TCP port of each Service with a ClusterIP, listens
on ClusterIP:port and forwards every connection to one of the Service's ready endpoints (round
robin; an endpoint that refuses or does not answer within 2 s is passed over for the next).

No netfilter rule anywhere (the host's tables are not ours): each ClusterIP is a /32 address of
the pod network's bridge, where the pods' default route already goes, added while a Service has
it and removed with the Service (and with the bridge, when the network is torn down). The whole
service range is routed to the bridge too, so a ClusterIP that no Service has (any more) is
unreachable here, never sent off this machine by a host that forwards. What to
listen on and where to go is decided by `services.routes`; this module only carries it out.

It reads as `system:kube-proxy` (the bootstrap role `system:node-proxier` lets it list and watch
Services and EndpointSlices; the Node authorizer gives a kubelet no EndpointSlices).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch

from tests.integration.outage import Forwarder
from tests.real import netns
from tests.real.node.services import Address, names, routes

Obj = dict[str, Any]
log = logging.getLogger("service-proxy")
# name -> (list path, the generated client's list call to watch)
RESOURCES = {
    "services": ("/api/v1/services", lambda api: client.CoreV1Api(api).list_service_for_all_namespaces),
    "endpointslices": ("/apis/discovery.k8s.io/v1/endpointslices",
                       lambda api: client.DiscoveryV1Api(api).list_endpoint_slice_for_all_namespaces),
}  # fmt: skip
Names = list[tuple[str, str, str]]


class Rotation:
    """A Service port's ready endpoints, handed out round robin: each call gives them all, starting
    one further along, so a connection goes to the next endpoint and falls back on the others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: list[Address] = []
        self._next = 0

    def set(self, endpoints: list[Address]) -> bool:
        """Hand out `endpoints` from now on; whether they differ from those handed out so far."""
        with self._lock:
            changed, self._endpoints = self._endpoints != endpoints, list(endpoints)
        return changed

    def __call__(self) -> list[Address]:
        with self._lock:
            endpoints, start = self._endpoints, self._next
            self._next += 1
        if not endpoints:
            return []
        start %= len(endpoints)
        return endpoints[start:] + endpoints[:start]


class ServiceProxy:
    def __init__(
        self, api: client.ApiClient, bridge: str, service_cidr: str,
        on_names: Callable[[Names], None],
    ) -> None:  # fmt: skip
        self.api = api
        self.bridge = bridge
        self.service_cidr = service_cidr
        self.on_names = on_names  # called with the Services' names whenever they change
        self.stopping = threading.Event()
        self._store: dict[str, dict[tuple[str, str], Obj]] = {kind: {} for kind in RESOURCES}
        self._listed = {kind: threading.Event() for kind in RESOURCES}
        self._lock = threading.Lock()  # the store, and everything a sync changes
        self._listeners: dict[Address, tuple[Forwarder, Rotation]] = {}
        self._addresses: set[str] = set()
        self._names: Names | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Watch both resources; return once both are listed and carried out."""
        netns.ip("route", "replace", self.service_cidr, "dev", self.bridge)
        for kind in RESOURCES:
            threading.Thread(target=self._watch, args=(kind,), name=f"watch-{kind}",
                             daemon=True).start()  # fmt: skip
        for kind, listed in self._listed.items():
            if not listed.wait(timeout):
                raise RuntimeError(f"the Service proxy could not list {kind} in {timeout:g} s")

    def stop(self) -> None:
        """Stop listening and remove the ClusterIPs from the bridge."""
        self.stopping.set()
        with self._lock:
            for forwarder, _ in self._listeners.values():
                forwarder.down()
            self._listeners.clear()
            for address in self._addresses:
                netns.ip("addr", "del", f"{address}/32", "dev", self.bridge, check=False)
            self._addresses.clear()
        netns.ip("route", "del", self.service_cidr, "dev", self.bridge, check=False)

    # --- watching ----------------------------------------------------------------------------
    def _watch(self, kind: str) -> None:
        path, lister = RESOURCES[kind]
        store = self._store[kind]
        while not self.stopping.is_set():
            try:
                answer = self.api.call_api(path, "GET", auth_settings=["BearerToken"],
                                           _preload_content=False, _return_http_data_only=True)  # fmt: skip
                listing = json.loads(answer.data)
                with self._lock:
                    store.clear()
                    store.update({_key(o): o for o in listing["items"]})
                    self._sync()
                self._listed[kind].set()
                stream = watch.Watch().stream(
                    _undecoded(lister(self.api)), resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=60,
                )  # fmt: skip
                for event in stream:
                    if self.stopping.is_set():
                        return
                    if event["type"] == "ERROR":
                        break
                    obj = event["raw_object"]
                    with self._lock:
                        if event["type"] == "DELETED":
                            store.pop(_key(obj), None)
                        else:
                            store[_key(obj)] = obj
                        self._sync()
            except Exception:
                log.exception("watching %s; listing again", kind)
                self.stopping.wait(1.0)

    # --- carrying it out (under self._lock) ---------------------------------------------------
    def _sync(self) -> None:
        if self.stopping.is_set():
            return
        services = list(self._store["services"].values())
        wanted = routes(services, self._store["endpointslices"].values())
        for address in {ip for ip, _ in wanted} - self._addresses:
            netns.ip("addr", "add", f"{address}/32", "dev", self.bridge)
            self._addresses.add(address)
        for where in set(self._listeners) - set(wanted):
            self._listeners.pop(where)[0].down()
            log.info("stopped listening on %s:%d", *where)
        for where, endpoints in wanted.items():
            if where not in self._listeners:
                rotation = Rotation()
                forwarder = Forwarder(host=where[0], port=where[1], upstreams=rotation)
                try:
                    forwarder.up()
                except OSError as exc:  # taken by something else: tried again at the next change
                    log.warning("cannot listen on %s:%d: %s", *where, exc)
                    continue
                self._listeners[where] = (forwarder, rotation)
                log.info("listening on %s:%d", *where)
            if self._listeners[where][1].set(endpoints):
                log.info("%s:%d forwards to %s", *where, _listed(endpoints))
        for address in self._addresses - {ip for ip, _ in wanted}:
            netns.ip("addr", "del", f"{address}/32", "dev", self.bridge, check=False)
            self._addresses.discard(address)
        current = names(services)
        if current != self._names:
            self._names = current
            self.on_names(current)


def _listed(endpoints: list[Address]) -> str:
    return ", ".join(f"{ip}:{port}" for ip, port in endpoints) or "nothing"


def _undecoded(call: Callable[..., Any]) -> Callable[..., Any]:
    """`call` without its docstring, so the watch yields the events' objects as sent, undecoded:
    the client's models refuse an EndpointSlice without endpoints, which the API allows."""

    def listing(**kwargs: Any) -> Any:
        return call(**kwargs)

    return listing


def _key(obj: Obj) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]
