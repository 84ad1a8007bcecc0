"""Retraining scenarios shared by the emulator's suite (tests/integration/test_retraining.py)
and the real control plane's (tests/real/test_retraining.py): a world that moves, the example
trainer (examples/retraining/train.py) as the Job's command, traffic and drift read through the
API server's service proxy.

The data: the first version learns y = 3*x1 - 2*x2 on x ~ N(0, 1). Then the world moves: inputs
come from x1 ~ N(4, 1), x2 ~ N(-3, 1) and y gains 25. Served that traffic, version 1's
predictions drift far from its reference; the retrained version, fitted on the new data, beats
it on the same holdout, and its own predictions match its own reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, Registry, wait_until
from tests.integration.cluster import Cluster

TRAINER = ROOT / "examples" / "retraining" / "train.py"
FEATURES = ["x1", "x2"]
READ_EVERY = "1"  # seconds between the operator's reads of the active pods' figures
PSI_ABOVE, FOR_SECONDS, MIN_ROWS = 0.5, 3, 100
DRIFT = {"psiAbove": PSI_ABOVE, "forSeconds": FOR_SECONDS, "minRows": MIN_ROWS}
STRATEGY = {"blueGreen": {"scaleDownDelaySeconds": 1}}
POLL = {"pollIntervalSeconds": 5}
RETRAININGS = "turnout_operator_retraining_total"


def write_worlds(home: Path) -> dict[str, Path]:
    """The world before and after it moved, 800 labelled rows each, as CSV files."""
    paths = {"before": home / "before.csv", "after": home / "after.csv"}
    world(800, moved=False, seed=1).to_csv(paths["before"], index=False)
    world(800, moved=True, seed=2).to_csv(paths["after"], index=False)
    return paths


def world(rows: int, *, moved: bool, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(4.0 if moved else 0.0, 1.0, rows)
    x2 = rng.normal(-3.0 if moved else 0.0, 1.0, rows)
    y = 3 * x1 - 2 * x2 + (25.0 if moved else 0.0) + rng.normal(0, 0.3, rows)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": y})


def train(registry: Registry, model: str, data: Path, **env: str) -> dict[str, Any]:
    """The example trainer, run by hand as a data scientist would for the first version."""
    done = subprocess.run(
        [sys.executable, str(TRAINER)], capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "MLFLOW_TRACKING_URI": registry.uri, "TURNOUT_MODEL_NAME": model,
             "TURNOUT_MODEL_ALIAS": "champion", "TRAINING_DATA": str(data),
             "TARGET_COLUMN": "y", **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    outcome: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return outcome


def job_template(data: Path, *command: str) -> dict[str, Any]:
    return {
        "image": "ghcr.io/turnout-dev/turnout-trainer-example:0.1.0",
        "command": list(command or (sys.executable, str(TRAINER))),
        "env": [{"name": "TRAINING_DATA", "value": str(data)},
                {"name": "TARGET_COLUMN", "value": "y"}],
    }  # fmt: skip


def send(cluster: Cluster, service: str, frame: pd.DataFrame, batch: int = 50) -> None:
    """`frame`'s features through the active Service, `batch` rows per request."""
    with cluster.kube.http() as http:
        for start in range(0, len(frame), batch):
            rows = frame[FEATURES].iloc[start : start + batch]
            answer = http.post(
                f"/api/v1/namespaces/{cluster.namespace}/services/{service}:http/proxy/invocations",
                json={"dataframe_split": {"columns": FEATURES, "data": rows.values.tolist()}},
            )
            assert answer.status_code == 200, answer.text


def drift(cluster: Cluster, service: str) -> tuple[float, float]:
    """The prediction PSI and drift window rows the active Service's pod exports (the pod
    recomputes them at most once a second: see `settled`)."""
    with cluster.kube.http() as http:
        text = http.get(
            f"/api/v1/namespaces/{cluster.namespace}/services/{service}:http/proxy/metrics"
        ).text
    found = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
             if s.name in ("turnout_prediction_drift_psi", "turnout_drift_window_rows")}  # fmt: skip
    return found["turnout_prediction_drift_psi"], found["turnout_drift_window_rows"]


