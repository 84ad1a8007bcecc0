"""Traffic through blue-green switches on the real control plane: failed requests and latency
during a switch and a rollback, next to steady state.

Why it exists: the operator promises that a client of the active Service sees no failed request
while a version is rolled out or rolled back, and the switch should not slow answers down. This
runs `make demo`'s story (scripts/demo_cluster.py, with no hold): the control plane and its node
agent, MLflow, the chart installed with helm, a model at alias `champion`, steady predictions
through the API server's service proxy while the alias moves (the operator's blue-green switch) and
while a rollback annotation switches back. It prints, per phase, the requests, the failed ones,
p50 and p99, and each phase's p50/p99 as a ratio to steady state. It asserts nothing (the zero
is asserted by tests/real/test_traffic.py and test_demo.py).

What it must never do: send traffic anywhere but 127.0.0.1 and the pod network the demo makes,
loop without a bound (the traffic is bounded in count and time), or leave a process behind (the
demo stops everything it started, on failure and Ctrl-C too).

Needs root, the built control plane and `make tools`.

    .venv/bin/python bench/switch.py [--rate PER_SECOND]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20, help="predictions a second")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures_file = Path(tmp) / "figures.json"
        demo = [sys.executable, str(ROOT / "scripts" / "demo_cluster.py"), "--hold", "0",
                "--rate", str(args.rate), "--json", str(figures_file)]  # fmt: skip
        done = subprocess.run(demo, capture_output=True, text=True, timeout=1800, check=False)
        if done.returncode != 0 or not figures_file.exists():
            print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
            return 1
        figures = json.loads(figures_file.read_text())
    steady = figures["steady"]
    print(f"{'phase':<34} {'requests':>8} {'failed':>6} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'p50/steady':>10} {'p99/steady':>10}")  # fmt: skip
    for phase, f in figures.items():
        print(f"{phase:<34} {f['count']:>8.0f} {f['failed']:>6.0f} {f['p50'] * 1000:>7.1f} "
              f"{f['p99'] * 1000:>7.1f} {f['p50'] / steady['p50']:>10.2f} "
              f"{f['p99'] / steady['p99']:>10.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
