"""The Gateway API's own HTTPRoute CRD, for the tests that need a cluster serving HTTPRoutes.

It comes from the Go module that publishes it (`sigs.k8s.io/gateway-api`, its standard channel's
`config/crd`), fetched with `go mod download` through the Go module proxy into the Go module
cache, where later runs find it. No copy is kept in this repository.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import require_tool

MODULE = "sigs.k8s.io/gateway-api@v1.4.0"
HTTP_ROUTES = "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"


def http_route_crd(workdir: Path) -> dict[str, Any]:
    """The CRD `httproutes.gateway.networking.k8s.io` as the Gateway API releases it."""
    go = require_tool("go", "/usr/local/go/bin/go")
    workdir.mkdir(parents=True, exist_ok=True)
    fetched = subprocess.run(
        [go, "mod", "download", "-json", MODULE], cwd=workdir, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    found = json.loads(fetched.stdout or "{}")
    if fetched.returncode != 0 or "Dir" not in found:
        raise RuntimeError(f"go mod download {MODULE}: {found.get('Error') or fetched.stderr}")
    crd: dict[str, Any] = yaml.safe_load((Path(found["Dir"]) / HTTP_ROUTES).read_text())
    return crd
