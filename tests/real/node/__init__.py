"""A node agent for the real control plane: a small kubelet in Python that runs the pods bound to
its Node as local processes, each pod in a network namespace of tests/real/netns.py and each
container with a mount namespace of its own (no images, no cgroups). docs/development.md says what
it does as the kubelet does and where it differs.

    agent = NodeAgent(plane.node_kubeconfig("turnout-node"), state_dir)
    seconds = agent.start()     # the process runs, its Node is Ready
    agent.host_ip               # the bridge address: pods reach the host and the API server there
    agent.stop()                # pods stopped, network removed

`start()` spawns `python -m tests.real.node` (agent.py); one started by a test dies with it
(PR_SET_PDEATHSIG), one started with `detach=True` (`make cluster`) outlives it and is stopped by
its pid file.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

from tests.conftest import ROOT, wait_until
from tests.real.controlplane import _is_ours, _terminate, die_with_parent


class NodeAgent:
    def __init__(
        self, kubeconfig: Path, state: Path, *, name: str = "turnout-node",
        expose: tuple[int, ...] = (), max_backoff: float | None = None,
        proxy_kubeconfig: Path | None = None, service_cidr: str = "",
    ) -> None:  # fmt: skip
        self.kubeconfig = kubeconfig.resolve()
        self.state = state.resolve()
        self.name = name
        self.expose = expose
        self.max_backoff = max_backoff
        self.proxy_kubeconfig = proxy_kubeconfig.resolve() if proxy_kubeconfig else None
        self.service_cidr = service_cidr
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.state / "agent.log"

    @property
    def info(self) -> dict[str, Any]:
        """What the running agent wrote: hostIP (the bridge address), apiPort, subnet, pid."""
        return json.loads((self.state / "node.json").read_text())  # type: ignore[no-any-return]

    @property
    def host_ip(self) -> str:
        return str(self.info["hostIP"])

    def pid(self) -> int | None:
        try:
            pid = int((self.state / "agent.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_ours(pid, self.state) else None

    def start(self, *, detach: bool = False, timeout: float = 120.0) -> float:
        """Spawn the agent; return the seconds until its Node is Ready and untainted."""
        self.stop()
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "node.json").unlink(missing_ok=True)
        argv = [sys.executable, "-m", "tests.real.node", "--kubeconfig", str(self.kubeconfig),
                "--state", str(self.state), "--name", self.name]  # fmt: skip
        for port in self.expose:
            argv += ["--expose", str(port)]
        if self.max_backoff is not None:
            argv += ["--max-backoff", str(self.max_backoff)]
        if self.proxy_kubeconfig is not None:
            argv += ["--proxy-kubeconfig", str(self.proxy_kubeconfig),
                     "--service-cidr", self.service_cidr]  # fmt: skip
        began = time.monotonic()
        with self.log.open("ab") as log:
            self._child = subprocess.Popen(
                argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=None if detach else die_with_parent,
            )  # fmt: skip
        (self.state / "agent.pid").write_text(str(self._child.pid))
        with config.new_client_from_config(config_file=str(self.kubeconfig)) as api:
            core = client.CoreV1Api(api)

            def ready() -> bool:
                if self._child is not None and self._child.poll() is not None:
                    tail = self.log.read_text(errors="replace")[-3000:]
                    raise AssertionError(f"the node agent exited {self._child.returncode}:\n{tail}")
                if not (self.state / "node.json").exists():
                    return False
                node = core.read_node(self.name)
                # Ready, and the node lifecycle controller has seen it: no not-ready taint keeps
                # the scheduler away
                tainted = any(
                    t.key.startswith("node.kubernetes.io/") for t in node.spec.taints or []
                )
                return not tainted and any(c.type == "Ready" and c.status == "True"
                                           for c in node.status.conditions or [])  # fmt: skip

            try:
                wait_until(ready, timeout=timeout, interval=0.1, what=f"Node {self.name} Ready")
            except BaseException:
                self.stop()
                raise
        return time.monotonic() - began

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (the agent stops its pods and removes its network), SIGKILL after `timeout`."""
        pid = self.pid()
        if pid is not None:
            if self._child is not None and self._child.pid == pid:
                self._child.send_signal(signal.SIGTERM)
                try:
                    self._child.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._child.kill()
                    self._child.wait(10)
            else:
                _terminate(pid, None)
        (self.state / "agent.pid").unlink(missing_ok=True)
        self._child = None
