"""The license pyproject.toml declares is the one the repository ships, word for word."""

from __future__ import annotations

import hashlib
import tomllib

from tests.conftest import ROOT

# sha256 of https://www.apache.org/licenses/LICENSE-2.0.txt (md5 3b83ef96387f14655fc854ddc3c6bd57)
APACHE_2_0 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def test_license_file_is_the_apache_license_2_0_and_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert (project["license"], project["license-files"]) == ("Apache-2.0", ["LICENSE"])
    assert hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest() == APACHE_2_0