def settled(cluster: Cluster, service: str, above: bool, rows: int) -> float:
    """The drift window's rows once the pod's report covers at least the `rows` rows sent to it
    (it is recomputed at most once a second; a smoke test's rows may come on top), with the
    prediction PSI on the side of the bound the test expects."""

    def reported() -> float | None:
        psi, window = drift(cluster, service)
        return window if window >= rows and (psi > PSI_ABOVE) == above else None

    where = "above" if above else "below"
    found: float = wait_until(reported, timeout=10, interval=0.5,
                              what=f"{service}: {rows} rows, prediction drift {where} the bound")  # fmt: skip
    return found


def retraining(cluster: Cluster, name: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.status(name).get("retraining") or {}
    return found


def wait_retraining(
    cluster: Cluster, name: str, state: str, timeout: float = 120
) -> dict[str, Any]:
    last: dict[str, Any] = wait_until(
        lambda: (r := retraining(cluster, name).get("last")) and r["state"] == state and r,
        timeout=timeout, interval=0.5, what=f"{name}: a retraining {state}",
    )  # fmt: skip
    return last


def jobs(cluster: Cluster) -> list[str]:
    found = cluster.kube.list("batch/v1", "Job", cluster.namespace)
    return sorted(j["metadata"]["name"] for j in found)


# --- the scenarios -----------------------------------------------------------------------------


def drift_retrains_and_the_new_version_rolls_out(
    cluster: Cluster, registry: Registry, data: dict[str, Path]
) -> None:
    """Drift sustained -> the trainer's Job -> version 2 and the alias -> the gated rollout ->
    Healthy on version 2, with drift back to normal on its own reference."""
    first = train(registry, "Rentals", data["before"])
    assert (first["version"], first["promoted"]) == ("1", True)
    cluster.apply(
        "rentals", {"name": "Rentals", "alias": "champion"}, registry=POLL, strategy=STRATEGY,
        retraining={"triggers": {"drift": DRIFT}, "jobTemplate": job_template(data["after"]),
                    "cooldownSeconds": 3600},
    )  # fmt: skip
    cluster.wait_phase("rentals", "Healthy", timeout=120, activeVersion="1")
    send(cluster, "rentals", world(300, moved=False, seed=3))  # the world as it was
    time.sleep(3 * float(READ_EVERY))
    assert retraining(cluster, "rentals").get("started", 0) == 0  # no drift, no Job

    moved = world(300, moved=True, seed=4)
    send(cluster, "rentals", moved)
    settled(cluster, "rentals", above=True, rows=600)  # the pod's window: both batches
    started = wait_retraining(cluster, "rentals", "Running", timeout=60)
    assert (started["jobName"], started["reason"], started["version"]) == (
        "rentals-retrain-1", "Drift", "1"
    )  # fmt: skip
    assert started["figures"]["psi"] > PSI_ABOVE
    assert started["figures"]["aboveSeconds"] >= FOR_SECONDS
    ended = wait_retraining(cluster, "rentals", "Succeeded", timeout=180)
    assert ended["message"] == "Job rentals-retrain-1 succeeded"

    client = MlflowClient(registry.uri)
    champion = client.get_model_version_by_alias("Rentals", "champion")
    assert champion.version == "2"  # the trainer beat version 1 on the new holdout and moved it
    assert champion.tags["turnout.retraining.job"] == "rentals-retrain-1"
    status = cluster.wait_phase("rentals", "Healthy", timeout=180, activeVersion="2")
    assert status["retraining"]["started"] == 1

    send(cluster, "rentals", world(300, moved=True, seed=5))
    settled(cluster, "rentals", above=False, rows=300)  # the new reference fits
    reasons = cluster.reasons("rentals")
    assert {"RetrainingStarted", "RetrainingSucceeded"} <= set(reasons), reasons
    assert cluster.metric(f'{RETRAININGS}{{reason="Drift",result="started"}}') >= 1
    assert cluster.metric(f'{RETRAININGS}{{reason="Drift",result="succeeded"}}') >= 1
    assert jobs(cluster) == ["rentals-retrain-1"]


def a_failing_job_is_bounded(cluster: Cluster, registry: Registry, data: dict[str, Path]) -> None:
    """Too few rows never trigger; a failing Job is reported and not retried within the
    cooldown, however long drift lasts; the annotation still starts one."""
    train(registry, "Failing", data["before"])
    failing = job_template(data["after"], sys.executable, "-c",
                           "import sys; print('no training data today'); sys.exit(3)")  # fmt: skip
    cluster.apply(
        "failing", {"name": "Failing", "alias": "champion"}, registry=POLL, strategy=STRATEGY,
        retraining={"triggers": {"drift": DRIFT, "quality": {"maxAbsolute": 1.0}},
                    "jobTemplate": failing, "cooldownSeconds": 3600},
    )  # fmt: skip
    cluster.wait_phase("failing", "Healthy", timeout=120, activeVersion="1")

    send(cluster, "failing", world(60, moved=True, seed=6), batch=20)  # drifted, but 60 rows
    assert settled(cluster, "failing", above=True, rows=60) < MIN_ROWS
    time.sleep(FOR_SECONDS + 3 * float(READ_EVERY))
    assert retraining(cluster, "failing").get("started", 0) == 0
    assert jobs(cluster) == []

    send(cluster, "failing", world(200, moved=True, seed=7))
    failed = wait_retraining(cluster, "failing", "Failed", timeout=120)
    assert failed["jobName"] == "failing-retrain-1"
    assert failed["message"].startswith("Job failing-retrain-1 failed: BackoffLimitExceeded")
    cluster.wait_event("failing", "RetrainingFailed")
    time.sleep(FOR_SECONDS + 3 * float(READ_EVERY))  # drift is still high
    assert retraining(cluster, "failing")["started"] == 1  # the cooldown holds
    assert jobs(cluster) == ["failing-retrain-1"]

    cluster.annotate("failing", "turnout.dev/retrain", "now")
    again = wait_until(
        lambda: (r := retraining(cluster, "failing")["last"])["jobName"] == "failing-retrain-2"
        and r["state"] == "Failed" and r, timeout=120, interval=0.5, what="the second Job failed",
    )  # fmt: skip
    assert again["reason"] == "Requested"
    assert [r["jobName"] for r in retraining(cluster, "failing")["history"]] == [
        "failing-retrain-1"
    ]
    assert cluster.metric(f'{RETRAININGS}{{reason="Drift",result="failed"}}') >= 1
    assert cluster.status("failing")["activeVersion"] == "1"  # still serving


def the_operator_promotes_a_better_version(
    cluster: Cluster, registry: Registry, data: dict[str, Path]
) -> None:
    """promote: alias: the Job only registers; the operator compares and moves the alias."""
    train(registry, "Promoted", data["before"])
    cluster.apply(
        "promoted", {"name": "Promoted", "alias": "champion"}, registry=POLL, strategy=STRATEGY,
        retraining={"jobTemplate": job_template(data["after"]), "promote": "alias"},
    )  # fmt: skip
    cluster.wait_phase("promoted", "Healthy", timeout=120, activeVersion="1")
    cluster.annotate("promoted", "turnout.dev/retrain", "now")
    last = wait_until(
        lambda: (r := retraining(cluster, "promoted").get("last")) and r.get("promotion")
        in ("Promoted", "Kept") and r, timeout=180, interval=0.5, what="the promotion",
    )  # fmt: skip
    assert (last["promotion"], last["registeredVersion"], last["reason"]) == (
        "Promoted", "2", "Requested"
    )  # fmt: skip
    client = MlflowClient(registry.uri)
    assert client.get_model_version_by_alias("Promoted", "champion").version == "2"
    cluster.wait_phase("promoted", "Healthy", timeout=180, activeVersion="2")
    cluster.wait_event("promoted", "RetrainedVersionPromoted")
    assert cluster.metric(f'{RETRAININGS}{{reason="Requested",result="promoted"}}') == 1
