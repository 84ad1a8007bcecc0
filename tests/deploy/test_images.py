"""The container images, read from their Dockerfiles (nothing can run Docker here): what the pods
that use them rely on. The served-model pods (built by the operator) run `turnout-serve` with
runAsNonRoot and no runAsUser, a read-only root filesystem and emptyDirs on /tmp and the model
cache; the operator pod (chart and manifests/) runs `turnout-operator run` as user 10001. An image
that broke any of these would start, then fail in the cluster: these tests fail first."""

from __future__ import annotations

import fnmatch
import importlib
import re
import shlex
import tomllib
from pathlib import PurePosixPath
from typing import Any

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT
from tests.deploy.conftest import DOCKERFILES, Stage, parse_dockerfile
from tests.manifests import find
from turnout_operator.cli import parser as operator_cli
from turnout_operator.domain.manifests import CACHE_DIR, Defaults, build_deployment
from turnout_operator.domain.spec import ModelDeploymentSpec

PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")
USER = "10001:10001"
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|cc|clang|make|build-essential|apt-get|apt|pip)\b")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENTRYPOINTS = {"serving": ["turnout-serve"], "operator": ["turnout-operator"]}
EXTRAS = {"serving": "serving", "operator": "operator"}


def served_model_container() -> dict[str, Any]:
    """The container the operator puts in every served model's pod."""
    spec = ModelDeploymentSpec.model_validate({"model": {"name": "m", "version": "1"}})
    deployment = build_deployment("m", "default", "blue", "1", "models:/m/1", 1, spec,
                                  Defaults(image="turnout-serve:1", tracking_uri="http://mlflow"))  # fmt: skip
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {**container, "volumes": deployment["spec"]["template"]["spec"]["volumes"]}


def operator_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = [d for d in find(objects, "Deployment") if "operator" in d["metadata"]["name"]]
    return dict(deployment["spec"]["template"]["spec"])


def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def emptydir_mounts(container: dict[str, Any], volumes: list[dict[str, Any]]) -> set[str]:
    empty = {v["name"] for v in volumes if "emptyDir" in v}
    return {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty}


# --- base and stages ------------------------------------------------------------------------------


def test_both_images_build_on_one_pinned_python_311_slim_base(
    images: dict[str, list[Stage]],
) -> None:
    bases = set()
    for name, stages in images.items():
        named: set[str] = set()
        for stage in stages:
            if stage.base not in named:  # FROM an earlier stage of the same file is fine
                assert PINNED_BASE.match(stage.base), (name, stage.base)
                bases.add(stage.base)
            if stage.name:
                named.add(stage.name)
    assert len(bases) == 1, f"the images drifted apart: {bases}"


@pytest.mark.parametrize("image", DOCKERFILES)
def test_multi_stage_with_no_build_tools_in_the_final_stage(
    images: dict[str, list[Stage]], image: str
) -> None:
    stages = images[image]
    build, runtime = stages[0], final(stages)
    assert len(stages) == 2 and build.name == "build"
    # The final stage starts again from the slim base, not from the build stage...
    assert PINNED_BASE.match(runtime.base)
    # ...installs nothing (no compiler, no apt, no pip: only users and directories)...
    for command in runtime.all("RUN"):
        assert not BUILD_TOOLS.search(command), command
    # ...and takes the virtualenv, alone, from the build stage.
    assert runtime.all("COPY") == ["--from=build /opt/turnout /opt/turnout"]
    assert runtime.env()["PATH"].split(":")[0] == "/opt/turnout/bin"


@pytest.mark.parametrize("image", DOCKERFILES)
def test_the_build_stage_installs_this_repository_with_the_images_extra(
    images: dict[str, list[Stage]], image: str
) -> None:
    build = images[image][0]
    # The serving image adds the served model's own requirements (a build argument, empty by
    # default), in the same pip resolution as turnout's.
    extra = " ${MODEL_REQUIREMENTS}" if image == "serving" else ""
    assert build.all("RUN")[-1] == f'/opt/turnout/bin/pip install "/src[{EXTRAS[image]}]"{extra}'
    assert build.all("ARG") == (['MODEL_REQUIREMENTS=""'] if image == "serving" else [])
    copied = {shlex.split(c)[-1] for c in build.all("COPY")}
    # Everything the wheel is built from: pyproject (+ its readme and license) and both trees.
    assert copied == {"/src/", "/src/serving", "/src/operator"}


@pytest.mark.parametrize("extra", ["serving", "operator"])
def test_no_image_installs_the_mlflow_server(extra: str) -> None:
    """Full `mlflow` is the tracking server, UI and SQL stack: hundreds of MB neither image runs.
    The serving image loads models with the client distribution, mlflow-skinny."""
    names = {Requirement(r).name for r in PYPROJECT["project"]["optional-dependencies"][extra]}
    assert "mlflow" not in names
    assert ("mlflow-skinny" in names) == (extra == "serving")


def test_the_serving_extra_loads_what_mlflow_logs() -> None:
    """The full `mlflow` pulls in skops (the demo's scikit-learn serialization, MLflow's safe
    format) and pyarrow (parquet requests); with mlflow-skinny alone, the image needs them
    itself, or `turnout-serve` fails with "No module named 'skops'" on the demo models."""
    names = {Requirement(r).name for r in PYPROJECT["project"]["optional-dependencies"]["serving"]}
    assert {"skops", "pyarrow"} <= names


