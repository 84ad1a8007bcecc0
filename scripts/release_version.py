"""The version a release tag names, held against the chart: the tag `v0.2.0` publishes the images
and the chart as 0.2.0 only when charts/turnout/Chart.yaml says `version: 0.2.0` and `appVersion:
"0.2.0"`. The chart's default image tags are its appVersion, so a chart published beside images of
another version would install images that do not exist (ImagePullBackOff). The release workflow
(.github/workflows/release.yml) runs this before it builds anything.

    python scripts/release_version.py v0.2.0                  # prints 0.2.0, or exits 1 saying why
    python scripts/release_version.py v0.2.0 --chart DIR      # another chart directory
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "turnout"
# A `v` and a semantic version (Helm's chart versions are SemVer 2), pre-release and build allowed.
TAG = re.compile(r"^v(?P<version>\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)$")


def release_version(tag: str, chart: dict[str, object]) -> str:
    """The version `tag` releases; ValueError naming what differs when the chart disagrees."""
    match = TAG.match(tag)
    if match is None:
        raise ValueError(f"tag {tag!r} is not v<semantic version> (v0.2.0, v1.0.0-rc.1)")
    version = match["version"]
    wrong = [f"{key} is {chart.get(key)!r}" for key in ("version", "appVersion")
             if str(chart.get(key)) != version]  # fmt: skip
    if wrong:
        raise ValueError(
            f"tag {tag} releases {version}, but Chart.yaml's {' and '.join(wrong)}: "
            f"set both to {version!r} and tag again"
        )
    return version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tag", help="the pushed tag, e.g. v0.2.0 ($GITHUB_REF_NAME)")
    parser.add_argument("--chart", type=Path, default=CHART, help="chart directory")
    args = parser.parse_args(argv)
    chart = yaml.safe_load((args.chart / "Chart.yaml").read_text())
    try:
        print(release_version(args.tag, chart))
    except ValueError as error:
        print(f"release_version: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
