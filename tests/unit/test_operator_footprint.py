"""The operator process stays small: it never imports MLflow (which drags in pandas and
FastAPI, ~125 MB resident), the serving package, or scikit-learn. One operator holds hundreds of
ModelDeployments within its memory limit (bench/operator.py measures it)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("mlflow", "pandas", "fastapi", "sklearn", "turnout_serving")


def test_running_the_operator_imports_no_mlflow_pandas_or_serving_code() -> None:
    # What `turnout-operator run` imports before kopf starts (cli._run), in a fresh interpreter.
    code = (
        "import sys, turnout_operator.cli, turnout_operator.handlers, turnout_operator.kube, "
        "turnout_operator.metrics, turnout_operator.reconcile, turnout_operator.registry, kopf; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
