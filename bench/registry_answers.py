"""Registry requests per minute with 1 and with N ModelDeployments following one alias.

Why it exists: the operator promises that MLflow's load does not grow with the number of
ModelDeployments following the same model (they share the registry's answers: answers.py). This
script runs the real operator (`turnout-operator run`, against the Kubernetes API emulator, pods
available at once) and a real MLflow tracking server behind a counting proxy, creates 1 and then N
followers of `Bench@champion` polling every `--poll` seconds, waits until they are Healthy and
counts the alias lookups MLflow answers over `--window` seconds. It prints figures; it asserts
nothing.

What it must never do: send traffic anywhere but 127.0.0.1, loop without a bound in count and
time, or leave a process running (MLflow and the operator are stopped in a `finally`).

    .venv/bin/python bench/registry_answers.py [--followers 8] [--poll 10] [--window 60]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(ROOT))  # the test harness (emulator, MLflow, proxy) lives in the repo

from mlflow import MlflowClient  # noqa: E402

from tests.conftest import Registry, start_mlflow, wait_until  # noqa: E402
from tests.integration.cluster import Cluster, running_cluster  # noqa: E402
from tests.integration.counting_proxy import CountingProxy, counting_proxy  # noqa: E402

MODEL = "Bench"
STRATEGY = {"blueGreen": {"smokeTest": False, "scaleDownDelaySeconds": 1}}
HEALTHY_BUDGET_S = 120.0


def per_minute(
    cluster: Cluster, proxy: CountingProxy, followers: int, poll: int, window: float
) -> float:
    names = [f"follow-{followers}-{i}" for i in range(followers)]
    for name in names:
        cluster.apply(name, {"name": MODEL, "alias": "champion"}, strategy=STRATEGY,
                      registry={"pollIntervalSeconds": poll})  # fmt: skip
    for name in names:
        cluster.wait_phase(name, "Healthy", timeout=HEALTHY_BUDGET_S)
    before, started = proxy.alias_lookups(MODEL), time.monotonic()
    while time.monotonic() - started < window:
        assert cluster.operator.alive()
        time.sleep(0.5)
    lookups = proxy.alias_lookups(MODEL) - before
    cluster.delete_model_deployments()
    wait_until(lambda: not cluster.kube.list("turnout.dev/v1alpha1", "ModelDeployment", "default"),
               timeout=HEALTHY_BUDGET_S, what="the followers deleted")  # fmt: skip
    return 60.0 * lookups / window


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--followers", type=int, default=8, help="N (default 8).")
    p.add_argument("--poll", type=int, default=10, help="pollIntervalSeconds (default 10).")
    p.add_argument("--window", type=float, default=60.0, help="Seconds counted (default 60).")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="turnout-bench-answers-") as tmp, \
            contextlib.ExitStack() as stack:  # fmt: skip
        home = Path(tmp)
        (home / "mlflow").mkdir()
        server = start_mlflow(home / "mlflow")
        stack.callback(server.stop)
        client = MlflowClient(server.url)
        client.create_registered_model(MODEL)
        run = client.create_run("0").info
        version = client.create_model_version(MODEL, f"{run.artifact_uri}/model", run.run_id)
        client.set_registered_model_alias(MODEL, "champion", version.version)
        proxy = stack.enter_context(counting_proxy(server.url))
        (home / "operator").mkdir()
        clusters = running_cluster(Registry(proxy.url, {}), home / "operator", pods="available")
        cluster = next(clusters)
        stack.callback(clusters.close)
        figures = {n: per_minute(cluster, proxy, n, args.poll, args.window)
                   for n in (1, args.followers)}  # fmt: skip
    print(f"alias polled every {args.poll} s, counted over {args.window:g} s:")
    for followers, rate in figures.items():
        print(f"  {followers:3d} follower(s): {rate:5.1f} MLflow alias lookups per minute")
    return 0


if __name__ == "__main__":
    sys.exit(main())
