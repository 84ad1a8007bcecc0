"""Registry webhooks benchmark: alias moved in MLflow -> preview Deployment requested, with the
operator told by MLflow's webhook, and with the operator polling.

Why it exists: a registry webhook is there to start a rollout at once instead of at the next poll
(docs/webhooks.md). This script runs what tests/integration/test_webhooks.py runs — a real MLflow
server delivering its own signed webhooks over HTTPS, the real operator process, the Kubernetes
API emulator in this process (pods available at once) — and times, for each alias move, the
moment `set_registered_model_alias` is called to the emulator's write of the preview Deployment
on the new version. Phase 1 runs the operator without the endpoint and the ModelDeployment
polling every 5 s (the least pollIntervalSeconds allows; the default is 60 s); phase 2 runs it
with the endpoint, MLflow's webhook registered and the ModelDeployment polling once an hour.
It prints figures; it asserts nothing.

What it must never do: send traffic anywhere but 127.0.0.1, loop without a bound in count and
time, or leave a process running (each server in its own session, stopped in a `finally`).

    .venv/bin/python bench/webhooks.py [--moves N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(ROOT))  # the emulator (tests.kube) and the test CA helpers

from serving import HOST, Server, bench_operator, free_port, poll  # noqa: E402
from tests.kube.emulator import KubeEmulator  # noqa: E402
from tests.real.pki import _Authority, _write  # noqa: E402
from turnout_operator.crd import build_crd  # noqa: E402
from turnout_operator.domain.spec import API_VERSION  # noqa: E402

B = bench_operator()
NAMESPACE, SECRET = "default", "bench-webhook-secret"
SITECUSTOMIZE = ROOT / "charts" / "turnout" / "files" / "mlflow" / "sitecustomize.py.txt"
STRATEGY = {"blueGreen": {"smokeTest": False, "scaleDownDelaySeconds": 0}}
MOVE_BUDGET_S = 60.0  # alias moved -> preview requested, polling every 5 s: well inside


def pki(tmp: Path) -> tuple[Path, Path, Path]:
    ca = _Authority("turnout-bench-webhook-ca")
    ca_pair = _write(tmp, "ca", ca.cert, ca.key)
    serving = _write(tmp, "tls", *ca.sign("turnout-operator", serving=True, ips=(HOST,)))
    return ca_pair.cert, serving.cert, serving.key


def start_mlflow(tmp: Path, ca: Path) -> Server:
    (tmp / "site").mkdir()
    (tmp / "site" / "sitecustomize.py").write_bytes(SITECUSTOMIZE.read_bytes())
    port = free_port()
    argv = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", HOST,
            "--port", str(port), "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db",
            "--default-artifact-root", str(tmp / "artifacts"), "--workers", "1"]  # fmt: skip
    # MLflow caches its list of webhooks for 60 s: one registered between the phases would miss
    # the first moves. 0 reads the list for every event (one sqlite query).
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_WEBHOOK_CACHE_TTL": "0",
           "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
           "PYTHONPATH": str(tmp / "site"), "TURNOUT_WEBHOOK_CA_FILE": str(ca)}  # fmt: skip
    server = Server("mlflow server", argv, env, port, tmp / "mlflow.log")
    server.start()
    if (
        poll(lambda: True if B.http_ok(f"http://{HOST}:{port}/health") else None, 120.0, 0.5)
        is None
    ):
        server.stop()
        raise RuntimeError(f"MLflow not up in 120 s:\n{server.log_tail()}")
    return server


@contextmanager
def operator(kube: KubeEmulator, uri: str, tmp: Path, webhook: dict[str, str]) -> Iterator[Server]:
    port = free_port()
    env = {"KUBECONFIG": str(kube.write_kubeconfig(tmp / "kubeconfig")),
           "TURNOUT_OPERATOR_TRACKING_URI": uri, "TURNOUT_OPERATOR_METRICS_PORT": str(port),
           **webhook}  # fmt: skip
    argv = [str(Path(sys.executable).parent / "turnout-operator"), "run", "--namespace", NAMESPACE]
    server = Server("turnout-operator", argv, env, port, tmp / f"operator-{port}.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def moves(kube: KubeEmulator, client, model: str, md: str, poll_s: int, count: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds from each alias move to the write of the preview Deployment on that version."""
    run = client.create_run("0").info
    client.create_registered_model(model)
    versions = [
        str(client.create_model_version(model, f"{run.artifact_uri}/m{i}", run.run_id).version)
        for i in range(count + 1)
    ]
    client.set_registered_model_alias(model, "champion", versions[0])
    timeline = B.Timeline(kube)
    kube.create({
        "apiVersion": API_VERSION, "kind": "ModelDeployment",
        "metadata": {"name": md, "namespace": NAMESPACE},
        "spec": {"model": {"name": model, "alias": "champion"}, "replicas": 1,
                 "registry": {"pollIntervalSeconds": poll_s}, "strategy": STRATEGY},
    })  # fmt: skip
    seconds: list[float] = []
    try:
        for version in versions:
            if version != versions[0]:
                rv, started = kube.store.resource_version, time.perf_counter()
                client.set_registered_model_alias(model, "champion", version)
                seen = poll(lambda rv=rv, v=version: preview(timeline, md, rv, v),
                            MOVE_BUDGET_S, 0.02)  # fmt: skip
                if seen is None:
                    raise RuntimeError(
                        f"{md}: no preview of version {version} in {MOVE_BUDGET_S} s"
                    )
                seconds.append(seen.at - started)
            if poll(lambda v=version: healthy(timeline, md, v), MOVE_BUDGET_S, 0.05) is None:
                raise RuntimeError(f"{md}: not Healthy on version {version} in {MOVE_BUDGET_S} s")
    finally:
        timeline.close()
    return seconds


