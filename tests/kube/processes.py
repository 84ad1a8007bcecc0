"""Run a pod template's first container as a local process: the controller's `process` behaviour.

There is no container runtime here, so a "container" is `command + args` started on this machine
with the container's `env`/`envFrom` (Secret and ConfigMap references resolved from the Store). Each
declared `containerPort` gets a free local port: every occurrence of that number in args and env values
is replaced by it, and `0.0.0.0` by `127.0.0.1`, so a server configured for the cluster listens where
the test can reach it. The environment is the pod's own plus PATH (this venv's bin first), HOME, LANG
and TMPDIR: nothing else leaks in from the test process, as nothing would in a cluster.

Readiness follows the container's `readinessProbe` (`httpGet` or `tcpSocket`; 200-399 is success;
`failureThreshold` consecutive failures make it unready; each waits `timeoutSeconds`, 1 s unless
set); with no probe, the first declared port accepting connections counts as ready.
`initialDelaySeconds` is ignored and periods are capped at 1 s.
A process that exits is restarted with exponential backoff (1, 2, 4, 8 s), at most `max_restarts`
times; meanwhile its pod reports `CrashLoopBackOff`.

Termination messages as the kubelet keeps them (`kuberuntime_container.go`): the container's
`terminationMessagePath` is an empty file of the pod's (made anew for each run; its path is
rewritten in args and env like a mount's), read when the process exits (at most 4096 bytes); under
`FallbackToLogsOnError`, a failed run that left it empty reports its log's last 80 lines (at most
2048 bytes) instead. The pod's `lastState.terminated.message` carries it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.kube.volumes import path_table, set_up
from tests.podspec import Lookup, container_env, expand, termination_message

Obj = dict[str, Any]
BIN = Path(sys.executable).parent
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StartError(Exception):
    """The container's command cannot be run (reported as `RunContainerError`)."""


@dataclass(frozen=True)
class Probe:
    port: int
    path: str | None  # None: a TCP connect probe
    period: float
    failure_threshold: int
    timeout: float = 1.0  # the probe's timeoutSeconds (the API server defaults it to 1)

    def check(self) -> bool:
        try:
            if self.path is None:
                with socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout):
                    return True
            url = f"http://127.0.0.1:{self.port}{self.path}"
            with _NO_PROXY.open(url, timeout=self.timeout) as rsp:
                return 200 <= int(rsp.status) < 400
        except urllib.error.HTTPError as exc:
            return 200 <= exc.code < 400
        except OSError:
            return False


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    ports: dict[int, int]  # declared containerPort -> local port
    named_ports: dict[str, int] = field(default_factory=dict)  # port name -> containerPort
    probe: Probe | None = None
    cwd: Path | None = None  # the container's workingDir on this machine (None: the log's folder)
    mounts: dict[str, Path] = field(default_factory=dict)  # mountPath -> its directory here
    termination_log: Path | None = None  # the container's terminationMessagePath, here
    fallback_to_logs: bool = False  # terminationMessagePolicy FallbackToLogsOnError

    def local_port(self, port: int | str) -> int | None:
        """The local port for a container port given by number or by name."""
        number = self.named_ports.get(port) if isinstance(port, str) else port
        if number is None and isinstance(port, str) and port.isdigit():
            number = int(port)
        return None if number is None else self.ports.get(number)


def _rewrite(value: str, ports: Mapping[int, int], mounts: Mapping[str, Path] | None = None) -> str:
    value = value.replace("0.0.0.0", "127.0.0.1")
    for declared, local in ports.items():
        value = re.sub(rf"(?<!\d){declared}(?!\d)", str(local), value)
    if mounts:
        # One pass, the deepest mount path first where several match: a path already rewritten
        # is not rewritten again (the pod's directory may itself lie under a mount path, /tmp).
        paths = "|".join(re.escape(path) for path in sorted(mounts, key=len, reverse=True))
        pattern = rf"(?<![\w./-])({paths})(?=/|$|[^\w.-])"
        value = re.sub(pattern, lambda match: str(mounts[match[1]]), value)
    return value


def _env(container: Obj, namespace: str, pod_name: str, lookup: Lookup) -> dict[str, str]:
    fields = {"metadata.name": pod_name, "metadata.namespace": namespace,
              "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1"}  # fmt: skip
    return container_env(container, namespace, lookup, fields)


def _probe(container: Obj, launch_ports: dict[int, int], named: dict[str, int]) -> Probe | None:
    spec = container.get("readinessProbe") or {}
    period = min(float(spec.get("periodSeconds", 10)), 1.0)
    threshold = int(spec.get("failureThreshold", 3))
    # A busy machine answers slower: a probe waits as long as the pod's spec lets the kubelet.
    timeout = float(spec.get("timeoutSeconds", 1))
    action = spec.get("httpGet") or spec.get("tcpSocket")
    if action is not None:
        port = action.get("port", 0)
        number = named.get(port, 0) if isinstance(port, str) and not port.isdigit() else int(port)
        local = launch_ports.get(number, number)
        path = action.get("path", "/") if "httpGet" in spec else None
        return Probe(local, path, period, threshold, timeout)
    if launch_ports:
        return Probe(next(iter(launch_ports.values())), None, period, threshold, timeout)
    return None


