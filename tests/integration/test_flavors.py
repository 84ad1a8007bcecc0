"""Models of other flavors served by turnout-serve: an XGBoost and a LightGBM model, logged with
their own MLflow flavors and a drift reference (tests/integration/flavor_models.py). Their answers
are compared with `mlflow models serve` in test_parity.py; here, what turnout adds works for
them too (metrics, drift), and an image that lacks the flavor's package ends the server with the
one line that names it, in the log and in the termination message file Kubernetes reads."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import mlflow.pyfunc
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris

from tests.conftest import ROOT, Process, Registry, wait_until
from tests.integration.flavor_models import LIGHTGBM, XGBOOST
from tests.integration.test_server import metric, split

pytestmark = pytest.mark.slow

# Imported first by any Python started with this folder on PYTHONPATH: the flavor's package is
# then missing, as it is from an image built without it.
BLOCKER = """\
import importlib.abc
import sys


class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, Missing())
"""


def without(home: Path, *packages: str) -> dict[str, str]:
    """The environment of a Python that cannot import `packages` (`home` must be outside the
    pod's volumes, /tmp among them, for a pod to see it)."""
    site = home / "without"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked=set(packages)))
    return {"PYTHONPATH": str(site)}


def rows(name: str, shift: float, count: int) -> dict[str, object]:
    """`count` training rows of the model's data set drawn at random, with `shift` added."""
    if name == XGBOOST:
        frame = load_diabetes(as_frame=True).data
    else:
        frame = load_iris(as_frame=True).data
        frame.columns = [c.replace(" (cm)", "").replace(" ", "_") for c in frame.columns]
    frame = frame.sample(count, random_state=0) + shift  # both classes and ranges, in proportion
    return split(*frame.to_dict("records"))


@pytest.mark.parametrize(("name", "flavor"), [(XGBOOST, "xgboost"), (LIGHTGBM, "lightgbm")])
def test_metrics_and_drift_work_for_other_flavors(
    serve_factory: Callable[..., Process], flavor_models: dict[str, str], name: str, flavor: str
) -> None:
    version = flavor_models[name]
    server = serve_factory(f"models:/{name}/{version}", "--color", "blue",
                           "--drift-window-rows", "100")  # fmt: skip
    labels = {"model": name, "version": version, "color": "blue"}
    info = httpx.get(f"{server.url}/info").json()
    assert (info["flavor"], info["drift"].startswith("on: reference ")) == (flavor, True), info

    calm = httpx.post(f"{server.url}/invocations", json=rows(name, 0.0, 100))
    assert calm.status_code == 200, calm.text
    assert len(calm.json()["predictions"]) == 100
    # the first scrape: the drift report is computed then, and kept a second
    assert metric(server.url, "turnout_drift_window_rows", **labels) == 100.0
    assert metric(server.url, "turnout_model_info", flavor=flavor, **labels) == 1.0
    assert metric(server.url, "turnout_drift_detected", **labels) == 0.0

    shifted = httpx.post(f"{server.url}/invocations", json=rows(name, 5.0, 100))
    assert shifted.status_code == 200, shifted.text
    # the drift report is recomputed at most once a second, when scraped
    wait_until(lambda: metric(server.url, "turnout_drift_detected", **labels) == 1.0,
               timeout=10, interval=0.3, what="drift to be detected")  # fmt: skip
    assert metric(server.url, "turnout_inference_rows_total", **labels) == 200.0
    assert metric(server.url, "turnout_inference_requests_total", endpoint="invocations",
                  code="200", **labels) == 2.0  # fmt: skip
    first = next(iter(rows(name, 0.0, 1)["dataframe_split"]["columns"]))  # type: ignore[index]
    psi = metric(server.url, "turnout_feature_drift_psi", feature=first, **labels)
    assert psi is not None and np.isfinite(psi) and psi > 1.0


@pytest.mark.parametrize(("name", "package"), [(XGBOOST, "xgboost"), (LIGHTGBM, "lightgbm")])
def test_a_model_whose_package_is_missing_ends_the_server_naming_it(
    serve_factory: Callable[..., Process],
    flavor_models: dict[str, str],
    tmp_path: Path,
    name: str,
    package: str,
) -> None:
    termination_log = tmp_path / "termination-log"
    termination_log.write_text("")  # the kubelet makes the file before the container starts
    server = serve_factory(
        f"models:/{name}/{flavor_models[name]}",
        env={**without(tmp_path, package),
             "TURNOUT_TERMINATION_MESSAGE_PATH": str(termination_log)},
        ready=False,
    )  # fmt: skip
    assert server.popen.wait(120) == 3
    pinned = f"{package}=={importlib.metadata.version(package)}"  # what MLflow logged
    reason = (f"the model needs package {package!r} ({pinned} in its requirements.txt), which "
              "this image does not have")  # fmt: skip
    assert termination_log.read_text() == reason
    last = server.output().strip().splitlines()[-1]
    assert last.endswith(f"exiting: the model cannot be served: {reason}"), last


@pytest.mark.parametrize(("name", "package"), [(XGBOOST, "xgboost"), (LIGHTGBM, "lightgbm")])
def test_the_image_recipe_reads_the_models_requirements_from_the_registry(
    mlflow_registry: Registry, flavor_models: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    name: str, package: str,
) -> None:  # fmt: skip
    """What `make model-image` passes to the serving Dockerfile: the logged requirements.txt,
    fetched from the tracking server, without MLflow (the image brings mlflow-skinny)."""
    uri = f"models:/{name}/{flavor_models[name]}"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "model_requirements.py"), uri],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **mlflow_registry.env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_registry.uri)
    logged = Path(mlflow.pyfunc.get_model_dependencies(uri, format="pip")).read_text().split()
    printed = done.stdout.split()
    assert f"{package}=={importlib.metadata.version(package)}" in printed
    assert printed == [r for r in logged if not r.startswith("mlflow==")]
    assert f"left out: mlflow=={mlflow.__version__} (turnout-serve brings its own MLflow)" in (
        done.stderr.splitlines())  # fmt: skip
