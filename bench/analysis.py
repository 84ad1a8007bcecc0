"""Promotion on evidence, timed on the real control plane: from a preview ready to the
pre-promotion analysis' decision and to the switch, next to the same rollout with no analysis.

Why it exists: an analysed rollout should wait `count * intervalSeconds` for its measurements and
hardly longer; what it adds beyond that (the smoke test, mirroring starting, the operator's
wake-ups, reading every pod's /metrics through the API server, status writes) shows here. It
starts what tests/real's `cluster` fixture starts, with the same functions: a control plane and
its node agent (pods are real `turnout-serve` processes), MLflow exposed to the pods at the
bridge address, the CRD, and the operator out of cluster under the chart's Role. Then, per
series (a pre-promotion analysis of `count` 1, of `count` 3, and no analysis), a ModelDeployment
mirroring every request to its preview, steady predictions (20 a second) through its active
Service, and `--rounds` bumps of the version to an identical retrained model (each once the
color that is not active has no pod left: 1 s after the last switch); every 0.1 s it
reads the status (and the AnalysisSuccessful Event) and stamps: the preview ready
(`rollout.readyAt` appears), the analysis started, the decision (the run Successful, or its
Event), the switch (`activeVersion` changes). It prints figures and ratios, asserts nothing.

What it must never do: send traffic anywhere but 127.0.0.1 and the pod network it makes, loop
without a bound (every wait has a deadline, the traffic a count and a time), or leave a process
behind (all are stopped in a `finally`; a killed run's programs die with it).

Needs root, iproute2 and the built control plane (scripts/build-controlplane.sh), and helm for
the chart's Role (`make tools`).

    .venv/bin/python bench/analysis.py [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from kubernetes import client, config
from sklearn.linear_model import Ridge

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests.real lives in the repo

from tests.conftest import Registry, load_script, start_mlflow, wait_until
from tests.integration.cluster import ROW, Cluster
from tests.real import cluster as local_cluster
from tests.real.conftest import RunningNode
from tests.real.controlplane import ControlPlane
from tests.real.operator import apply_crd, operator_cluster
from tests.real.traffic import Traffic

MODEL = "Benchgate"
INTERVAL = 5  # the CRD's smallest intervalSeconds
SERIES: dict[str, int | None] = {"no analysis": None, "count 1": 1, "count 3": 3}
ROUND_TIMEOUT = 300.0  # a bump to its switch, at most
POLL = 0.1


@dataclass
class Stamps:
    """Seconds from the bump; None: not seen (it came and went between two reads)."""

    ready: float | None = None
    started: float | None = None
    decided: float | None = None
    switched: float | None = None
    aborted: str = ""  # why the rollout ended without a switch


def strategy(count: int | None) -> dict[str, Any]:
    """Blue-green mirroring every request to the preview; gated when `count` is given."""
    blue_green: dict[str, Any] = {
        "shadow": {"percent": 100}, "scaleDownDelaySeconds": 1, "abortScaleDownDelaySeconds": 1,
    }  # fmt: skip
    if count is not None:
        blue_green["analysis"] = {"prePromotion": {
            "intervalSeconds": INTERVAL, "count": count, "minRequests": 10,
            "shadowAgreementMin": 0.99, "errorRatioMax": 0.01,
        }}  # fmt: skip
    return {"blueGreen": blue_green}


def register(uri: str, rounds: int) -> list[str]:
    """A ridge regression of the diabetes data, and `rounds` identical retrained versions."""
    models = load_script("demo_models")
    X, y = models.diabetes_frame()
    mlflow.set_tracking_uri(uri)
    return [models._log_sklearn(Ridge().fit(X, y), X, MODEL, reference=False)
            for _ in range(rounds + 1)]  # fmt: skip


def decided(cluster: Cluster, name: str, status: dict[str, Any], version: str) -> bool:
    """The pre-promotion analysis of `version` is Successful: in the rollout, in the run kept
    once it ended, or in its Event (posted before the status is written)."""
    rollout = status.get("rollout") or {}
    run = rollout.get("prePromotionAnalysis") if rollout.get("version") == version else None
    kept = status.get("lastPrePromotionAnalysis") or {}
    if (run or {}).get("phase") == "Successful" or (
        kept.get("version") == version and kept.get("phase") == "Successful"
    ):
        return True
    needle = f"pre-promotion analysis of version {version}:"
    return any(
        e.get("reason") == "AnalysisSuccessful" and e.get("message", "").startswith(needle)
        for e in cluster.kube.events(cluster.namespace, involved_name=name)
    )


def one_rollout(cluster: Cluster, name: str, version: str, gated: bool) -> Stamps:
    """Bump `name` to `version` and stamp what the status shows every POLL seconds."""
    stamps = Stamps()
    cluster.patch_spec(name, {"model": {"name": MODEL, "version": version}})
    began = time.monotonic()
    while stamps.switched is None and not stamps.aborted:
        now = time.monotonic() - began
        if now > ROUND_TIMEOUT:
            raise RuntimeError(f"{name}: no switch to {version} in {ROUND_TIMEOUT:.0f} s: "
                               f"{cluster.status(name)}")  # fmt: skip
        status = cluster.status(name)
        rollout = status.get("rollout") or {}
        ours = rollout.get("version") == version
        if version in status.get("rejectedVersions", []):
            stamps.aborted = status.get("message", "")
        if stamps.ready is None and ours and rollout.get("readyAt"):
            stamps.ready = now
        if stamps.started is None and ours and rollout.get("prePromotionAnalysis"):
            stamps.started = now
        if gated and stamps.decided is None and decided(cluster, name, status, version):
            stamps.decided = now
        if status.get("activeVersion") == version:
            stamps.switched = now
        elif not stamps.aborted:
            time.sleep(POLL)
    return stamps


def cold(cluster: Cluster, name: str) -> None:
    """Until the color that is not active runs no pod: every rollout then starts its preview's
    pod, as the first does. (A color still warm from the last switch holds a pod of the version
    before, which the operator takes for the new version's while the Deployment rolls.)"""
    idle = "green" if cluster.status(name).get("activeColor") == "blue" else "blue"

    def scaled_down() -> bool:
        found = cluster.deployment(f"{name}-{idle}")
        status = (found or {}).get("status") or {}
        return found is None or (found["spec"]["replicas"] == 0 and not status.get("replicas"))

    wait_until(scaled_down, timeout=120, interval=0.2, what=f"{name}-{idle} scaled down")


def series(
    cluster: Cluster, label: str, count: int | None, versions: list[str]
) -> tuple[list[Stamps], int, int]:
    """One ModelDeployment, rolled out to each later version in turn under steady traffic;
    the stamps, and the requests sent and failed."""
    name = "gate-" + label.replace(" ", "-")
    cluster.apply(name, {"name": MODEL, "version": versions[0]}, strategy=strategy(count))
    cluster.wait_phase(name, "Healthy", timeout=240, activeVersion=versions[0])
    path = f"/api/v1/namespaces/{cluster.namespace}/services/{name}:http/proxy/invocations"
    rounds = []
    with Traffic(cluster.kube.http, path, {"dataframe_records": [ROW]}, rate=20.0) as traffic:
        traffic.wait_answers(20)
        for version in versions[1:]:
            cold(cluster, name)
            stamps = one_rollout(cluster, name, version, gated=count is not None)
            print(f"  {label}, version {version}: {shown(stamps)}", flush=True)
            rounds.append(stamps)
    cluster.delete_model_deployments()
    return rounds, len(traffic.answers), len(traffic.failures())


def shown(s: Stamps) -> str:
    def at(t: float | None) -> str:
        return "-" if t is None else f"{t:.1f} s"

    if s.aborted:
        return f"ready {at(s.ready)}, NOT PROMOTED: {s.aborted.strip()[:300]}"
    return (f"ready {at(s.ready)}, analysis started {at(s.started)}, decided {at(s.decided)}, "
            f"switched {at(s.switched)} after the bump")  # fmt: skip


def spread(values: list[float]) -> str:
    if not values:
        return "(not seen)"
    return (f"median {statistics.median(values):6.2f} s, min {min(values):6.2f}, "
            f"max {max(values):6.2f} ({len(values)})")  # fmt: skip


def between(rounds: list[Stamps], start: str, end: str, less: float = 0.0) -> list[float]:
    """end - start - less, over the rounds where both were seen."""
    pairs = [(getattr(s, start), getattr(s, end)) for s in rounds]
    return [b - a - less for a, b in pairs if a is not None and b is not None]


def report(results: dict[str, list[Stamps]]) -> None:
    baseline = between(results["no analysis"], "ready", "switched")
    print("\nper series, over the rounds")
    for label, count in SERIES.items():
        rounds = results[label]
        lines = [
            ("bump -> ready (preview pod up)", [s.ready for s in rounds if s.ready is not None]),
            ("ready -> analysis started", between(rounds, "ready", "started")),
        ]
        if count is not None:
            beyond = between(rounds, "ready", "decided", less=count * INTERVAL)
            lines += [
                ("ready -> decision", between(rounds, "ready", "decided")),
                (f"  less {count} x {INTERVAL} s of intervals", beyond),
                ("decision -> switch", between(rounds, "decided", "switched")),
            ]
        to_switch = between(rounds, "ready", "switched")
        lines.append(("ready -> switch", to_switch))
        aborted = sum(1 for s in rounds if s.aborted)
        print(f"{label}:" + (f" ({aborted} of {len(rounds)} not promoted)" if aborted else ""))
        for what, values in lines:
            print(f"  {what:<32} {spread(values)}")
        if count is not None and to_switch and baseline:
            ratio = statistics.median(to_switch) / statistics.median(baseline)
            print(f"  {'ready -> switch / no analysis':<32} {ratio:.1f} x (medians)")


@contextlib.contextmanager
def operator_on_real_cluster(
    tmp: Path,
    prefix: str = "benchgate",
    extra_env: dict[str, str] | None = None,
    command: list[str] | None = None,
) -> Iterator[Cluster]:
    """What tests/real's `cluster` fixture starts, with the same functions, stopped on exit: the
    operator watches a namespace of its own (`prefix`-xxxxx), with `extra_env`, started as
    `command` (default `turnout-operator`)."""
    plane = ControlPlane(tmp / "cluster")
    agent = None
    mlflow_server = None
    try:
        print(f"control plane ready in {plane.start():.1f} s", flush=True)
        agent = local_cluster.node_agent(plane)
        print(f"node agent: Node Ready in {agent.start():.1f} s", flush=True)
        (tmp / "mlflow").mkdir()
        mlflow_server = start_mlflow(tmp / "mlflow")
        registry = Registry(mlflow_server.url, {}, {"MLFLOW_TRACKING_URI": mlflow_server.url})
        port = int(mlflow_server.url.rsplit(":", 1)[1])
        with (
            config.new_client_from_config(config_file=str(plane.kubeconfig)) as api,
            RunningNode(agent).expose(port) as pods_registry,
        ):
            apply_crd(api)
            (tmp / "operator").mkdir()
            operator = contextlib.contextmanager(operator_cluster)
            with operator(plane, client.CoreV1Api(api), registry, pods_registry.url,
                          tmp / "operator", prefix, extra_env, command) as cluster:  # fmt: skip
                yield cluster
    finally:
        if mlflow_server is not None:
            mlflow_server.stop()
        if agent is not None:
            agent.stop()
        plane.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rollouts per series")
    rounds = parser.parse_args().rounds
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="turnout-bench-analysis-") as tmp,
        operator_on_real_cluster(Path(tmp)) as cluster,
    ):
        versions = register(cluster.registry.uri, rounds)
        print(f"registered {MODEL} versions {', '.join(versions)}: the same ridge regression")
        results = {}
        for label, count in SERIES.items():
            stamps, sent, failed = series(cluster, label, count, versions)
            print(f"  {label}: {sent} requests through the active Service, {failed} failed")
            results[label] = stamps
    report(results)
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
