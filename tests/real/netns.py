"""Pod networking on the host: a Linux bridge with addresses of its own (IPv4 and MAC), and one
network namespace per pod joined to it by a veth pair, each pod with one address of the bridge's
/24.

Why: the API server refuses to proxy to loopback addresses (`IsProxyableIP`), so a pod that the
service proxy or an EndpointSlice must reach needs an address of its own; and a pod must reach
servers on the host (MLflow), which it does at the bridge's address.

    network = PodNetwork().setup()          # bridge tnt<pid>br, 10.244.X.1/24
    pod = network.add_pod("web")            # netns tnt<pid>-web, eth0 10.244.X.2/24
    subprocess.Popen(pod.exec(["python", "-m", "http.server", "--bind", pod.ip, "8080"]))
    network.teardown()                      # pods' processes killed, netns, veths, bridge gone

Names start with `tnt` and the owner's pid in hex (one network per owner process), so parallel
runs never collide and
`cleanup_stale()` (run by every `setup()`) removes what a crashed run left: every `tnt*` netns and
link whose owner pid is no longer alive. The /24 is the first 10.244.X.0/24 that no address on the
host uses, chosen under a file lock. Only `ip` (iproute2) is used; no iptables or nftables rules
are added (the host reaches the pods by the bridge's connected route, pods reach the host at the
bridge address, no NAT), so there is nothing of that kind to clean up. Needs root.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "tnt"
POD_RANGE = ipaddress.ip_network("10.244.0.0/16")  # one /24 of it per network
LOCK = Path("/run/lock/turnout-podnet.lock")
_OWNED = re.compile(rf"^{PREFIX}([0-9a-f]+)(?:br|v\d+|-.+)$")


class NetnsUnavailable(RuntimeError):
    """This host cannot make network namespaces (not root, or no iproute2)."""


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def available() -> str | None:
    """None when network namespaces can be made here, else why not."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


@dataclass(frozen=True)
class Pod:
    name: str
    netns: str
    ip: str
    host_veth: str

    def exec(self, argv: list[str]) -> list[str]:
        """`argv` run inside this pod's network namespace (same pid: `ip netns exec` execs)."""
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass
class PodNetwork:
    owner: int = field(default_factory=os.getpid)
    subnet: ipaddress.IPv4Network | None = None
    pods: dict[str, Pod] = field(default_factory=dict)
    next_index: int = 0  # addresses go round the subnet: a freed one is reused last

    @property
    def tag(self) -> str:
        return f"{PREFIX}{self.owner:x}"

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    @property
    def gateway(self) -> str:
        """The bridge's address: where pods reach servers on the host."""
        assert self.subnet is not None, "setup() first"
        return str(self.subnet.network_address + 1)

    def setup(self) -> PodNetwork:
        reason = available()
        if reason:
            raise NetnsUnavailable(reason)
        cleanup_stale()
        with address_lock():
            self.subnet = _free_subnet()
            # an address of its own, set: a bridge left to choose takes the lowest of its ports',
            # and a new one each time that port leaves, while the pods' neighbour caches keep the
            # old one for up to a minute and their packets to the host go nowhere
            ip("link", "add", self.bridge, "address", bridge_mac(self.gateway), "type", "bridge")
            ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
        return self

    def add_pod(self, name: str) -> Pod:
        assert self.subnet is not None, "setup() first"
        taken = {int(pod.host_veth.rsplit("v", 1)[1]) for pod in self.pods.values()}
        size = self.subnet.num_addresses - 3  # less the network, the bridge, the broadcast
        # The next free address after the last one given, as a CNI's allocator does: an address
        # just freed is not given at once to a new pod, while peers (the API server's
        # EndpointSlices, the host's neighbour cache) may still point at the old one.
        free = [
            i % size
            for i in range(self.next_index, self.next_index + size)
            if i % size not in taken
        ]
        assert free, f"{self.subnet} is full"
        index = free[0]
        self.next_index = index + 1
        address = self.subnet.network_address + 2 + index
        pod = Pod(name, f"{self.tag}-{name}", str(address), f"{self.tag}v{index}")
        ip("netns", "add", pod.netns)
        self.pods[name] = pod
        ip("link", "add", pod.host_veth, "type", "veth", "peer", "name", "eth0", "netns", pod.netns)
        ip("link", "set", pod.host_veth, "master", self.bridge, "up")
        inside = ("ip", "netns", "exec", pod.netns, "ip")
        for args in (("link", "set", "lo", "up"),
                     ("addr", "add", f"{pod.ip}/{self.subnet.prefixlen}", "dev", "eth0"),
                     ("link", "set", "eth0", "up"),
                     ("route", "add", "default", "via", self.gateway)):  # fmt: skip
            subprocess.run([*inside, *args], check=True, capture_output=True, timeout=30)
        return pod

    def remove_pod(self, name: str) -> None:
        pod = self.pods.pop(name)
        _delete_netns(pod.netns)
        ip("link", "del", pod.host_veth, check=False)  # gone with its peer unless something held it

    def teardown(self) -> None:
        for name in list(self.pods):
            self.remove_pod(name)
        ip("link", "del", self.bridge, check=False)

    def __enter__(self) -> PodNetwork:
        return self.setup()

    def __exit__(self, *exc: object) -> None:
        self.teardown()


