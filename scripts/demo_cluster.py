"""`make demo`: what turnout is for, on one machine, without Docker.

A real Kubernetes control plane (kube-apiserver, controller manager, scheduler, etcd, built by
`make controlplane`) and the node agent that runs its pods as local processes; an MLflow tracking
server; the Helm chart installed for real (the operator runs in a pod, as its ServiceAccount); a
model registered with the alias `champion`; `kubectl apply -f examples/diabetes-champion.yaml`.
Then, with a client sending steady predictions through the active Service all along: the
ModelDeployment becomes Healthy; a new version is registered and the alias moved; the operator
rolls it out blue-green (preview, smoke test, switch); a `turnout.dev/rollback` annotation
switches back to the warm color. Every answer is counted: the promise is zero failed requests.

It prints the kubeconfig so you can watch (`kubectl get mdep -w`) and act (`kubectl annotate`)
yourself, holds the cluster for `--hold` seconds (Ctrl-C ends it sooner), and then stops
everything it started and removes its state (`.demo/cluster`).

    .venv/bin/python scripts/demo_cluster.py [--hold SECONDS] [--rate PER_SECOND] [--json FILE]

Needs root (network namespaces), Go (the control plane's first build) and `make tools` (kubectl,
helm). The serving-only demo (turnout-serve alone, no cluster) is `make demo-serve`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(ROOT))  # the control plane, node agent and traffic client live in tests/

import httpx  # noqa: E402
import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from sklearn.ensemble import GradientBoostingRegressor  # noqa: E402

from tests.conftest import Process, load_script, start_mlflow  # noqa: E402
from tests.integration.cluster import ROW  # noqa: E402
from tests.real.controlplane import ControlPlane  # noqa: E402
from tests.real.node import NodeAgent  # noqa: E402
from tests.real.traffic import Traffic  # noqa: E402

WORK = ROOT / ".demo" / "cluster"
TOOLS = ROOT / ".tools" / "bin"
EXAMPLE = ROOT / "examples" / "diabetes-champion.yaml"
MODEL, NAME, NAMESPACE, SYSTEM = "Diabetes", "diabetes", "default", "turnout-system"
MD_PATH = f"/apis/turnout.dev/v1alpha1/namespaces/{NAMESPACE}/modeldeployments/{NAME}"
BEGAN = time.monotonic()


def step(text: str) -> None:
    print(f"\n[{time.monotonic() - BEGAN:6.1f}s] ==> {text}", flush=True)


def tool(name: str) -> str:
    found = shutil.which(name) or (str(TOOLS / name) if (TOOLS / name).exists() else None)
    if found is None:
        raise SystemExit(f"demo: `{name}` not found on PATH or in {TOOLS}: run `make tools`")
    return found


def run(*argv: str, timeout: float = 300) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"demo: {' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def wait_for(probe: Callable[[], Any], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            found = probe()
            if found:
                return found
        time.sleep(0.5)
    raise SystemExit(f"demo: {what} did not happen within {timeout:.0f}s; logs are in {WORK}")


class Watch:
    """Prints the ModelDeployment's status whenever what `kubectl get mdep` shows changes."""

    def __init__(self, admin: httpx.Client) -> None:
        self.admin = admin
        self.last: tuple[Any, ...] | None = None

    def status(self) -> dict[str, Any]:
        found = self.admin.get(MD_PATH)
        return (found.json().get("status") or {}) if found.status_code == 200 else {}

    def until(
        self, done: Callable[[dict[str, Any]], bool], what: str, timeout: float = 300
    ) -> None:
        def changed() -> bool:
            status = self.status()
            shown = tuple(
                status.get(k)
                for k in (
                    "phase",
                    "desiredVersion",
                    "activeVersion",
                    "activeColor",
                    "previewVersion",
                    "message",
                )
            )
            if shown != self.last:
                self.last = shown
                phase, desired, active, color, preview, message = shown
                print(
                    f"  [{time.monotonic() - BEGAN:6.1f}s] phase={phase} desired={desired} "
                    f"active={active} ({color}) preview={preview}  {message or ''}",
                    flush=True,
                )
            return done(status)

        wait_for(changed, what, timeout)


@contextlib.contextmanager
def mlflow_server(home: Path) -> Iterator[Process]:
    server = start_mlflow(home)
    try:
        yield server
    finally:
        server.stop()