def preview(timeline, md: str, rv: int, version: str):  # type: ignore[no-untyped-def]
    timeline.collect()
    found = [
        timeline.first(timeline.deployments, f"{md}-{color}", rv, lambda s: s.version == version)
        for color in ("blue", "green")
    ]
    return min((s for s in found if s is not None), key=lambda s: s.rv, default=None)


def healthy(timeline, md: str, version: str):  # type: ignore[no-untyped-def]
    timeline.collect()
    return timeline.first(
        timeline.mds, md, 0, lambda s: s.phase == "Healthy" and s.active_version == version
    )


@contextmanager
def kept(directory: Path) -> Iterator[str]:
    directory.mkdir(parents=True)
    yield str(directory)


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--moves", type=int, default=10, help="alias moves per phase")
    args.add_argument("--logs", type=Path, help="keep the servers' logs in this new directory")
    parsed = args.parse_args(argv)
    count = parsed.moves
    from mlflow import MlflowClient

    with (
        kept(parsed.logs) if parsed.logs else tempfile.TemporaryDirectory(prefix="bench-") as name,
        KubeEmulator(log_dir=Path(name) / "pods") as kube,
    ):
        tmp = Path(name)
        kube.apply_crd(build_crd())
        kube.controller.behave_default("available")
        ca, cert, key = pki(tmp)
        (tmp / "secret").write_text(SECRET)
        mlflow = start_mlflow(tmp, ca)
        try:
            uri = f"http://{HOST}:{mlflow.port}"
            client = MlflowClient(uri)
            with operator(kube, uri, tmp, {}):
                polled = moves(kube, client, "BenchPolled", "polled", 5, count)
            port = free_port()
            endpoint = {"TURNOUT_OPERATOR_WEBHOOK_PORT": str(port),
                        "TURNOUT_OPERATOR_WEBHOOK_ADDRESS": HOST,
                        "TURNOUT_OPERATOR_WEBHOOK_CERT_FILE": str(cert),
                        "TURNOUT_OPERATOR_WEBHOOK_KEY_FILE": str(key),
                        "TURNOUT_OPERATOR_WEBHOOK_SECRET_FILE": str(tmp / "secret")}  # fmt: skip
            with operator(kube, uri, tmp, endpoint):
                client.create_webhook("turnout", f"https://{HOST}:{port}/webhooks/mlflow",
                                      ["model_version_alias.created"], secret=SECRET)  # fmt: skip
                hooked = moves(kube, client, "BenchHooked", "hooked", 3600, count)
        finally:
            mlflow.stop()
    print(f"alias moved -> preview Deployment requested, {count} moves each (seconds)")
    for what, seconds in (("polling every 5 s", polled), ("webhook, polling hourly", hooked)):
        spread = B.Spread.of(seconds)
        print(f"  {what:<26} median {spread.median:6.3f}  p99 {spread.p99:6.3f}  "
              f"max {spread.max:6.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
