"""What the node agent makes of the cluster's Services: where its Service proxy listens and where
each listener forwards to (kube-proxy's part), and the lines of each pod's /etc/hosts and
/etc/resolv.conf (the kubelet's and cluster DNS's). Pure: the Services and EndpointSlices come in
as the API server serves them, nothing is listened on or written here (`proxy.py` and the agent
do that).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Obj = dict[str, Any]
Address = tuple[str, int]
DOMAIN = "cluster.local"
SERVICE_NAME = "kubernetes.io/service-name"  # the label that ties an EndpointSlice to its Service
# The kubelet's managed hosts file begins so (pkg/kubelet/kubelet_pods.go, managedHostsHeader)
LOCAL_HOSTS = """\
# Kubernetes-managed hosts file.
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
"""


def cluster_ip(service: Obj) -> str | None:
    """The Service's ClusterIP; None for a headless or ExternalName Service."""
    spec = service.get("spec") or {}
    address = spec.get("clusterIP")
    if spec.get("type") == "ExternalName" or address in (None, "", "None"):
        return None
    return str(address)


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta["namespace"], meta["name"]


def routes(services: Iterable[Obj], slices: Iterable[Obj]) -> dict[Address, list[Address]]:
    """ClusterIP:port of every TCP port of every Service with a ClusterIP -> the ready endpoints'
    address:port (the EndpointSlice port of the same name), sorted. A Service without ready
    endpoints still has its entry, with none (its connections are closed)."""
    by_service: dict[tuple[str, str], list[Obj]] = {}
    for piece in slices:
        owner = (piece["metadata"].get("labels") or {}).get(SERVICE_NAME)
        if owner and piece.get("addressType") == "IPv4":
            by_service.setdefault((piece["metadata"]["namespace"], owner), []).append(piece)
    found: dict[Address, list[Address]] = {}
    for service in services:
        address = cluster_ip(service)
        if address is None:
            continue
        pieces = by_service.get(_key(service), [])
        for port in service["spec"].get("ports") or []:
            if port.get("protocol", "TCP") != "TCP":
                continue
            name = port.get("name") or ""
            found[(address, int(port["port"]))] = sorted(
                {(ip, int(target["port"])) for piece in pieces
                 for target in piece.get("ports") or []
                 if (target.get("name") or "") == name and target.get("protocol", "TCP") == "TCP"
                 and target.get("port") is not None
                 for endpoint in piece.get("endpoints") or [] if _ready(endpoint)
                 for ip in endpoint.get("addresses") or []}
            )  # fmt: skip
    return found


def _ready(endpoint: Obj) -> bool:
    """An endpoint whose readiness is unknown counts as ready (the EndpointSlice API's rule)."""
    return (endpoint.get("conditions") or {}).get("ready") is not False


def names(services: Iterable[Obj]) -> list[tuple[str, str, str]]:
    """(namespace, name, ClusterIP) of the Services a pod's /etc/hosts names, sorted."""
    return sorted((*_key(s), address) for s in services if (address := cluster_ip(s)) is not None)


def hosts_file(
    pod_ip: str, hostname: str, namespace: str, services: Iterable[tuple[str, str, str]],
    aliases: Iterable[Obj] = (),
) -> str:  # fmt: skip
    """A pod's /etc/hosts: the kubelet's (localhost, the pod's own hostname, hostAliases), then
    one line per Service in place of cluster DNS: `<clusterIP> <svc>.<ns>.svc.cluster.local
    <svc>.<ns>.svc <svc>.<ns>`, and `<svc>` for the pod's own namespace."""
    lines = [LOCAL_HOSTS + f"{pod_ip}\t{hostname}\n"]
    aliases = list(aliases)
    if aliases:
        lines.append("\n# Entries added by HostAliases.\n")
        lines += ["\t".join([a["ip"], *(a.get("hostnames") or [])]) + "\n" for a in aliases]
    lines.append("\n# Services (the node agent's stand-in for cluster DNS).\n")
    for ns, name, address in services:
        short = f" {name}" if ns == namespace else ""
        lines.append(f"{address}\t{name}.{ns}.svc.{DOMAIN} {name}.{ns}.svc {name}.{ns}{short}\n")
    return "".join(lines)


def resolv_conf(namespace: str) -> str:
    """A pod's /etc/resolv.conf as the kubelet writes it for dnsPolicy ClusterFirst, with no
    cluster DNS server: the name server is the pod's own loopback, where nothing answers, so a
    name that /etc/hosts lacks fails at once and no query leaves the pod."""
    search = f"{namespace}.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}"
    return f"search {search}\nnameserver 127.0.0.1\noptions ndots:5\n"
