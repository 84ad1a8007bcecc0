"""The node agent's process: registers its Node, keeps its Lease and status fresh, owns the pod
network (bridge, one network namespace per pod), forwards the bridge address to the API server (and
to host ports it is told to expose), watches the pods bound to it and gives each a pod worker. Given
a kube-proxy's credentials, it runs the Service proxy too (`proxy.py`) and keeps every pod's
/etc/hosts naming the Services (`services.py`).

It talks to the API server as `system:node:<name>`: the Node authorizer lets it read the
Secrets, ConfigMaps and ServiceAccount tokens of its own pods only, and NodeRestriction lets it
write only its Node, its Lease and its pods' status. The Service proxy reads as
`system:kube-proxy`, as kube-proxy does.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import platform
import shutil
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.integration.outage import Forwarder
from tests.podspec import MountError
from tests.real import netns
from tests.real.node import plan, runtime, services
from tests.real.node.pods import PodWorker
from tests.real.node.proxy import Names, ServiceProxy

Obj = dict[str, Any]
log = logging.getLogger("node-agent")
LEASE_SECONDS = 40
LEASE_RENEW = 10.0
STATUS_EVERY = 40.0
SHUTDOWN_GRACE = 10.0  # at most this long per pod when the agent itself stops
BIN = Path(sys.executable).parent


@dataclass
class Settings:
    kubeconfig: Path
    state: Path
    name: str = "turnout-node"
    expose: list[int] = field(default_factory=list)
    max_backoff: float = 300.0
    proxy_kubeconfig: Path | None = None  # system:kube-proxy's: run the Service proxy
    service_cidr: str = ""  # the cluster's service range (the Service proxy routes it here)


def micro_time() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Agent:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.name
        self.state = settings.state.resolve()
        self.max_backoff = settings.max_backoff
        configuration = client.Configuration()
        config.load_kube_config(str(settings.kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = 64
        self.api = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self.api)
        self.server_port = urlparse(configuration.host).port or 443
        self.network = netns.PodNetwork()
        self._net_lock = threading.Lock()
        self.workers: dict[str, PodWorker] = {}
        self._workers_lock = threading.Lock()
        self.stopping = threading.Event()
        self.forwarders: list[Forwarder] = []
        self.host_ip = ""
        self.base_env: dict[str, str] = {}
        self.node_uid = ""
        self.proxy: ServiceProxy | None = None
        self._names: Names = []  # the Services every pod's /etc/hosts names
        self._hosts: dict[str, tuple[Path, str, str, str, list[Obj]]] = {}
        self._names_lock = threading.Lock()

    # --- what pod workers need (pods.Node) ---------------------------------------------------
    def add_sandbox(self, key: str) -> str:
        with self._net_lock:
            return self.network.add_pod(key).ip

    def remove_sandbox(self, key: str) -> None:
        with self._names_lock:
            self._hosts.pop(key, None)
        with self._net_lock:
            if key in self.network.pods:
                self.network.remove_pod(key)

    def name_files(self, key: str, pod: Obj, pod_ip: str, directory: Path) -> dict[str, Path]:
        hosts, resolv = directory / "etc-hosts", directory / "resolv.conf"
        resolv.write_text(services.resolv_conf(pod["metadata"]["namespace"]))
        entry = (hosts, pod_ip, pod["metadata"]["name"][:63], pod["metadata"]["namespace"],
                 list(pod["spec"].get("hostAliases") or []))  # fmt: skip
        with self._names_lock:
            self._hosts[key] = entry
            self._write_hosts(entry)
        return {"/etc/hosts": hosts, "/etc/resolv.conf": resolv}

    def _services_named(self, names: Names) -> None:
        """The Services changed: every running pod's /etc/hosts rewritten in place."""
        with self._names_lock:
            self._names = names
            for entry in self._hosts.values():
                self._write_hosts(entry)

    def _write_hosts(self, entry: tuple[Path, str, str, str, list[Obj]]) -> None:
        path, pod_ip, hostname, namespace, aliases = entry
        runtime.rewrite(
            path, services.hosts_file(pod_ip, hostname, namespace, self._names, aliases)
        )

    def netns(self, key: str) -> str:
        return self.network.pods[key].netns

    def _read(self, path: str) -> Obj | None:
        try:
            answer = self.api.call_api(path, "GET", auth_settings=["BearerToken"],
                                       _preload_content=False, _return_http_data_only=True)  # fmt: skip
        except ApiException as exc:
            if exc.status in (403, 404):  # 403: the Node authorizer has not seen the pod's edge yet
                log.info("GET %s: %s", path, exc.status)
                return None
            raise
        return json.loads(answer.data)  # type: ignore[no-any-return]

    def lookup(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self._read(f"/api/v1/namespaces/{namespace}/{kind}/{name}")

    def token(self, pod: Obj, audience: str | None, expiration: int) -> str:
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        body = {"spec": {"audiences": [audience] if audience else [], "expirationSeconds": expiration,
                         "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"],
                                            "uid": meta["uid"]}}}  # fmt: skip
        try:
            made = self.core.create_namespaced_service_account_token(
                account, meta["namespace"], body
            )
        except ApiException as exc:
            raise MountError(f"failed to fetch token: {exc.status} {exc.reason}") from exc
        return str(made.status.token)

    def write_status(self, pod: Obj, status: Obj) -> bool:
        meta = pod["metadata"]
        # a JSON merge patch: lists (podIPs, conditions, containerStatuses) are replaced whole, as
        # the kubelet's computed patch replaces them; the uid is a precondition
        try:
            self.api.call_api(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status", "PATCH",
                header_params={"Content-Type": "application/merge-patch+json",
                               "Accept": "application/json"},
                body={"metadata": {"uid": meta["uid"]}, "status": status},
                auth_settings=["BearerToken"], _preload_content=False,
            )  # fmt: skip
        except ApiException as exc:
            log.info(
                "status of %s/%s: %s %s", meta["namespace"], meta["name"], exc.status, exc.reason
            )
            return False
        return True

    def confirm_deletion(self, pod: Obj) -> None:
        meta = pod["metadata"]
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        with contextlib.suppress(ApiException):  # 404: gone already; 409: another pod of that name
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=body)

    def event(self, pod: Obj, reason: str, message: str, warning: bool = False) -> None:
        meta = pod["metadata"]
        stamp = now_iso()
        body = {
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
            "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": meta["namespace"],
                               "name": meta["name"], "uid": meta["uid"]},
            "reason": reason, "message": message, "type": "Warning" if warning else "Normal",
            "source": {"component": "kubelet", "host": self.name}, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp,
        }  # fmt: skip
        with contextlib.suppress(ApiException):
            self.core.create_namespaced_event(meta["namespace"], body)

    # --- the process -------------------------------------------------------------------------
    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        runtime.remove_tree(self.state / "pods")  # what a dead agent left
        self.state.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        self.network.setup()  # also removes the namespaces and links of dead agents
        try:
            return self._serve(began)
        finally:
            self._shut_down()

    def _serve(self, began: float) -> int:
        self.host_ip = self.network.gateway
        api = Forwarder(self.server_port, host=self.host_ip)
        api.up()
        self.forwarders.append(api)
        for port in self.settings.expose:
            exposed = Forwarder(port, host=self.host_ip, port=port)
            exposed.up()
            self.forwarders.append(exposed)
        self.base_env = {"PATH": f"{BIN}:{plan.SYSTEM_PATH}", "HOME": "/root",
                         **plan.service_env(self.host_ip, api.port)}  # fmt: skip
        if self.settings.proxy_kubeconfig is not None:
            proxy_api = config.new_client_from_config(str(self.settings.proxy_kubeconfig))
            self.proxy = ServiceProxy(proxy_api, self.network.bridge, self.settings.service_cidr,
                                      self._services_named)  # fmt: skip
            self.proxy.start()
        self._register()
        self._renew_lease()
        info = {"name": self.name, "pid": os.getpid(), "hostIP": self.host_ip,
                "subnet": str(self.network.subnet), "apiPort": api.port,
                "expose": self.settings.expose, "bridge": self.network.bridge}  # fmt: skip
        (self.state / "node.json").write_text(json.dumps(info, indent=2))
        log.info("node %s registered in %.1f s: %s", self.name, time.monotonic() - began, info)
        threading.Thread(target=self._watch, name="watch", daemon=True).start()
        next_lease = time.monotonic() + LEASE_RENEW
        next_status = time.monotonic() + STATUS_EVERY
        while not self.stopping.wait(0.5):
            now = time.monotonic()
            try:
                if now >= next_lease:
                    self._renew_lease()
                    next_lease = now + LEASE_RENEW
                if now >= next_status:
                    self._post_status()
                    next_status = now + STATUS_EVERY
            except Exception:  # the API server restarting: try again at the next beat
                log.exception("heartbeat")
        return 0

    def _shut_down(self) -> None:
        with self._workers_lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.shutdown(SHUTDOWN_GRACE)
        for worker in workers:
            worker.join(SHUTDOWN_GRACE + 20)
        for forwarder in self.forwarders:
            forwarder.down()
        if self.proxy is not None:
            self.proxy.stop()
        with self._net_lock:
            self.network.teardown()
        runtime.remove_tree(self.state / "pods")
        (self.state / "node.json").unlink(missing_ok=True)

    # --- Node, Lease -------------------------------------------------------------------------
    def _register(self) -> None:
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": _arch(), "beta.kubernetes.io/os": "linux",
                  "beta.kubernetes.io/arch": _arch()}  # fmt: skip
        try:
            node = self.core.create_node({"metadata": {"name": self.name, "labels": labels}})
        except ApiException as exc:
            if exc.status != 409:
                raise
            node = self.core.patch_node(self.name, {"metadata": {"labels": labels}})
        self.node_uid = node.metadata.uid
        self.version = client.VersionApi(self.api).get_code().git_version
        self.registered_at = now_iso()
        self._post_status()

    def _post_status(self) -> None:
        stamp = now_iso()
        conditions = [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]  # fmt: skip
        capacity = _capacity(self.state)
        status = {
            "capacity": capacity, "allocatable": capacity,
            "conditions": [{"type": kind, "status": value, "reason": reason, "message": message,
                            "lastHeartbeatTime": stamp, "lastTransitionTime": self.registered_at}
                           for kind, value, reason, message in conditions],
            "addresses": [{"type": "InternalIP", "address": self.host_ip},
                          {"type": "Hostname", "address": self.name}],
            "nodeInfo": _node_info(self.version),
        }  # fmt: skip
        self.core.patch_node_status(self.name, {"status": status})

    def _renew_lease(self) -> None:
        leases = client.CoordinationV1Api(self.api)
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": micro_time()}  # fmt: skip
        try:
            leases.patch_namespaced_lease(self.name, "kube-node-lease", {"spec": spec})
        except ApiException as exc:
            if exc.status != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.node_uid}
            leases.create_namespaced_lease("kube-node-lease", {
                "metadata": {"name": self.name, "ownerReferences": [owner]}, "spec": spec})  # fmt: skip

    # --- pods --------------------------------------------------------------------------------
    def _watch(self) -> None:
        selector = f"spec.nodeName={self.name}"
        while not self.stopping.is_set():
            try:
                listing = self._read(f"/api/v1/pods?fieldSelector={selector}")
                if listing is None:
                    raise RuntimeError("cannot list the node's pods")
                present = {p["metadata"]["uid"] for p in listing["items"]}
                with self._workers_lock:
                    missing = [w for uid, w in self.workers.items() if uid not in present]
                for worker in missing:  # deleted while the watch was down
                    worker.gone()
                for pod in listing["items"]:
                    self._seen("MODIFIED", pod)
                stream = watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces, field_selector=selector,
                    resource_version=listing["metadata"]["resourceVersion"], timeout_seconds=60,
                )  # fmt: skip
                for event in stream:
                    if self.stopping.is_set():
                        return
                    if event["type"] == "ERROR":
                        break
                    self._seen(event["type"], event["raw_object"])
            except Exception:
                log.exception("watching pods; listing again")
                self.stopping.wait(1.0)

    def _seen(self, kind: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        with self._workers_lock:
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker is not None:
                    worker.gone()
                    del self.workers[uid]
                return
            if worker is not None:
                worker.update(pod)
                if not worker.is_alive() and pod["metadata"].get("deletionTimestamp"):
                    self.confirm_deletion(pod)
                return
            if self.stopping.is_set():
                return
            terminal = pod.get("status", {}).get("phase") in ("Succeeded", "Failed")
            if terminal and not pod["metadata"].get("deletionTimestamp"):
                return  # finished before this agent started: nothing to run again
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
        worker.start()


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _capacity(state: Path) -> dict[str, str]:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    memory = int(meminfo["MemTotal"].split()[0])
    disk = shutil.disk_usage(state)
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{memory}Ki",
            "ephemeral-storage": f"{disk.total // 1024}Ki", "pods": "110",
            "hugepages-2Mi": "0"}  # fmt: skip


def _node_info(version: str) -> dict[str, str]:
    def read(path: str) -> str:
        with contextlib.suppress(OSError):
            return Path(path).read_text().strip()
        return ""

    release = dict(
        line.split("=", 1) for line in read("/etc/os-release").splitlines() if "=" in line
    )
    machine_id = read("/etc/machine-id") or uuid.uuid5(uuid.NAMESPACE_DNS, platform.node()).hex
    return {
        "machineID": machine_id, "systemUUID": machine_id,
        "bootID": read("/proc/sys/kernel/random/boot_id"), "kernelVersion": platform.release(),
        "osImage": release.get("PRETTY_NAME", "Linux").strip('"'),
        "containerRuntimeVersion": "turnout-node://processes", "kubeletVersion": version,
        "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": _arch(),
    }  # fmt: skip
