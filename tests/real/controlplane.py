"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler, built from Kubernetes' own Go modules (scripts/build-controlplane.sh), started the
way envtest starts them, plus the controller manager and scheduler that envtest leaves out.

One module behind the test fixture (tests/real/conftest.py) and `make cluster` / `make
cluster-down`:

    python -m tests.real.controlplane up   [--state .cluster]   # build if needed, start, detach
    python -m tests.real.controlplane down [--state .cluster]   # stop, remove the state dir
    python -m tests.real.controlplane status [--state .cluster]

Everything a control plane owns lives in its state dir: `pki/`, `etcd/`, one log per program in
`logs/`, one pid file per program in `pids/`, `cluster.json` (ports, URLs), and `kubeconfig` (the
admin, `system:masters`). Each program listens on a free port of 127.0.0.1 only. A control plane
started by a test dies with the test process (PR_SET_PDEATHSIG), so a killed pytest leaves nothing
behind; one started by `up` outlives it and `down` stops it by its pid files (each checked against
the process's command line, so a reused pid is never signalled).

The kubelet's part is played by the node agent of tests/real/node (tests/real/cluster.py starts
both); a Node registered by hand (tests/real/kube.py) keeps its pods Pending.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import ROOT, free_port, wait_until
from tests.real import netns
from tests.real import pki as pki_module

BUILD_SCRIPT = ROOT / "scripts" / "build-controlplane.sh"
# Order of start; stopped in reverse.
PROGRAMS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
# ClusterIPs: one /24 of this range per cluster (`free_service_range`); pod addresses come from
# tests/real/netns.py's range
SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/16")
SERVICE_RANGE_FLAG = "--service-cluster-ip-range="
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

STOP_TIMEOUT = 20.0


class ToolchainMissing(RuntimeError):
    """No Go toolchain to build the control plane with (the build script's exit code 3)."""


def build(*, stream: bool = True) -> Path:
    """The bin directory of the cached build, building it first if needed (progress on stderr)."""
    done = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False,
        stderr=None if stream else subprocess.PIPE,
    )  # fmt: skip
    if done.returncode == 3:
        raise ToolchainMissing(
            "Go is not installed: the real control plane is built from Kubernetes' Go modules"
        )
    if done.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed ({done.returncode}): {done.stderr or ''}")
    return Path(done.stdout.strip().splitlines()[-1])


