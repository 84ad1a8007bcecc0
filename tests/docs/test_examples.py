"""The overlay docs/quickstart.md offers for adapting the kustomize manifests builds, and does
what its comments say: the operator watches `ml`, finds MLflow there, runs the image tag asked
for, and its Role and RoleBinding move to `ml`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import ROOT, require_tool
from tests.docs.markdown import blocks
from tests.manifests import documents, one

HEADER = "# my-turnout/kustomization.yaml"


def test_the_quickstarts_own_overlay_builds_as_described(tmp_path: Path) -> None:
    [block] = [b for b in blocks(ROOT / "docs" / "quickstart.md")
               if b.lang == "yaml" and b.lines[:1] == (HEADER,)]  # fmt: skip
    (tmp_path / "turnout").symlink_to(ROOT)  # the overlay sits next to a checkout named turnout
    (tmp_path / "my-turnout").mkdir()
    (tmp_path / "my-turnout" / "kustomization.yaml").write_text("\n".join(block.lines))
    done = subprocess.run(
        [require_tool("kubectl"), "kustomize", str(tmp_path / "my-turnout")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    objects = documents(done.stdout)
    container = one(objects, "Deployment", "turnout-operator")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["args"][:2] == ["--namespace", "ml"]
    assert container["env"][0] == {
        "name": "TURNOUT_OPERATOR_TRACKING_URI",
        "value": "http://mlflow.ml.svc:5000",
    }
    assert container["image"] == "ghcr.io/turnout-dev/turnout-operator:0.1.1"
    for kind in ("Role", "RoleBinding"):
        assert one(objects, kind, "turnout-operator")["metadata"]["namespace"] == "ml"
