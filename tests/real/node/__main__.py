"""python -m tests.real.node --kubeconfig K --state DIR [--name NAME] [--expose PORT ...]
[--proxy-kubeconfig P --service-cidr CIDR]"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tests.real.node.agent import Agent, Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.real.node",
                                     description="A node agent (a small kubelet) for the real control plane")  # fmt: skip
    parser.add_argument("--kubeconfig", type=Path, required=True,
                        help="the node's credentials: system:node:NAME in system:nodes")  # fmt: skip
    parser.add_argument("--state", type=Path, required=True, help="pods' files and logs go here")
    parser.add_argument("--name", default="turnout-node", help="the Node's name")
    parser.add_argument("--expose", type=int, action="append", default=[], metavar="PORT",
                        help="forward the bridge address's PORT to 127.0.0.1:PORT (repeatable)")  # fmt: skip
    parser.add_argument("--max-backoff", type=float, default=300.0,
                        help="the longest CrashLoopBackOff, in seconds (the kubelet's is 300)")  # fmt: skip
    parser.add_argument("--proxy-kubeconfig", type=Path,
                        help="system:kube-proxy's credentials: run the Service proxy with them")  # fmt: skip
    parser.add_argument("--service-cidr", default="",
                        help="the cluster's service range (with --proxy-kubeconfig)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.proxy_kubeconfig and not args.service_cidr:
        parser.error("--proxy-kubeconfig needs --service-cidr")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(threadName)s %(message)s")  # fmt: skip
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    settings = Settings(args.kubeconfig, args.state, args.name, args.expose, args.max_backoff,
                        args.proxy_kubeconfig, args.service_cidr)  # fmt: skip
    return Agent(settings).run()


if __name__ == "__main__":
    sys.exit(main())