@dataclass
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port(), free_port())


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the process that started it exits."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class ControlPlane:
    """One control plane and its state dir. `start()` then `stop()`, or `destroy()` for both
    stop and removing the state."""

    def __init__(self, state: Path, bin_dir: Path | None = None) -> None:
        self.state = state.resolve()
        self.bin_dir = bin_dir
        self.pki_dir = self.state / "pki"
        self.kubeconfig = self.state / "kubeconfig"
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # --- what clients need ------------------------------------------------------------------
    @property
    def ports(self) -> Ports:
        return Ports(**json.loads((self.state / "cluster.json").read_text())["ports"])

    @property
    def server(self) -> str:
        return self.server_for(self.ports)

    @property
    def service_cidr(self) -> str:
        """This cluster's service range (a /24 of SERVICE_RANGE): where its ClusterIPs come from."""
        return str(json.loads((self.state / "cluster.json").read_text())["serviceCIDR"])

    @property
    def kubernetes_service_ip(self) -> str:
        """The `kubernetes` Service's ClusterIP: the range's first address, named by the API
        server's certificate."""
        return str(ipaddress.ip_network(self.service_cidr).network_address + 1)

    @property
    def proxy_kubeconfig(self) -> Path:
        """kube-proxy's kubeconfig (`system:kube-proxy`, bound to `system:node-proxier`), for the
        node agent's Service proxy."""
        return self.state / "kube-proxy.kubeconfig"

    @property
    def ca(self) -> Path:
        return self.pki_dir / "ca.crt"

    def client_cert(self, name: str = "admin") -> tuple[str, str]:
        return str(self.pki_dir / f"{name}.crt"), str(self.pki_dir / f"{name}.key")

    def tls(self, user: str | None = "admin") -> ssl.SSLContext:
        """Trusts the cluster CA; presents `user`'s client certificate unless None."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if user is not None:
            context.load_cert_chain(*self.client_cert(user))
        return context

    def http(self, *, user: str | None = "admin", token: str | None = None) -> httpx.Client:
        """An httpx client for the API server: a user's client certificate, or a bearer token."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.Client(base_url=self.server, verify=self.tls(None if token else user),
                            headers=headers, timeout=30)  # fmt: skip

    def node_kubeconfig(self, node: str) -> Path:
        """A kubeconfig for a kubelet of Node `node` (`system:node:<node>` in `system:nodes`)."""
        path = self.state / f"node-{node}.kubeconfig"
        client = pki_module.node_client(self.pki_dir, node)
        return write_kubeconfig(path, self.server, self.ca, client)

    def log(self, program: str) -> Path:
        return self.state / "logs" / f"{program}.log"

    @property
    def audit_log(self) -> Path:
        return self.state / "logs" / "audit.log"

    def audit(self, username: str) -> list[dict[str, Any]]:
        """The API server's audit events of one user, oldest first, one per request (at its end;
        a proxied request's ResponseStarted event is left out): `verb`, `objectRef` (apiGroup,
        resource, subresource, namespace, name), `responseStatus.code`. The control plane's own
        components and the nodes are not recorded."""
        if not self.audit_log.exists():
            return []
        with self.audit_log.open() as lines:
            events = (json.loads(line) for line in lines if line.strip())
            return [e for e in events if e["user"]["username"] == username
                    and e["stage"] == "ResponseComplete"]  # fmt: skip

    # --- lifecycle --------------------------------------------------------------------------
    def start(self, *, detach: bool = False, timeout: float = 180.0) -> float:
        """Start all four programs with a fresh PKI and empty etcd; return the seconds until the
        API server is ready, the controllers run and the `default` ServiceAccount exists.
        `detach`: the programs outlive this process (for `make cluster`)."""
        if self.bin_dir is None:
            self.bin_dir = build()
        self.stop()
        self._wipe()
        for sub in ("logs", "pids", "etcd"):
            (self.state / sub).mkdir(parents=True)
        (self.state / "etcd").chmod(0o700)
        began = time.monotonic()
        ports = Ports.free()
        info = {"ports": asdict(ports), "bin": str(self.bin_dir)}
        (self.state / "cluster.json").write_text(json.dumps(info, indent=2))
        try:
            self._spawn("etcd", self._etcd_args(ports), detach)
            self._wait(lambda: httpx.get(f"http://127.0.0.1:{ports.etcd_client}/health").json()["health"] == "true",
                       "etcd", timeout)  # fmt: skip
            with netns.address_lock():  # the range is taken once the API server runs with it
                info["serviceCIDR"] = str(free_service_range())
                (self.state / "cluster.json").write_text(json.dumps(info, indent=2))
                keys = pki_module.create(self.pki_dir, service_ip=self.kubernetes_service_ip,
                                         pod_gateways=netns.gateways())  # fmt: skip
                for name, pair in keys.clients.items():
                    path = self.kubeconfig if name == "admin" else self.state / f"{name}.kubeconfig"
                    write_kubeconfig(path, self.server_for(ports), keys.ca.cert, pair)
                self._spawn("kube-apiserver", self._apiserver_args(ports, keys), detach)
            with self.http() as api:
                self._wait(lambda: api.get("/readyz").status_code == 200, "kube-apiserver /readyz",
                           timeout)  # fmt: skip
            self._spawn(
                "kube-controller-manager", self._controller_manager_args(ports, keys), detach
            )
            self._spawn("kube-scheduler", self._scheduler_args(ports, keys), detach)
            for program, port in (("kube-controller-manager", ports.controller_manager),
                                  ("kube-scheduler", ports.scheduler)):  # fmt: skip
                self._wait(lambda p=port: httpx.get(f"https://127.0.0.1:{p}/healthz",
                                                    verify=self.tls(None)).status_code == 200,
                           f"{program} /healthz", timeout)  # fmt: skip
            with self.http() as api:
                self._wait(
                    lambda: api.get("/api/v1/namespaces/default/serviceaccounts/default").status_code == 200,
                    "the ServiceAccount controller to create default/default", timeout,
                )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - began

    @staticmethod
    def server_for(ports: Ports) -> str:
        return f"https://127.0.0.1:{ports.apiserver}"

    def running(self) -> dict[str, int]:
        """The programs of this state dir that run now, with their pids."""
        found = {}
        for program in PROGRAMS:
            pid = self._pid(program)
            if pid is not None and _is_ours(pid, self.state):
                found[program] = pid
        return found

    def stop(self) -> None:
        """SIGTERM each program (reverse order), SIGKILL what is left after STOP_TIMEOUT; leaves
        the state dir in place (its logs tell what happened)."""
        for program in reversed(PROGRAMS):
            pid = self._pid(program)
            if pid is not None and _is_ours(pid, self.state):
                _terminate(pid, self._children.get(program))
            (self.state / "pids" / f"{program}.pid").unlink(missing_ok=True)
        self._children.clear()

    def destroy(self) -> None:
        self.stop()
        self._wipe()

    # --- internals --------------------------------------------------------------------------
    def _wipe(self) -> None:
        """Remove the state dir, if it is one (or empty): never a directory of something else."""
        if self.state.is_dir() and any(self.state.iterdir()):
            if not (self.state / "cluster.json").exists():
                raise RuntimeError(f"{self.state} is not empty and not a control plane's state dir")
            shutil.rmtree(self.state)

    def _pid(self, program: str) -> int | None:
        try:
            return int((self.state / "pids" / f"{program}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _spawn(self, program: str, args: list[str], detach: bool) -> None:
        assert self.bin_dir is not None
        with self.log(program).open("ab") as log:
            child = subprocess.Popen(
                [str(self.bin_dir / program), *args], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=self.state, start_new_session=True,
                preexec_fn=None if detach else die_with_parent,
            )  # fmt: skip
        self._children[program] = child
        (self.state / "pids" / f"{program}.pid").write_text(str(child.pid))

    def _wait(self, probe: Callable[[], bool], what: str, timeout: float) -> None:
        def ready() -> bool:
            for program, child in self._children.items():
                if child.poll() is not None:
                    tail = self.log(program).read_text(errors="replace")[-3000:]
                    raise AssertionError(f"{program} exited {child.returncode}:\n{tail}")
            return probe()

        wait_until(ready, timeout=timeout, interval=0.1, what=what)

    def _etcd_args(self, p: Ports) -> list[str]:
        client, peer = f"http://127.0.0.1:{p.etcd_client}", f"http://127.0.0.1:{p.etcd_peer}"
        return [
            "--name=turnout", f"--data-dir={self.state / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=turnout={peer}",
            # a throwaway store: no fsync (as envtest), the disk is shared with other builds
            "--unsafe-no-fsync=true", "--log-level=warn",
        ]  # fmt: skip

    def _apiserver_args(self, p: Ports, keys: pki_module.Pki) -> list[str]:
        return [
            f"--etcd-servers=http://127.0.0.1:{p.etcd_client}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            # the `kubernetes` Service gets no endpoints: its reconciler refuses a loopback address
            # (and no pod could reach one); clients use the kubeconfig's URL
            "--endpoint-reconciler-type=none",
            f"--secure-port={p.apiserver}", f"--cert-dir={self.pki_dir}",
            f"--tls-cert-file={keys.serving.cert}", f"--tls-private-key-file={keys.serving.key}",
            f"--client-ca-file={keys.ca.cert}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={keys.service_account_pub}",
            f"--service-account-signing-key-file={keys.service_account_key}",
            f"{SERVICE_RANGE_FLAG}{self.service_cidr}",
            "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            # as kubeadm: a node's credentials write only its own Node, Lease and pods' status
            "--enable-admission-plugins=NodeRestriction",
            # the aggregation layer's identity (as kubeadm configures it)
            f"--requestheader-client-ca-file={keys.front_proxy_ca.cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={keys.front_proxy_client.cert}",
            f"--proxy-client-key-file={keys.front_proxy_client.key}",
            "--profiling=false",
            # who asked for what and how it was answered (tests read it: RBAC refusals, calls)
            f"--audit-policy-file={self._audit_policy()}", f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json", "--audit-log-mode=blocking", "--audit-log-maxbackup=0",
        ]  # fmt: skip

    def _audit_policy(self) -> Path:
        """Every request at the Metadata level, but the control plane's own and the nodes'."""
        path = self.state / "audit-policy.yaml"
        path.write_text(yaml.safe_dump({
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
            "rules": [
                {"level": "None", "users": ["system:apiserver", "system:kube-controller-manager",
                                            "system:kube-scheduler"]},
                {"level": "None", "userGroups": ["system:nodes",
                                                 "system:serviceaccounts:kube-system"]},
                {"level": "Metadata"},
            ],
        }))  # fmt: skip
        return path

    def _component_args(self, name: str, port: int, keys: pki_module.Pki) -> list[str]:
        kubeconfig = self.state / f"{name}.kubeconfig"
        return [
            f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={port}",
            f"--tls-cert-file={keys.serving.cert}", f"--tls-private-key-file={keys.serving.key}",
            f"--client-ca-file={keys.ca.cert}",
            f"--requestheader-client-ca-file={keys.front_proxy_ca.cert}",
            "--leader-elect=false", "--profiling=false",
        ]  # fmt: skip

    def _controller_manager_args(self, p: Ports, keys: pki_module.Pki) -> list[str]:
        return [
            *self._component_args("kube-controller-manager", p.controller_manager, keys),
            f"--service-account-private-key-file={keys.service_account_key}",
            f"--root-ca-file={keys.ca.cert}",
            f"--cluster-signing-cert-file={keys.ca.cert}",
            f"--cluster-signing-key-file={keys.ca.key}",
            "--use-service-account-credentials=true",  # each controller acts as its own SA
            "--cluster-name=turnout", "--allocate-node-cidrs=false",
            "--controllers=*",  # 1.37 has no cloud controllers left to turn off
        ]  # fmt: skip

    def _scheduler_args(self, p: Ports, keys: pki_module.Pki) -> list[str]:
        return self._component_args("kube-scheduler", p.scheduler, keys)


def free_service_range() -> ipaddress.IPv4Network:
    """The first /24 of SERVICE_RANGE that no kube-apiserver running on this host serves and no
    address of this host lies in, so two clusters on one machine (CI and a developer's, two test
    sessions) never share a ClusterIP: their node agents put ClusterIPs on the host as addresses.
    Call under `netns.address_lock()`, held until the API server that takes it runs. (A cluster
    of an older checkout serves all of 10.96.0.0/16 and puts no ClusterIP on the host: that claim
    is ignored.)"""
    served = [net for net in _served_service_ranges() if net.prefixlen >= 24]
    addresses = [address.ip for address in netns.host_addresses()]
    for candidate in SERVICE_RANGE.subnets(new_prefix=24):
        if not any(candidate.overlaps(net) for net in served) and not any(
            address in candidate for address in addresses
        ):
            return candidate
    raise RuntimeError(f"every /24 of {SERVICE_RANGE} is served by a running cluster")


def _served_service_ranges() -> list[ipaddress.IPv4Network]:
    """The `--service-cluster-ip-range` of every process of this host that has one."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            for arg in cmdline.read_bytes().decode(errors="replace").split("\0"):
                if arg.startswith(SERVICE_RANGE_FLAG):
                    with contextlib.suppress(ValueError):
                        found.append(ipaddress.ip_network(arg.removeprefix(SERVICE_RANGE_FLAG),
                                                          strict=False))  # fmt: skip
    return found


def write_kubeconfig(path: Path, server: str, ca: Path, client: pki_module.KeyPair) -> Path:
    """A self-contained kubeconfig (certificates inlined), usable from any directory."""
    cert, key = client.pem()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "turnout",
        "clusters": [{"name": "turnout", "cluster": {
            "server": server, "certificate-authority-data": b64(ca.read_bytes())}}],
        "users": [{"name": "turnout", "user": {
            "client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
        "contexts": [{"name": "turnout", "context": {
            "cluster": "turnout", "user": "turnout", "namespace": "default"}}],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def _is_ours(pid: int, state: Path) -> bool:
    """The pid runs a program of this state dir (every one names it in its flags)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return status != "Z" and str(state).encode() in cmdline


def _terminate(pid: int, child: subprocess.Popen[bytes] | None) -> None:
    def gone() -> bool:
        if child is not None:
            return child.poll() is not None
        return not Path(f"/proc/{pid}").exists() or _zombie(pid)

    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if gone():
                return
            time.sleep(0.05)
    raise RuntimeError(f"pid {pid} survived SIGKILL")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


# --- command line (make cluster / make cluster-down) ----------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.real.controlplane", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--state", type=Path, default=ROOT / ".cluster")
    args = parser.parse_args(argv)
    try:
        return _command(args.command, ControlPlane(args.state))
    except ToolchainMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (RuntimeError, AssertionError) as exc:  # a refused state dir, a program that died
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _command(command: str, plane: ControlPlane) -> int:
    if command == "down":
        plane.destroy()
        print(f"control plane stopped; {plane.state} removed")
        return 0
    running = plane.running() if (plane.state / "cluster.json").exists() else {}
    if command == "status":
        for program in PROGRAMS:
            print(f"{program:24} {running.get(program, 'not running')}")
        return 0 if len(running) == len(PROGRAMS) else 1
    if len(running) == len(PROGRAMS):
        print(f"already running: {plane.server}; kubeconfig {plane.kubeconfig}")
        return 0
    seconds = plane.start(detach=True)
    print(f"control plane ready in {seconds:.1f} s: {plane.server}")
    print(f"  kubectl --kubeconfig {plane.kubeconfig} get ns")
    print(f"  logs: {plane.state / 'logs'}; stop with `make cluster-down`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
