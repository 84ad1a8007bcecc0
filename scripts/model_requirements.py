"""The pip requirements a served model adds to the turnout-serve image, read from the registry.

MLflow logs each model's `requirements.txt` (its flavor's package, pinned: `xgboost==2.1.1`,
`lightgbm==4.5.0`, ...); `mlflow models build-docker` installs it into the image it builds. This
does the same for turnout-serve: it fetches the file with MLflow's own
`mlflow.pyfunc.get_model_dependencies` and prints the requirements for the serving Dockerfile's
`MODEL_REQUIREMENTS` build argument (`make model-image`), which pip resolves together with
turnout's own, so a model pin that conflicts with turnout fails the build, not the pod.

Merged with the image's own requirements as `mlflow models serve --env-manager local` runs a
model: in turnout-serve's environment, so `mlflow` itself is left out (the image carries
`mlflow-skinny`, turnout's pin); markers are evaluated for the image's platform (Python 3.11,
Linux x86_64) and the requirements they exclude are left out. A requirement pip cannot take as
one word (a URL, `-r` or `--index-url` lines) is refused with its line.

    python scripts/model_requirements.py models:/NAME/VERSION    # MLFLOW_TRACKING_URI set
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

# What the image provides itself, whatever the model logged: turnout-serve runs with its MLflow.
PROVIDED = {"mlflow", "mlflow-skinny"}
# The image's platform (serving/Dockerfile: python:3.11-slim-bookworm), for environment markers.
IMAGE_PLATFORM = {**default_environment(), "python_version": "3.11",
                  "python_full_version": "3.11.13", "sys_platform": "linux",
                  "platform_system": "Linux", "os_name": "posix",
                  "platform_machine": "x86_64", "implementation_name": "cpython",
                  "platform_python_implementation": "CPython"}  # fmt: skip


class UnusableRequirement(ValueError):
    """A line of requirements.txt the image build cannot take as a build argument."""


def image_requirements(text: str) -> tuple[list[str], list[str]]:
    """(what the image must install, what is left out and why) from a requirements.txt."""
    wanted: list[str] = []
    left_out: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise UnusableRequirement(f"requirements.txt line {number}: {line!r}: {exc}") from exc
        if requirement.url:
            raise UnusableRequirement(
                f"requirements.txt line {number}: {line!r}: a URL requirement; install it in an "
                "image of your own (FROM turnout-serve)"
            )
        if canonicalize_name(requirement.name) in PROVIDED:
            left_out.append(f"{line} (turnout-serve brings its own MLflow)")
            continue
        if requirement.marker is not None and not requirement.marker.evaluate(IMAGE_PLATFORM):
            left_out.append(f"{line} (not for the image's platform)")
            continue
        requirement.marker = None
        wanted.append(str(requirement))
    return wanted, left_out


def fetch(model_uri: str) -> str:
    """The model's requirements.txt, as MLflow downloads it (from the registry or any store)."""
    import mlflow.pyfunc

    return Path(mlflow.pyfunc.get_model_dependencies(model_uri, format="pip")).read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_uri", help="models:/NAME/VERSION, models:/NAME@ALIAS, runs:/...")
    args = parser.parse_args(argv)
    try:
        wanted, left_out = image_requirements(fetch(args.model_uri))
    except UnusableRequirement as exc:
        print(f"error: {args.model_uri}: {exc}", file=sys.stderr)
        return 1
    for line in left_out:
        print(f"left out: {line}", file=sys.stderr)
    print(" ".join(wanted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
