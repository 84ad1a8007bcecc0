"""Pod networking on the host (tests/real/netns.py): a server in a pod's network namespace is
reached at the pod's IP, a pod reaches the host at the bridge address, parallel networks do not
collide, and what a crashed owner left behind is removed."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.conftest import wait_until
from tests.real import netns
from tests.real.conftest import PodServer

pytestmark = pytest.mark.real


def test_a_server_in_a_pod_listens_on_the_pod_ip_and_the_host_reaches_it(
    pod_network: netns.PodNetwork, echo_server: PodServer
) -> None:
    pod = echo_server.pod
    assert ipaddress.ip_address(pod.ip) in pod_network.subnet  # type: ignore[operator]
    assert pod.ip != pod_network.gateway
    identify = subprocess.run(["ip", "netns", "identify", str(echo_server.process.pid)],
                              capture_output=True, text=True, check=True)  # fmt: skip
    assert identify.stdout.strip() == pod.netns
    answer = httpx.get(f"{echo_server.url}/from/the/host", headers={"X-Probe": "host"}).json()
    assert answer["path"] == "/from/the/host"
    assert ["X-Probe", "host"] in answer["headers"]
    # it listens in the pod's namespace only: the host's loopback has nothing on that port
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{echo_server.port}/", timeout=2)


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"host saw {self.client_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def host_server(pod_network: netns.PodNetwork) -> Iterator[str]:
    """An HTTP server on the host, bound to the bridge address only (as MLflow would be)."""
    server = ThreadingHTTPServer((pod_network.gateway, 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{pod_network.gateway}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def fetch(pod: netns.Pod, url: str, *, timeout: float) -> str:
    """What `url` answers a GET from inside `pod`'s network namespace."""
    script = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout={timeout}).read().decode())"
    done = subprocess.run(pod.exec([sys.executable, "-c", script]), capture_output=True, text=True,
                          timeout=timeout + 30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_pod_reaches_a_server_on_the_bridge_address(
    pod_network: netns.PodNetwork, echo_server: PodServer, host_server: str
) -> None:
    # the host sees the pod's own address as the source: no NAT between them
    assert fetch(echo_server.pod, host_server, timeout=10) == f"host saw {echo_server.pod.ip}"


def test_a_pod_still_reaches_the_host_at_once_after_the_port_with_the_lowest_mac_leaves(
    pod_network: netns.PodNetwork, host_server: str
) -> None:  # fmt: skip
    # A bridge left to choose its MAC takes its ports' lowest and changes it when that port
    # leaves; a pod that cached the old one reaches nothing on the host until its neighbour
    # entry expires (up to a minute). The departing pod's port gets the lowest MAC there is.
    client, leaving = pod_network.add_pod("client"), pod_network.add_pod("leaving")
    netns.ip("link", "set", leaving.host_veth, "address", "02:00:00:00:00:01")
    bridge_mac = netns.bridge_mac(pod_network.gateway)

    def reach_the_host() -> None:
        assert fetch(client, host_server, timeout=3) == f"host saw {client.ip}"
        neighbours = subprocess.run(client.exec(["ip", "-j", "neigh", "show", pod_network.gateway]),
                                    capture_output=True, text=True, check=True)  # fmt: skip
        assert [n["lladdr"] for n in json.loads(neighbours.stdout)] == [bridge_mac]

    reach_the_host()
    pod_network.remove_pod("leaving")
    [link] = json.loads(netns.ip("-j", "link", "show", pod_network.bridge))
    assert link["address"] == bridge_mac
    reach_the_host()


def test_parallel_networks_take_different_subnets_and_names() -> None:
    # one network per owner process: two live stand-ins for two parallel runs
    holders = [subprocess.Popen(["sleep", "300"]) for _ in range(2)]
    try:
        with netns.PodNetwork(owner=holders[0].pid) as mine, \
                netns.PodNetwork(owner=holders[1].pid) as theirs:  # fmt: skip
            assert mine.subnet != theirs.subnet
            assert not mine.subnet.overlaps(theirs.subnet)  # type: ignore[union-attr]
            assert mine.bridge != theirs.bridge
            a, b = mine.add_pod("web"), theirs.add_pod("web")
            assert (a.netns, a.host_veth) != (b.netns, b.host_veth)
            theirs.teardown()
            namespaces, links = netns.owned_names()
            assert a.netns in namespaces and mine.bridge in links
            assert b.netns not in namespaces and theirs.bridge not in links
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


CRASHING_OWNER = textwrap.dedent("""
    import subprocess, sys
    from tests.real import netns
    network = netns.PodNetwork().setup()
    pod = network.add_pod("orphan")
    sleeper = subprocess.Popen(pod.exec(["sleep", "300"]))
    print(network.tag, pod.netns, network.bridge, pod.host_veth, sleeper.pid, flush=True)
    sys.stdin.read()  # until killed
""")


def test_what_a_killed_owner_left_is_cleaned_up_by_the_next_setup() -> None:
    owner = subprocess.Popen([sys.executable, "-c", CRASHING_OWNER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert owner.stdout is not None
    tag, namespace, bridge, veth, sleeper = owner.stdout.readline().split()
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    namespaces, links = netns.owned_names()
    assert namespace in namespaces and {bridge, veth} <= set(links)  # left behind, as a crash would
    assert os.path.exists(f"/proc/{sleeper}")

    removed = netns.cleanup_stale()

    assert sorted(n for n in removed if n.startswith(tag)) == sorted([namespace, bridge, veth])
    namespaces, links = netns.owned_names()
    assert [n for n in [*namespaces, *links] if n.startswith(tag)] == []
    wait_until(lambda: not os.path.exists(f"/proc/{sleeper}") or _zombie(int(sleeper)), timeout=10,
               what="the process inside the stale namespace to be killed")  # fmt: skip


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
