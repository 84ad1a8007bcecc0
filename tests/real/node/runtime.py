"""The node agent's container runtime: start a container as a process in its pod's network
namespace (through `launcher.py`, which keeps the pid), run its probes and lifecycle hooks, stop
it. No decisions here: the pod worker (`pods.py`) says what to run, when, and what a result means.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.real.node.plan import Files, Launch

Obj = dict[str, Any]
LAUNCHER = Path(__file__).with_name("launcher.py")
# What stands for the containers' image: this Python and the checkout its packages are installed
# from (editable), kept visible under any volume that covers them (an emptyDir at /tmp).
IMAGE = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, LAUNCHER.parents[3])})
USER_AGENT = "kube-probe/1.37"
log = logging.getLogger(__name__)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_volume(directory: Path, files: Files | None, *, memory: bool = False) -> None:
    """A volume's directory, made afresh (a tmpfs if `memory`) and filled with `files`."""
    if directory.exists():
        subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    if memory:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", str(directory)],
                       check=True, capture_output=True)  # fmt: skip
    for relative, (content, mode) in (files or {}).items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)


def rewrite(path: Path, text: str) -> None:
    """Replace a file's content in place, keeping its inode (a container's bind mount pins it):
    one write from offset 0, padded with a comment to the old length rather than truncated, so a
    reader (glibc opens /etc/hosts at every lookup) never finds the file empty or cut short."""
    data = text.encode()
    with path.open("r+b" if path.exists() else "wb") as handle:
        short = handle.seek(0, os.SEEK_END) - len(data)
        if short > 0:
            data += b"#" * (short - 1) + b"\n"
        os.pwrite(handle.fileno(), data, 0)


def remove_tree(directory: Path) -> None:
    """Remove a directory of pods, unmounting the tmpfs volumes (emptyDir medium Memory) in it
    first, including those a dead agent left."""
    prefix = f"{directory}/"
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Run:
    """One run of a container: its process and when it began."""

    popen: subprocess.Popen[bytes]
    launch: Launch
    began: float  # monotonic
    started_at: str
    stopping: threading.Thread | None = None
    killed_by: str = ""  # why the agent stopped it ("liveness", "startup", "deletion")
    probes: dict[str, Any] = field(default_factory=dict)

    @property
    def container_id(self) -> str:
        return f"process://{self.popen.pid}"

    def exit(self) -> tuple[int, int] | None:
        """(exitCode, signal) once it has exited: a signal's exit code is 128 + its number."""
        code = self.popen.poll()
        if code is None:
            return None
        return (128 - code, -code) if code < 0 else (code, 0)


def start(netns: str, launch: Launch, directory: Path, container: str, log: Path) -> Run:
    """Run `launch` in the pod's network namespace and mount/UTS namespaces of its own; output
    appended to `log`."""
    spec = directory / "launch" / f"{container}.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    scratch = str(directory / "scratch" / container)
    spec.write_text(json.dumps({**launch.as_dict(), "scratch": scratch, "image": IMAGE}))
    spec.chmod(0o600)
    argv = ["nsenter", f"--net=/run/netns/{netns}", "unshare", "--mount", "--uts",
            "--propagation", "private", sys.executable, "-I", str(LAUNCHER), str(spec)]  # fmt: skip
    with log.open("ab") as out:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True, env={})  # fmt: skip
    return Run(popen, launch, time.monotonic(), now_iso())


def in_container(run: Run, argv: list[str], timeout: float) -> int:
    """An exec probe's or hook's command in the container's namespaces, root and working directory;
    its exit code (-1: timed out)."""
    command = ["nsenter", "-t", str(run.popen.pid), "-n", "-m", "-u", "-r", "-w", "--", *argv]
    try:
        done = subprocess.run(command, env=run.launch.env, capture_output=True, timeout=timeout,
                              check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return -1
    return done.returncode


def port_number(port: int | str, container: Obj) -> int:
    if isinstance(port, int) or port.isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"no container port named {port!r}")


def handler(action: Obj, run: Run, container: Obj, pod_ip: str, timeout: float) -> bool:
    """Carry out a probe's or a hook's handler (httpGet, tcpSocket, exec, sleep): did it succeed?"""
    try:
        if "exec" in action:
            return in_container(run, list(action["exec"].get("command") or []), timeout) == 0
        if "httpGet" in action:
            get = action["httpGet"]
            host = get.get("host") or pod_ip
            url = f"{get.get('scheme', 'HTTP').lower()}://{host}:{port_number(get['port'], container)}"
            headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
            headers.update({h["name"]: h["value"] for h in get.get("httpHeaders") or []})
            with httpx.Client(trust_env=False, verify=False, timeout=timeout) as client:
                answer = client.get(url + (get.get("path") or "/"), headers=headers)
            return 200 <= answer.status_code < 400
        if "tcpSocket" in action:
            tcp = action["tcpSocket"]
            address = (tcp.get("host") or pod_ip, port_number(tcp["port"], container))
            with socket.create_connection(address, timeout=timeout):
                return True
        if "sleep" in action:
            time.sleep(float(action["sleep"]["seconds"]))
            return True
    except (OSError, httpx.HTTPError, ValueError):
        return False
    return False


def stop(run: Run, grace: float, pre_stop: Obj | None, container: Obj, pod_ip: str) -> None:
    """The kubelet's killContainer: the preStop hook (within the grace period), SIGTERM to the
    container's process, SIGKILL to its process group once `grace` seconds have passed since the
    stop began. Returns once the process has exited."""
    deadline = time.monotonic() + grace
    log.info("stopping %s (pid %d), grace %.1f s", container["name"], run.popen.pid, grace)
    if pre_stop and run.exit() is None:
        handler(pre_stop, run, container, pod_ip, timeout=max(grace, 0.0))
    with contextlib.suppress(ProcessLookupError):
        run.popen.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        run.popen.wait(max(0.0, deadline - time.monotonic()))
    kill(run)


def kill(run: Run) -> None:
    """SIGKILL the container's process group at once; wait for it."""
    if run.exit() is None:
        log.info("SIGKILL to pid %d", run.popen.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(run.popen.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        run.popen.kill()
    run.popen.wait()
