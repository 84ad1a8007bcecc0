"""The GitHub workflows: every one passes actionlint (with shellcheck over its `run:` scripts), and
the release workflow publishes what the chart installs. A tag v<version> equal to the chart's
version and appVersion builds both images for amd64 and arm64 under the names the chart's values
default to, tagged with that version and nothing else, with provenance and SBOM, and pushes the
chart only after them; every job holds only the permissions it uses. `make images` builds the same
two images under a registry of your own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, require_tool
from tests.manifests import CHART

WORKFLOWS = ROOT / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"
VERSION_SCRIPT = ROOT / "scripts" / "release_version.py"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")
IMAGES = {"turnout-operator": "operator/Dockerfile", "turnout-serve": "serving/Dockerfile"}
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
RELEASE_PERMISSIONS = {
    "contents": "read", "packages": "write", "id-token": "write", "attestations": "write",
}  # fmt: skip


def workflow(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return dict(doc)


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("actionlint"), "-no-color", "-shellcheck", require_tool("shellcheck"),
         *map(str, files)],
        cwd=files[0].parents[2], capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


# --- actionlint -----------------------------------------------------------------------------------


def test_every_workflow_passes_actionlint() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {"e2e.yml", "release.yml"} <= {f.name for f in files}
    done = actionlint(*files)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_actionlint_finds_what_it_is_here_for(tmp_path: Path) -> None:
    """The linter the test above trusts reports a permission scope GitHub does not have and an
    unquoted expansion in a `run:` script (shellcheck)."""
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\npermissions:\n  packages: admin\njobs:\n  build:\n    runs-on: ubuntu-24.04\n"
        "    steps:\n      - run: echo $GITHUB_REF_NAME\n"
    )
    done = actionlint(broken)
    assert done.returncode == 1
    assert 'broken.yml:3:13: "admin" is invalid as permission of scope "packages"' in done.stdout
    # shellcheck's finding in the run: script, as actionlint reports it
    [finding] = [line for line in done.stdout.splitlines() if "broken.yml:8:9: " in line]
    assert "broken.yml:8:9: shellcheck reported " in finding
    assert "in this script: SC2086:info:1:6: Double quote to prevent globbing" in finding


def test_every_action_is_pinned_by_commit() -> None:
    """A tag of a third-party action can move; a commit cannot. The comment names the version."""
    for path in sorted(WORKFLOWS.glob("*.yml")):
        uses = [line.split("uses:", 1)[1].strip() for line in path.read_text().splitlines()
                if line.strip().removeprefix("- ").startswith("uses:")]  # fmt: skip
        assert uses, path.name
        assert [u for u in uses if not PINNED.match(u)] == [], path.name


# --- the release workflow -------------------------------------------------------------------------


def test_release_runs_on_version_tags_only() -> None:
    assert workflow(RELEASE)["on"] == {"push": {"tags": ["v*"]}}


def test_release_jobs_hold_only_the_permissions_they_use() -> None:
    release = workflow(RELEASE)
    assert release["permissions"] == {}
    jobs = release["jobs"]
    assert jobs["version"]["permissions"] == {"contents": "read"}
    assert jobs["images"]["permissions"] == RELEASE_PERMISSIONS
    assert jobs["chart"]["permissions"] == RELEASE_PERMISSIONS
    for job in jobs.values():
        for step in steps_using(job, "actions/checkout"):
            assert step["with"]["persist-credentials"] is False


def test_release_checks_the_tag_before_it_builds_and_pushes_the_chart_last() -> None:
    jobs = workflow(RELEASE)["jobs"]
    assert jobs["images"]["needs"] == "version"
    assert jobs["chart"]["needs"] == ["version", "images"]
    [check] = [s for s in jobs["version"]["steps"] if s.get("id") == "check"]
    assert 'python scripts/release_version.py "$GITHUB_REF_NAME"' in check["run"]


def test_release_builds_the_images_the_chart_installs() -> None:
    """Two images, each from its Dockerfile, for amd64 and arm64, pushed as
    ghcr.io/<owner>/<image>:<version>: with owner turnout-dev, the chart's default repositories."""
    job = workflow(RELEASE)["jobs"]["images"]
    matrix = {entry["image"]: entry["dockerfile"] for entry in job["strategy"]["matrix"]["include"]}
    assert matrix == IMAGES
    values = yaml.safe_load((CHART / "values.yaml").read_text())["operator"]
    repositories = {values["image"]["repository"], values["servingImage"]["repository"]}
    image = job["env"]["IMAGE"].replace("${{ needs.version.outputs.owner }}", "turnout-dev")
    assert {image.replace("${{ matrix.image }}", name) for name in IMAGES} == repositories
    assert [s["with"]["platforms"] for s in steps_using(job, "docker/setup-qemu-action")] == [
        "arm64"
    ]
    [build] = steps_using(job, "docker/build-push-action")
    assert {k: build["with"][k] for k in ("file", "platforms", "push", "tags", "provenance", "sbom")} == {
        "file": "${{ matrix.dockerfile }}", "platforms": "linux/amd64,linux/arm64", "push": True,
        "tags": "${{ env.IMAGE }}:${{ env.VERSION }}", "provenance": "mode=max", "sbom": True,
    }  # fmt: skip
    [attest] = steps_using(job, "actions/attest-build-provenance")
    assert attest["with"] == {
        "subject-name": "${{ env.IMAGE }}",
        "subject-digest": "${{ steps.build.outputs.digest }}",
        "push-to-registry": True,
    }


