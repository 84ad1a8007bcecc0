"""The Python half of the kind quickstart (scripts/quickstart.sh) and of the e2e suite: register
demo model versions in the cluster's MLflow, wait for an HTTP endpoint, and ask a served model for
a prediction. The models are trained and logged exactly as scripts/demo_models.py does it (same
data, same `log_model` arguments, a drift reference), one version per call, so that the story
can move the `champion` alias step by step.

    python scripts/quickstart_models.py register-champion --tracking-uri URI --trees 100
    python scripts/quickstart_models.py register-iris --tracking-uri URI
    python scripts/quickstart_models.py wait URL [--timeout 300]
    python scripts/quickstart_models.py predict URL [--version V]

`register-*` print the registered version alone on stdout, for the shell to capture.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Any

import httpx

DIABETES = "Diabetes"
ALIAS = "champion"


def register_champion(trees: int, name: str = DIABETES) -> str:
    """A new version of the demo regressor (`trees` boosting stages, so each version predicts
    differently), with a drift reference; the `champion` alias moves to it."""
    from demo_models import TREES, _log_sklearn, diabetes_frame
    from mlflow.tracking import MlflowClient
    from sklearn.ensemble import GradientBoostingRegressor

    X, y = diabetes_frame()
    model = GradientBoostingRegressor(n_estimators=trees, random_state=0).fit(X, y)
    version = _log_sklearn(model, X, name, reference=True, skops_trusted_types=TREES)
    MlflowClient().set_registered_model_alias(name, ALIAS, version)
    return version


def register_iris() -> str:
    """The demo classifier (examples/iris-v1.yaml serves version 1 of it)."""
    from demo_models import register_iris as register

    [version] = register()["versions"]
    return str(version)


def wait(url: str, timeout: float) -> None:
    """Until `url` answers 200: MLflow behind a fresh port-forward, a Service being switched."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url, timeout=5)
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1)
    raise SystemExit(f"{url} did not answer 200 within {timeout:.0f}s (last: {last})")


def payload(rows: int = 3) -> dict[str, Any]:
    """The first diabetes rows in MLflow's `dataframe_split` format."""
    from demo_models import diabetes_frame

    X, _ = diabetes_frame()
    head = X.iloc[:rows]
    return {"dataframe_split": {"columns": list(head.columns), "data": head.to_numpy().tolist()}}


def predict(url: str, version: str | None = None, timeout: float = 60) -> dict[str, Any]:
    """Which version and color answer at `url`, and what they predict for the first rows; with
    `version`, once that version answers (a switched Service reaches the new pods a moment after
    the switch)."""
    deadline = time.monotonic() + timeout
    served = httpx.get(f"{url}/info", timeout=10).json()
    while version is not None and served["model_version"] != version:
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} still answers from version {served['model_version']}")
        time.sleep(1)
        served = httpx.get(f"{url}/info", timeout=10).json()
    answer = httpx.post(f"{url}/invocations", json=payload(), timeout=30)
    answer.raise_for_status()
    return {
        "model": served["model_name"],
        "version": served["model_version"],
        "color": served["color"],
        "predictions": answer.json()["predictions"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    champion = commands.add_parser("register-champion", help="a new Diabetes version, @champion")
    champion.add_argument("--tracking-uri", required=True)
    champion.add_argument("--trees", type=int, default=100)
    iris = commands.add_parser("register-iris", help="the Iris classifier")
    iris.add_argument("--tracking-uri", required=True)
    waiting = commands.add_parser("wait", help="until URL answers 200")
    waiting.add_argument("url")
    waiting.add_argument("--timeout", type=float, default=300)
    asking = commands.add_parser("predict", help="POST /invocations to URL, show who answered")
    asking.add_argument("url")
    asking.add_argument("--version", help="wait until this model version answers")
    args = parser.parse_args()

    if args.command in ("register-champion", "register-iris"):
        import mlflow

        mlflow.set_tracking_uri(args.tracking_uri)
        # MLflow prints links to the run on stdout: keep stdout for the version alone.
        with contextlib.redirect_stdout(sys.stderr):
            mlflow.set_experiment("turnout-quickstart")
            if args.command == "register-champion":
                version = register_champion(args.trees)
            else:
                version = register_iris()
        print(version)
    elif args.command == "wait":
        wait(args.url, args.timeout)
    else:
        print(json.dumps(predict(args.url, args.version)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
