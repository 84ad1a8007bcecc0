"""A cluster to poke at: the control plane of controlplane.py and one node agent (tests/real/node)
that runs the pods scheduled onto its Node. What `make cluster`, `make cluster-down` and the
`node_agent` fixture of tests/real/conftest.py use:

    python -m tests.real.cluster up     [--state .cluster]  # start both in the background
    python -m tests.real.cluster status [--state .cluster]
    python -m tests.real.cluster down   [--state .cluster]  # stop both, remove the state dir

The control plane's state dir holds the node's too, in `node/` (its log `node/agent.log`, its pods'
files and logs in `node/pods/`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.real import controlplane as cp
from tests.real.node import NodeAgent

NODE = "turnout-node"


def node_agent(plane: cp.ControlPlane, *, max_backoff: float | None = None) -> NodeAgent:
    """The node agent of `plane`'s cluster (its kubeconfig, `system:node:turnout-node`, is made
    when missing), with its Service proxy (as `system:kube-proxy`)."""
    kubeconfig = plane.state / f"node-{NODE}.kubeconfig"
    if not kubeconfig.exists() and (plane.state / "cluster.json").exists():
        kubeconfig = plane.node_kubeconfig(NODE)
    if not (plane.state / "cluster.json").exists():  # only to stop an agent: no proxy to run
        return NodeAgent(kubeconfig, plane.state / "node", name=NODE, max_backoff=max_backoff)
    return NodeAgent(kubeconfig, plane.state / "node", name=NODE, max_backoff=max_backoff,
                     proxy_kubeconfig=plane.proxy_kubeconfig, service_cidr=plane.service_cidr)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.real.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--state", type=Path, default=ROOT / ".cluster")
    args = parser.parse_args(argv)
    plane = cp.ControlPlane(args.state)
    try:
        return _command(args.command, plane)
    except cp.ToolchainMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (RuntimeError, AssertionError) as exc:  # a refused state dir, a program that died
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _command(command: str, plane: cp.ControlPlane) -> int:
    agent = node_agent(plane)
    if command == "down":
        agent.stop()
        plane.destroy()
        print(f"node agent and control plane stopped; {plane.state} removed")
        return 0
    running = plane.running() if (plane.state / "cluster.json").exists() else {}
    agent_pid = agent.pid()
    if command == "status":
        for program in cp.PROGRAMS:
            print(f"{program:24} {running.get(program, 'not running')}")
        print(f"{'node-agent':24} {agent_pid or 'not running'}")
        return 0 if len(running) == len(cp.PROGRAMS) and agent_pid else 1
    if len(running) == len(cp.PROGRAMS) and agent_pid:
        print(f"already running: {plane.server}; kubeconfig {plane.kubeconfig}")
        return 0
    if len(running) != len(cp.PROGRAMS):
        agent.stop()
        seconds = plane.start(detach=True)
        print(f"control plane ready in {seconds:.1f} s: {plane.server}")
        agent = node_agent(plane)
    seconds = agent.start(detach=True)
    print(f"node {NODE} Ready in {seconds:.1f} s; pods reach the host at {agent.host_ip}")
    print(f"  kubectl --kubeconfig {plane.kubeconfig} get nodes")
    print(f"  logs: {plane.state / 'logs'}, {agent.log}; stop with `make cluster-down`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