def gateways() -> tuple[str, ...]:
    """Every bridge address a PodNetwork may take (the first address of each /24 of POD_RANGE)."""
    return tuple(str(net.network_address + 1) for net in POD_RANGE.subnets(new_prefix=24))


def bridge_mac(gateway: str) -> str:
    """A locally administered unicast MAC address made of the bridge's IPv4 address: unique on
    this host, as the addresses are."""
    return "02:00:" + ":".join(f"{byte:02x}" for byte in ipaddress.ip_address(gateway).packed)


@contextlib.contextmanager
def address_lock() -> Iterator[None]:
    """Held from choosing a range of addresses until the choice shows to others: a pod network's
    /24 once its bridge has its address, a cluster's service /24 (tests/real/controlplane.py) once
    its API server runs with it."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def host_addresses() -> list[ipaddress.IPv4Interface]:
    """Every IPv4 address on this host, with its network."""
    return [ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")
            for link in json.loads(ip("-j", "-4", "addr", "show") or "[]")
            for info in link.get("addr_info", [])]  # fmt: skip


def _free_subnet() -> ipaddress.IPv4Network:
    used = [address.network for address in host_addresses()]
    for candidate in POD_RANGE.subnets(new_prefix=24):
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise RuntimeError(f"every /24 of {POD_RANGE} is in use")


def _delete_netns(name: str) -> None:
    """Kill what runs inside (a netns with live processes outlives `ip netns del`), then delete."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [int(p) for p in ip("netns", "pids", name, check=False).split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while (
            pids and time.monotonic() < deadline and ip("netns", "pids", name, check=False).split()
        ):
            time.sleep(0.05)
    ip("netns", "del", name, check=False)


def owned_names() -> tuple[list[str], list[str]]:
    """(netns names, link names) that a PodNetwork made, any owner."""
    namespaces = [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]
    links = [link["ifname"] for link in json.loads(ip("-j", "link", "show") or "[]")]
    return ([n for n in namespaces if _OWNED.match(n)], [n for n in links if _OWNED.match(n)])


def cleanup_stale() -> list[str]:
    """Remove the netns and links of owners that no longer run; return their names."""
    removed = []
    namespaces, links = owned_names()
    for name in namespaces:
        if not _owner_alive(name):
            _delete_netns(name)
            removed.append(name)
    for name in sorted(links, key=lambda n: n.endswith("br")):  # veths before their bridge
        if not _owner_alive(name):
            ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def _owner_alive(name: str) -> bool:
    match = _OWNED.match(name)
    if not match:
        return False
    try:  # a zombie (an owner killed but not reaped yet) counts as gone
        stat = Path(f"/proc/{int(match.group(1), 16)}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