# --- user, environment, writable directories ------------------------------------------------------


@pytest.mark.parametrize("image", DOCKERFILES)
def test_runs_as_the_numeric_non_root_user_10001(
    images: dict[str, list[Stage]], image: str
) -> None:
    runtime = final(images[image])
    user = runtime.all("USER")
    assert user == [USER]
    uid, gid = (int(part) for part in user[0].split(":"))
    assert uid == gid == 10001
    # USER comes after the last RUN: nothing of the image is left to root at run time.
    keywords = [key for key, _ in runtime.instructions]
    assert keywords.index("USER") > max(i for i, key in enumerate(keywords) if key == "RUN")


def test_pods_run_as_the_images_user(
    rendered: dict[str, list[dict[str, Any]]], chart: list[dict[str, Any]]
) -> None:
    uid = int(USER.split(":")[0])
    for objects in (chart, rendered["base"]):
        context = operator_pod(objects)["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"], context["runAsNonRoot"]) == (uid, uid, True)  # fmt: skip
    # The served models' pods name no user: runAsNonRoot accepts only a numeric image USER.
    served = served_model_container()
    assert "runAsUser" not in served["securityContext"]


@pytest.mark.parametrize("image", DOCKERFILES)
def test_python_environment_for_a_read_only_root_filesystem(
    images: dict[str, list[Stage]], image: str
) -> None:
    env = final(images[image]).env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["HOME"] == "/tmp"


def test_home_and_the_model_cache_are_writable_in_a_served_models_pod(
    images: dict[str, list[Stage]],
) -> None:
    runtime = final(images["serving"])
    env = runtime.env()
    container = served_model_container()
    writable = emptydir_mounts(container, container["volumes"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {env["HOME"], CACHE_DIR} <= writable
    # The image agrees with the pod on where the cache is, and owns it for `docker run` too.
    assert env["TURNOUT_CACHE_DIR"] == CACHE_DIR
    assert any(f"install -d -o 10001 -g 10001 -m 0755 {CACHE_DIR}" in r for r in runtime.all("RUN"))
    assert (env["TURNOUT_HOST"], env["TURNOUT_PORT"]) == ("0.0.0.0", "8080")
    assert runtime.all("EXPOSE") == [str(container["ports"][0]["containerPort"])]


def test_home_is_writable_in_the_operators_pod(
    images: dict[str, list[Stage]],
    rendered: dict[str, list[dict[str, Any]]],
    chart: list[dict[str, Any]],
) -> None:
    home = final(images["operator"]).env()["HOME"]
    for objects in (chart, rendered["base"]):
        pod = operator_pod(objects)
        [container] = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert home in emptydir_mounts(container, pod["volumes"])


# --- what runs --------------------------------------------------------------------------------------


def test_the_serving_entrypoint_is_what_the_operators_pods_run(
    images: dict[str, list[Stage]],
) -> None:
    runtime = final(images["serving"])
    assert runtime.exec_form("ENTRYPOINT") == ENTRYPOINTS["serving"]
    assert runtime.exec_form("CMD") is None  # the pods configure it through TURNOUT_* env
    assert served_model_container()["command"] == ENTRYPOINTS["serving"]


def test_the_operator_entrypoint_is_what_the_chart_and_the_manifests_run(
    images: dict[str, list[Stage]],
    rendered: dict[str, list[dict[str, Any]]],
    chart: list[dict[str, Any]],
) -> None:
    runtime = final(images["operator"])
    entrypoint = runtime.exec_form("ENTRYPOINT")
    assert entrypoint == ENTRYPOINTS["operator"]
    for objects in (chart, rendered["base"]):
        [container] = operator_pod(objects)["containers"]
        assert container["command"] == [*ENTRYPOINTS["operator"], "run"]
    # `docker run IMAGE` alone runs the operator cluster-wide, as the chart does by default.
    cmd = runtime.exec_form("CMD")
    assert cmd == ["run", "--all-namespaces"]
    assert operator_cli().parse_args(cmd).all_namespaces is True
    assert runtime.all("EXPOSE") == ["8000 8080"]


@pytest.mark.parametrize("script", ["turnout-serve", "turnout-operator"])
def test_the_entrypoints_are_console_scripts_of_this_package(script: str) -> None:
    module, function = PYPROJECT["project"]["scripts"][script].split(":")
    assert callable(getattr(importlib.import_module(module), function))


# --- build context ----------------------------------------------------------------------------------


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` (relative to the root) out of the build context."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            candidates = [prefix, prefix.rsplit("/", 1)[-1]] if pattern != bare else [prefix]
            if any(fnmatch.fnmatchcase(c, bare) for c in candidates):
                return True
    return False


def test_the_build_context_holds_what_the_images_copy_and_not_the_virtualenv() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns)  # ignored() does not handle exceptions
    sources = set()
    for path in DOCKERFILES.values():
        for stage in parse_dockerfile(path):
            for copy in stage.all("COPY"):
                words = shlex.split(copy)
                if not words[0].startswith("--from"):
                    sources.update(words[:-1])
    assert sources == {"pyproject.toml", "README.md", "LICENSE", "serving", "operator"}
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source, patterns), source
    for heavy in (".venv", ".git", ".tools", "tests", "serving/turnout_serving/__pycache__", "turnout.egg-info"):  # fmt: skip
        assert ignored(heavy, patterns), heavy