def plan_launch(
    template: Obj,
    namespace: str,
    pod_name: str,
    lookup: Lookup,
    extra_env: Mapping[str, str],
    pod_dir: Path,
) -> Launch:
    """How to run the template's first container here; raises MountError/ConfigError/StartError as
    a kubelet would report them (volumes are set up first, as the kubelet mounts before it starts)."""
    container = template["spec"]["containers"][0]
    mounts = path_table(set_up(template["spec"], container, namespace, lookup, pod_dir), pod_dir)
    message_path = container.get("terminationMessagePath", "/dev/termination-log")
    termination_log = pod_dir / "termination-log"
    mounts.setdefault(message_path, termination_log)
    declared = [p for p in container.get("ports", []) if "containerPort" in p]
    ports = {int(p["containerPort"]): free_port() for p in declared}
    named = {p["name"]: int(p["containerPort"]) for p in declared if p.get("name")}
    env = {k: _rewrite(v, ports, mounts)
           for k, v in _env(container, namespace, pod_name, lookup).items()}  # fmt: skip
    command = [*container.get("command", []), *container.get("args", [])]
    if not container.get("command"):
        raise StartError("the process behaviour needs the container's `command` (no image here)")
    argv = [_rewrite(expand(str(arg), env), ports, mounts) for arg in command]
    search = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    executable = shutil.which(argv[0], path=search)
    if executable is None:
        raise StartError(f'exec: "{argv[0]}": executable file not found in $PATH')
    base = {"PATH": search, "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
            "TMPDIR": os.environ.get("TMPDIR", "/tmp")}  # fmt: skip
    cwd = None
    if container.get("workingDir"):  # the pod's own folder of that name, in its view
        cwd = pod_dir / "fs" / container["workingDir"].lstrip("/")
        cwd.mkdir(parents=True, exist_ok=True)
    return Launch(
        argv=[executable, *argv[1:]],
        env={**base, **env, **extra_env},
        ports=ports,
        named_ports=named,
        probe=_probe(container, ports, named),
        cwd=cwd,
        mounts=mounts,
        termination_log=termination_log,
        fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
    )


class ContainerProcess:
    """One container process: started, probed, restarted with backoff, and finally stopped."""

    def __init__(self, launch: Launch, log_path: Path, *, max_restarts: int = 5) -> None:
        self.launch = launch
        self.log_path = log_path
        self.max_restarts = max_restarts
        self.restarts = 0
        self.ready = False
        self.last_exit_code: int | None = None
        self.last_message = ""  # the termination message the last run left
        self.popen: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # where this run's output begins in the log
        self._next_start = 0.0
        self._next_probe = 0.0
        self._failures = 0

    @property
    def running(self) -> bool:
        return self.popen is not None

    def tick(self, now: float) -> None:
        if self.popen is None:
            if self.restarts <= self.max_restarts and now >= self._next_start:
                self._spawn()
            return
        code = self.popen.poll()
        if code is not None:
            self.last_exit_code, self.popen, self.ready = code, None, False
            self.last_message = self._termination_message(code)
            self.restarts += 1
            self._next_start = now + min(8.0, 2.0 ** (self.restarts - 1))
            return
        if now >= self._next_probe:
            self._probe(now)

    def _probe(self, now: float) -> None:
        probe = self.launch.probe
        if probe is None:
            self.ready = True
            return
        if probe.check():
            self.ready, self._failures = True, 0
        else:
            self._failures += 1
            if self._failures >= probe.failure_threshold:
                self.ready = False
        self._next_probe = now + (probe.period if self.ready else 0.2)

    def _termination_message(self, code: int) -> str:
        path = self.launch.termination_log
        said = path.read_bytes() if path is not None and path.is_file() else b""
        return termination_message(said, code, self.launch.fallback_to_logs,
                                   lambda: self.log_path.read_bytes()[self._log_start:])  # fmt: skip

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.launch.termination_log is not None:  # a fresh, empty file for each run
            self.launch.termination_log.parent.mkdir(parents=True, exist_ok=True)
            self.launch.termination_log.write_bytes(b"")
        with self.log_path.open("ab") as log:
            self._log_start = log.tell()
            log.write(f"# kube-emulator: starting {self.launch.argv}\n".encode())
            log.flush()
            try:
                self.popen = subprocess.Popen(
                    self.launch.argv, env=self.launch.env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, cwd=self.launch.cwd or self.log_path.parent,
                    start_new_session=True,
                )  # fmt: skip
            except OSError as exc:  # e.g. not executable: counts as a crash, like a failed start
                log.write(f"# kube-emulator: {exc}\n".encode())
                self.last_exit_code, self.restarts = 128, self.restarts + 1
                self._next_start = time.monotonic() + min(8.0, 2.0 ** (self.restarts - 1))
        self._failures, self.ready, self._next_probe = 0, False, 0.0

    def detach(self) -> subprocess.Popen[bytes] | None:
        """Stop managing the process and hand it over for termination (see `Reaper`)."""
        popen, self.popen, self.ready = self.popen, None, False
        self.restarts = self.max_restarts + 1  # never restarts again
        return popen


class Reaper:
    """Terminates processes without blocking the controller: SIGTERM to the process group now,
    SIGKILL once `grace` seconds have passed."""

    def __init__(self, grace: float = 3.0) -> None:
        self.grace = grace
        self._dying: list[tuple[subprocess.Popen[bytes], float]] = []

    def terminate(self, popen: subprocess.Popen[bytes] | None, now: float) -> None:
        if popen is not None and popen.poll() is None:
            _signal(popen, signal.SIGTERM)
            self._dying.append((popen, now + self.grace))

    def reap(self, now: float) -> None:
        alive = []
        for popen, deadline in self._dying:
            if popen.poll() is None and now >= deadline:
                _signal(popen, signal.SIGKILL)
                popen.wait(5)
            elif popen.poll() is None:
                alive.append((popen, deadline))
        self._dying = alive

    def wait_all(self) -> None:
        for popen, deadline in self._dying:
            try:
                popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(popen, signal.SIGKILL)
                popen.wait(5)
        self._dying = []


def _signal(popen: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, sig)
