"""`make demo` tells its story: scripts/demo_cluster.py run as a user runs it (with no hold), on a
control plane of its own. The first deploy becomes Healthy, the alias move is rolled out
blue-green, the rollback annotation switches back, no request of the steady traffic fails, and
everything it started is gone afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, require_tool

pytestmark = pytest.mark.real

DEMO = ROOT / "scripts" / "demo_cluster.py"


def test_the_demo_rolls_out_and_back_with_no_failed_request(binaries: object) -> None:
    tools = (
        os.path.dirname(require_tool("kubectl"))
        + os.pathsep
        + os.path.dirname(require_tool("helm"))
    )
    done = subprocess.run(
        [sys.executable, str(DEMO), "--hold", "0"], capture_output=True, text=True, timeout=900,
        env={**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-4000:]
    assert re.search(r"phase=Healthy desired=1 active=1 \(blue\)", out), out
    assert re.search(r"phase=Healthy desired=2 active=2 \(green\)", out), out
    assert "version 2 rolled back to 1 by the turnout.dev/rollback annotation" in out
    rows = re.findall(r"^  (steady|alias moved: blue-green switch|rollback by annotation)"
                      r"\s+(\d+)\s+(\d+)\s", out, re.MULTILINE)  # fmt: skip
    phases = {name: (int(count), int(failed)) for name, count, failed in rows}
    assert set(phases) == {"steady", "alias moved: blue-green switch", "rollback by annotation"}
    assert all(count >= 30 and failed == 0 for count, failed in phases.values()), phases
    assert not (ROOT / ".demo" / "cluster").exists()
    left = subprocess.run(["pgrep", "-f", str(ROOT / ".demo" / "cluster")], capture_output=True,
                          text=True, check=False).stdout.split()  # fmt: skip
    assert left == []  # no control plane, agent, pod or MLflow process of the demo runs on