def register(tracking: str, trees: int) -> str:
    """Train a gradient-boosting regressor on the diabetes data and register it (a version of
    `Diabetes`, with an input example and a drift reference), as the seed tutorials do."""
    models = load_script("demo_models")
    mlflow.set_tracking_uri(tracking)
    X, y = models.diabetes_frame()
    model = GradientBoostingRegressor(n_estimators=trees, random_state=trees).fit(X, y)
    return str(
        models._log_sklearn(model, X, MODEL, reference=True, skops_trusted_types=models.TREES)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--hold",
        type=float,
        default=600,
        help="seconds to keep the cluster up after the story (Ctrl-C ends it)",
    )
    parser.add_argument("--json", type=Path, help="write the traffic's figures by phase here")
    parser.add_argument("--rate", type=float, default=10, help="predictions a second")
    args = parser.parse_args(argv)
    kubectl, helm = tool("kubectl"), tool("helm")
    signal.signal(signal.SIGTERM, interrupt)
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    plane = ControlPlane(WORK / "controlplane")
    agent: NodeAgent | None = None
    try:
        step("the control plane: etcd, kube-apiserver, controller manager, scheduler")
        print(f"  up in {plane.start():.1f}s")
        kubeconfig = str(plane.kubeconfig)
        (WORK / "mlflow").mkdir()
        with mlflow_server(WORK / "mlflow") as registry:
            port = int(registry.url.rsplit(":", 1)[1])
            step("the node agent: pods run as local processes, each in a network namespace")
            agent = NodeAgent(plane.node_kubeconfig("turnout-node"), WORK / "node", expose=(port,))
            print(f"  Node Ready in {agent.start():.1f}s; pods reach the host at {agent.host_ip}")
            print(run(kubectl, "--kubeconfig", kubeconfig, "get", "nodes", "-o", "wide"))

            step(f"MLflow on {registry.url}: register {MODEL} version 1, alias champion")
            v1 = register(registry.url, trees=100)
            client = MlflowClient(registry.url)
            client.set_registered_model_alias(MODEL, "champion", v1)

            step("helm install turnout charts/turnout (the operator runs in a pod)")
            tracking = f"http://{agent.host_ip}:{port}"
            print(
                run(
                    helm,
                    "--kubeconfig",
                    kubeconfig,
                    "install",
                    "turnout",
                    str(ROOT / "charts" / "turnout"),
                    "--namespace",
                    SYSTEM,
                    "--create-namespace",
                    "--wait",
                    "--timeout",
                    "5m",
                    "--set",
                    f"watchNamespaces={{{NAMESPACE}}}",
                    "--set",
                    f"operator.trackingUri={tracking}",
                    "--set",
                    "operator.smokeVia=proxy",
                ).split("\n\n")[0]
            )

            step(f"kubectl apply -f {EXAMPLE.relative_to(ROOT)}")
            print(run(kubectl, "--kubeconfig", kubeconfig, "apply", "-f", str(EXAMPLE)))
            with plane.http() as admin:
                watch = Watch(admin)
                watch.until(lambda s: s.get("phase") == "Healthy", "the first deploy")
                print(run(kubectl, "--kubeconfig", kubeconfig, "get", "mdep,pods", "-o", "wide"))
                path = f"/api/v1/namespaces/{NAMESPACE}/services/{NAME}:http/proxy/invocations"
                with Traffic(
                    plane.http,
                    path,
                    {"dataframe_records": [ROW]},
                    rate=args.rate,
                    max_seconds=args.hold + 900,
                ) as traffic:
                    step(f"steady traffic through the active Service ({args.rate:g}/s)")
                    traffic.wait_answers(30)

                    step(f"register {MODEL} version 2 and move the alias champion to it")
                    traffic.phase("alias moved: blue-green switch")
                    v2 = register(registry.url, trees=50)
                    client.set_registered_model_alias(MODEL, "champion", v2)
                    watch.until(
                        lambda s: s.get("phase") == "Healthy" and s.get("activeVersion") == v2,
                        "the switch to version 2",
                    )
                    traffic.wait_answers(30)

                    step("kubectl annotate mdep diabetes turnout.dev/rollback=true")
                    traffic.phase("rollback by annotation")
                    run(
                        kubectl,
                        "--kubeconfig",
                        kubeconfig,
                        "annotate",
                        "mdep",
                        NAME,
                        "turnout.dev/rollback=true",
                    )
                    watch.until(lambda s: s.get("activeVersion") == v1, "the rollback")
                    traffic.wait_answers(30)
                    report(traffic)
                    if args.json:
                        args.json.write_text(json.dumps(traffic.summary(), indent=2))

                    step("your turn")
                    print(
                        f"  export KUBECONFIG={kubeconfig}\n"
                        f"  {kubectl} get mdep -w\n"
                        f"  {kubectl} annotate mdep {NAME} turnout.dev/retry=true\n"
                        f"  MLFLOW_TRACKING_URI={registry.url} (the registry)\n"
                        f"  Holding for {args.hold:.0f}s; Ctrl-C stops and cleans up."
                    )
                    traffic.phase("yours")
                    time.sleep(args.hold)
                report(traffic)
    except KeyboardInterrupt:
        print("\ninterrupted")
    finally:
        step("stopping everything and removing .demo/cluster")
        if agent is not None:
            agent.stop()
        plane.stop()
        shutil.rmtree(WORK, ignore_errors=True)
    return 0


def interrupt(signum: int, frame: Any) -> None:
    """SIGTERM ends the demo as Ctrl-C does: through the clean-up."""
    raise KeyboardInterrupt


def report(traffic: Traffic) -> None:
    print(f"\n  {'phase':<34} {'requests':>8} {'failed':>6} {'p50 ms':>7} {'p99 ms':>7}")
    for phase, figures in traffic.summary().items():
        print(
            f"  {phase:<34} {figures['count']:>8.0f} {figures['failed']:>6.0f} "
            f"{figures['p50'] * 1000:>7.1f} {figures['p99'] * 1000:>7.1f}"
        )
    for failure in traffic.failures()[:10]:
        print(f"  failed: {failure.phase}: {failure.status} {failure.error}")


if __name__ == "__main__":
    sys.exit(main())