def test_release_pushes_the_packaged_chart_as_an_oci_artifact(tmp_path: Path) -> None:
    """`helm package` names the file the push step pushes, from the chart's version."""
    job = workflow(RELEASE)["jobs"]["chart"]
    [push] = [s for s in job["steps"] if s.get("id") == "push"]
    script = push["run"].splitlines()
    assert script[0] == "helm package charts/turnout --destination dist"
    assert script[2].startswith(
        'helm push "dist/turnout-$VERSION.tgz" "oci://ghcr.io/$OWNER/charts"'
    )
    done = subprocess.run([require_tool("helm"), "package", str(CHART), "--destination", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    assert [p.name for p in tmp_path.iterdir()] == [f"turnout-{version}.tgz"]
    [attest] = steps_using(job, "actions/attest-build-provenance")
    assert attest["with"]["subject-name"] == "ghcr.io/${{ env.OWNER }}/charts/turnout"


# --- the tag against the chart --------------------------------------------------------------------


def release_version(tag: str, chart: Path = CHART) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(VERSION_SCRIPT), tag,
                           "--chart", str(chart)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def chart_with(tmp_path: Path, version: str, app_version: str) -> Path:
    meta = {"apiVersion": "v2", "name": "turnout", "version": version, "appVersion": app_version}
    (tmp_path / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return tmp_path


def test_the_repositorys_chart_releases_as_its_own_version() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["version"] == meta["appVersion"]
    done = release_version(f"v{meta['version']}")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{meta['version']}\n", "")


@pytest.mark.parametrize("version", ["0.2.0", "1.0.0-rc.1", "2.10.3+build.7"])
def test_a_tag_equal_to_the_chart_releases_its_version(tmp_path: Path, version: str) -> None:
    done = release_version(f"v{version}", chart_with(tmp_path, version, version))
    assert (done.returncode, done.stdout) == (0, f"{version}\n")


@pytest.mark.parametrize(
    ("tag", "version", "app_version", "error"),
    [
        ("v0.2.0", "0.1.0", "0.1.0",
         "tag v0.2.0 releases 0.2.0, but Chart.yaml's version is '0.1.0' and appVersion is "
         "'0.1.0': set both to '0.2.0' and tag again"),
        ("v0.2.0", "0.2.0", "0.1.0",
         "tag v0.2.0 releases 0.2.0, but Chart.yaml's appVersion is '0.1.0': set both to "
         "'0.2.0' and tag again"),
        ("0.2.0", "0.2.0", "0.2.0", "tag '0.2.0' is not v<semantic version> (v0.2.0, v1.0.0-rc.1)"),
        ("v0.2", "0.2", "0.2", "tag 'v0.2' is not v<semantic version> (v0.2.0, v1.0.0-rc.1)"),
    ],
)  # fmt: skip
def test_a_tag_that_differs_from_the_chart_fails_saying_what_to_fix(
    tmp_path: Path, tag: str, version: str, app_version: str, error: str
) -> None:
    done = release_version(tag, chart_with(tmp_path, version, app_version))
    assert (done.returncode, done.stdout, done.stderr) == (1, "", f"release_version: {error}\n")


# --- make images ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "registry", "tag"),
    [((), "ghcr.io/turnout-dev", APP_VERSION),
     (("REGISTRY=registry.example.com/ml", "TAG=0.1.0-mine"), "registry.example.com/ml", "0.1.0-mine")],
)  # fmt: skip
def test_make_images_builds_both_under_the_registry_and_tag(
    variables: tuple[str, ...], registry: str, tag: str
) -> None:
    """By default the tag is the chart's appVersion, so the chart's default tags find them."""
    # as a user runs it: not as a sub-make of `make test` (which would print its directories)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(["make", "-n", "images", "push-images", *variables], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        *(f"docker build -f {dockerfile} -t {registry}/{image}:{tag} ."
          for image, dockerfile in IMAGES.items()),
        *(f"docker push {registry}/{image}:{tag}" for image in IMAGES),
    ]  # fmt: skip
