"""Operator benchmark: N ModelDeployments to Healthy, blue-green switch latency, operator RSS.

Why it exists: the operator promises that a preview which has become available is switched to
active in under a second, that one operator process holds 1,000 ModelDeployments in under
250 MB, and that it makes at most 15 API requests per object through a creation and a rollout.
This script runs what the integration tests run — the real operator process (`turnout-operator
run`, wrapped by bench/counted_operator.py to count its reconciles) against the Kubernetes API
emulator (`tests.kube`, pods available at once) and a real MLflow tracking server — creates N
ModelDeployments in a burst, times each one to Healthy, bumps the model version of a sample of
them (one at a time, then all at once) and times the switch, samples the operator's RSS and CPU,
and counts the API requests the emulator served, by verb and kind. It is a script, not a test:
it prints figures and marks the targets PASS or MISS; it asserts nothing. bench/operator_real.py
measures the same on the real control plane.

Times are exact, not polled: a listener on the emulator's store stamps every write with the
moment it is made (`time.perf_counter()`, under the store's lock), and the watch history says
what each write was. The switch latency is the time from the write that shows the preview
Deployment with all its replicas available to the write that points the active Service at it.

What it must never do: send traffic anywhere but 127.0.0.1, loop without a bound in count and
time, or leave a process running (the operator and MLflow are started in their own sessions and
killed in a `finally`, on Ctrl-C and SIGTERM too; the emulator runs in this process).

    .venv/bin/python bench/operator.py [--objects N | --quick] [--json results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(ROOT))  # the emulator (tests.kube) lives in the repo, not in the venv

from serving import (  # noqa: E402  (bench/serving.py: process, CPU and RSS helpers)
    HOST,
    QUIET_CORES,
    RssSampler,
    Server,
    free_port,
    machine_busy_s,
    poll,
    tree_cpu_s,
    tree_rss_bytes,
    verdict,
    wait_quiet,
)
from tests.kube.emulator import KubeEmulator  # noqa: E402
from turnout_operator.crd import build_crd  # noqa: E402
from turnout_operator.domain.manifests import (  # noqa: E402
    COLOR_LABEL,
    VERSION_LABEL,
    deployment_name,
    service_name,
)
from turnout_operator.domain.spec import API_VERSION, GROUP, PLURAL  # noqa: E402

NAMESPACE = "default"
MODEL = "BenchRidge"
PROBE = "emulator-probe"  # the name api_round_trip reads
CONTROLLER_TICK_S = 5.0  # the emulator's deployment controller stand-in, see run()
CONTROLLER_BATCH_S = 0.05  # its pause after a write wakes it: one pass per burst of writes
COLLECT_INTERVAL_S = 0.1  # how often the history is read; the times themselves are exact
HEALTHY_BUDGET_S = (60.0, 2.0)  # create -> all Healthy: 60 s + 2 s per object
SETTLE_BUDGET_S, QUIET_WRITES_S = 120.0, 3.0  # after the creates: wait for no write for 3 s
ROLLOUT_BUDGET_S = 60.0  # one version bump -> Healthy on the new version

# The operator's performance targets.
SWITCH_MAX_S = 1.0
RSS_MAX_BYTES = 250 * 2**20  # with 1,000 ModelDeployments Healthy
CALLS_MAX_PER_OBJECT = 15  # API requests through a creation and a rollout


# --- exact times of the emulator's writes ----------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One write to an object this benchmark follows, reduced to what it needs."""

    rv: int
    at: float  # time.perf_counter() of the write
    generation: int = 0  # ModelDeployment
    phase: str = ""  # ModelDeployment
    active_version: str = ""  # ModelDeployment
    version: str = ""  # Deployment: the template's model version
    available: bool = False  # Deployment: every wanted replica updated and available
    color: str = ""  # Service: the color its selector points at


class Timeline:
    """Every write to ModelDeployments, Deployments and Services, with the moment it was made.

    A store listener stamps each new resourceVersion as it is written (listeners run inside the
    write, under the store's lock); `collect` reads the watch history since the last call and
    keeps a `Seen` per write. The history keeps 20,000 writes: collecting every 100 ms keeps up.
    """

    def __init__(self, kube: KubeEmulator) -> None:
        self.store = kube.store
        self.stamps: dict[int, float] = {}
        self.last_rv = self.store.resource_version
        self.mds: dict[str, list[Seen]] = {}
        self.deployments: dict[str, list[Seen]] = {}
        self.services: dict[str, list[Seen]] = {}
        self.store.subscribe(self._stamp)

    def _stamp(self) -> None:
        self.stamps.setdefault(self.store.resource_version, time.perf_counter())

    def close(self) -> None:
        self.store.unsubscribe(self._stamp)

    def at(self, rv: int) -> float:
        return self.stamps[rv]

    def collect(self) -> None:
        for change in self.store.changes_since(self.last_rv):
            self.last_rv = change.rv
            obj, at = change.obj, self.stamps.get(change.rv, time.perf_counter())
            if obj["metadata"].get("namespace") == NAMESPACE and change.type != "DELETED":
                self.keep(change.group, change.plural, obj, change.rv, at)

    def keep(self, group: str, plural: str, obj: dict[str, Any], rv: int, at: float) -> None:
        """Remember one write of a ModelDeployment, a Deployment or a Service made at `at`."""
        meta = obj["metadata"]
        name = meta["name"]
        if (group, plural) == (GROUP, PLURAL):
            status = obj.get("status") or {}
            seen = Seen(rv, at, generation=int(meta.get("generation", 0)),
                        phase=status.get("phase", ""),
                        active_version=status.get("activeVersion") or "")  # fmt: skip
            self.mds.setdefault(name, []).append(seen)
        elif (group, plural) == ("apps", "deployments"):
            labels = obj["spec"]["template"]["metadata"].get("labels", {})
            seen = Seen(rv, at, version=labels.get(VERSION_LABEL, ""),
                        available=fully_available(obj))  # fmt: skip
            self.deployments.setdefault(name, []).append(seen)
        elif (group, plural) == ("", "services"):
            color = (obj["spec"].get("selector") or {}).get(COLOR_LABEL, "")
            self.services.setdefault(name, []).append(Seen(rv, at, color=color))

    def first(
        self, seen: dict[str, list[Seen]], name: str, after_rv: int, test: Callable[[Seen], bool]
    ) -> Seen | None:
        return next((s for s in seen.get(name, []) if s.rv > after_rv and test(s)), None)


def fully_available(deployment: dict[str, Any]) -> bool:
    """What the operator waits for: the current generation observed, every replica updated and
    available (zero counters are omitted from a status)."""
    meta, spec, status = deployment["metadata"], deployment["spec"], deployment.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    return (
        replicas > 0
        and int(status.get("observedGeneration", 0)) >= int(meta.get("generation", 0))
        and int(status.get("updatedReplicas", 0)) >= replicas
        and int(status.get("availableReplicas", 0)) >= replicas
    )


def healthy_on(version: str) -> Callable[[Seen], bool]:
    return lambda s: s.phase == "Healthy" and s.active_version == version


# --- the cluster -----------------------------------------------------------------------------


def model_deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION, "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": MODEL, "version": "1"}, "replicas": 1,
            # pods of the emulator's `available` mode serve nothing: no smoke test
            "strategy": {"blueGreen": {"smokeTest": False, "scaleDownDelaySeconds": 0}},
        },
    }  # fmt: skip


def start_mlflow(tmp: Path) -> Server:
    port = free_port()
    argv = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", HOST,
            "--port", str(port), "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db",
            "--default-artifact-root", str(tmp / "artifacts"), "--workers", "1"]  # fmt: skip
    server = Server("mlflow server", argv, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                    port, tmp / "mlflow.log")  # fmt: skip
    server.start()
    up = poll(lambda: True if http_ok(f"http://{HOST}:{port}/health") else None, 120.0, 0.5)
    if up is None:
        server.stop()
        raise RuntimeError(f"MLflow not up in 120 s:\n{server.log_tail()}")
    return server


def register(tracking_uri: str) -> None:
    """Two versions of a ridge regression on diabetes, registered as MODEL 1 and 2."""
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("bench-operator")
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    for alpha in (1.0, 0.1):
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                Ridge(alpha=alpha).fit(X, y), name="model", registered_model_name=MODEL
            )


def start_operator(kube: KubeEmulator, tracking_uri: str, tmp: Path) -> Server:
    """`turnout-operator run` as tests/integration/cluster.py starts it (settings as shipped,
    but for the tracking URI and the metrics port); returns once kopf watches all three kinds."""
    port = free_port()
    env = {
        "KUBECONFIG": str(kube.write_kubeconfig(tmp / "kubeconfig")),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "TURNOUT_OPERATOR_TRACKING_URI": tracking_uri,
        "TURNOUT_OPERATOR_METRICS_PORT": str(port),
    }
    env["TURNOUT_BENCH_RECONCILES"] = str(reconciles_file(tmp))
    argv = [*COUNTED_OPERATOR, "run", "--namespace", NAMESPACE]
    operator = Server("turnout-operator", argv, env, port, tmp / "operator.log")
    operator.start()
    wanted = {"modeldeployments", "deployments", "pods"}

    def watching() -> bool | None:
        alive(operator)
        return wanted <= {c.resource for c in kube.requests if c.verb == "watch"} or None

    if poll(watching, 60.0, 0.1) is None:
        operator.stop()
        raise RuntimeError(f"the operator did not start watching in 60 s:\n{operator.log_tail()}")
    return operator


# `turnout-operator` with its reconciles counted; -P: bench/ is not put on its sys.path, where
# this script would stand for the standard library's `operator`
COUNTED_OPERATOR = [sys.executable, "-P", str(ROOT / "bench" / "counted_operator.py")]


def reconciles_file(tmp: Path) -> Path:
    """Where bench/counted_operator.py keeps the operator's count of reconciles."""
    return tmp / "reconciles"


def reconciles_done(tmp: Path) -> int:
    try:
        return int(reconciles_file(tmp).read_text())
    except FileNotFoundError:
        return 0


def alive(server: Server) -> None:
    assert server.proc is not None
    if server.proc.poll() is not None:
        raise RuntimeError(f"{server.name} exited {server.proc.returncode}:\n{server.log_tail()}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def api_round_trip(kube: KubeEmulator, times: int = 20) -> Spread:
    """Seconds per GET through the emulator's HTTP API (a Service that does not exist: routed
    and answered 404 like any read), for scale: what each of the operator's calls waits."""
    url = f"{kube.url}/api/v1/namespaces/{NAMESPACE}/services/{PROBE}"
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        with contextlib.suppress(OSError):  # the 404 is the answer
            urllib.request.urlopen(url, timeout=10).close()
        seconds.append(time.perf_counter() - started)
        time.sleep(0.05)
    return Spread.of(seconds)


def operator_metrics(port: int) -> dict[str, float]:
    """The turnout_operator_* samples of the operator's /metrics."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    found = re.findall(r"^(turnout_operator_\w+(?:\{[^}]*\})?) (\S+)$", text, re.MULTILINE)
    return {name: float(value) for name, value in found}


# --- CPU -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clock:
    """CPU seconds so far: the operator tree, MLflow, this process (the emulator and the
    benchmark), and the whole machine."""

    wall: float
    busy: float
    operator: float
    mlflow: float
    mine: float  # this process and its children, the operator and MLflow included

    @classmethod
    def now(cls, operator: Server, mlflow: Server) -> Clock:
        return cls(time.perf_counter(), machine_busy_s(), tree_cpu_s(operator.pid),
                   tree_cpu_s(mlflow.pid), tree_cpu_s(os.getpid()))  # fmt: skip


@dataclass
class Cpu:
    """CPU used over one phase, in cores (the operator also in seconds)."""

    seconds: float
    operator_s: float
    operator_cores: float
    mlflow_cores: float
    emulator_cores: float  # this process: the emulator's HTTP server and controller, the bench
    other_cores: float  # everything else on the machine

    @classmethod
    def between(cls, a: Clock, b: Clock) -> Cpu:
        wall = b.wall - a.wall
        operator, mlflow, mine = b.operator - a.operator, b.mlflow - a.mlflow, b.mine - a.mine
        return cls(wall, operator, operator / wall, mlflow / wall,
                   (mine - operator - mlflow) / wall,
                   max(0.0, (b.busy - a.busy - mine) / wall))  # fmt: skip


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Spread:
    n: int
    median: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if not values:
            return cls(0, float("nan"), float("nan"), float("nan"))
        return cls(len(values), statistics.median(values), percentile(values, 99), max(values))


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Switches:
    """One batch of version bumps: bump -> active switched, preview available -> switched."""

    label: str
    names: list[str]
    reaction: Spread  # preview available -> active Service switched (the target)
    bump_to_switch: Spread  # spec changed -> active Service switched
    missing: list[str] = field(default_factory=list)  # not Healthy on v2 within the budget
    early: list[str] = field(default_factory=list)  # switched before the preview was available


def wait_for(timeline: Timeline, operator: Server, done: Callable[[], bool], budget: float) -> bool:
    def check() -> bool | None:
        alive(operator)
        timeline.collect()
        return done() or None

    return poll(check, budget, COLLECT_INTERVAL_S) is not None


def create_all(kube: KubeEmulator, timeline: Timeline, operator: Server, names: list[str]) -> dict:
    """Create every ModelDeployment back to back; wait (bounded) until each is Healthy on v1."""
    created = {}
    for name in names:
        created[name] = int(kube.create(model_deployment(name))["metadata"]["resourceVersion"])
    burst = timeline.at(created[names[-1]]) - timeline.at(created[names[0]])
    print(f"  {len(names)} created in {burst * 1000:.0f} ms", flush=True)

    def healthy(name: str) -> Seen | None:
        return timeline.first(timeline.mds, name, created[name], healthy_on("1"))

    budget = HEALTHY_BUDGET_S[0] + HEALTHY_BUDGET_S[1] * len(names)
    wait_for(timeline, operator, lambda: all(healthy(n) for n in names), budget)
    seconds, missing = [], []
    for name in names:
        seen = healthy(name)
        if seen is None:
            missing.append(name)
        else:
            seconds.append(seen.at - timeline.at(created[name]))
    last = max((s.at for n in names if (s := healthy(n))), default=float("nan"))
    return {
        "per_object": Spread.of(seconds),
        "total_s": last - timeline.at(created[names[0]]),
        "burst_s": burst,
        "missing": missing,
    }


def settle(kube: KubeEmulator, operator: Server) -> float:
    """Seconds until the cluster has seen no write for QUIET_WRITES_S (bounded): the switches are
    measured on an operator that has finished with the creates. Resyncs only read, so they do
    not count."""
    started = time.perf_counter()
    last = (kube.store.resource_version, started)

    def quiet() -> bool | None:
        nonlocal last
        alive(operator)
        now, rv = time.perf_counter(), kube.store.resource_version
        if rv != last[0]:
            last = (rv, now)
        return now - last[1] >= QUIET_WRITES_S or None

    poll(quiet, SETTLE_BUDGET_S, COLLECT_INTERVAL_S)
    return time.perf_counter() - started - QUIET_WRITES_S


def bump(kube: KubeEmulator, name: str) -> int:
    patch = {"spec": {"model": {"version": "2"}}}
    return int(kube.patch(API_VERSION, "ModelDeployment", NAMESPACE, name, patch)
               ["metadata"]["resourceVersion"])  # fmt: skip


def switch_times(timeline: Timeline, name: str, bumped: int) -> tuple[float, float] | None:
    """(preview available -> switched, bump -> switched) of one rollout, from the history."""
    active = timeline.services.get(service_name(name, "active"), [])
    before = [s.color for s in active if s.rv < bumped]
    switched = timeline.first(timeline.services, service_name(name, "active"), bumped,
                              lambda s: bool(before) and s.color != before[-1])  # fmt: skip
    if switched is None:
        return None
    ready = timeline.first(timeline.deployments, deployment_name(name, switched.color),
                           bumped, lambda s: s.version == "2" and s.available)  # fmt: skip
    reaction = float("-inf") if ready is None else switched.at - ready.at
    return reaction, switched.at - timeline.at(bumped)


def rollouts(
    kube: KubeEmulator, timeline: Timeline, operator: Server, names: list[str], *, at_once: bool
) -> Switches:
    """Bump names to version 2, all at once or each after the previous one is Healthy on v2."""
    bumped: dict[str, int] = {}

    def healthy(name: str) -> bool:
        return timeline.first(timeline.mds, name, bumped[name], healthy_on("2")) is not None

    if at_once:
        for name in names:
            bumped[name] = bump(kube, name)
        budget = ROLLOUT_BUDGET_S + len(names)
        wait_for(timeline, operator, lambda: all(healthy(n) for n in names), budget)
    else:
        for name in names:
            bumped[name] = bump(kube, name)
            wait_for(timeline, operator, lambda name=name: healthy(name), ROLLOUT_BUDGET_S)
    reactions, totals, missing, early = [], [], [], []
    for name in names:
        times = switch_times(timeline, name, bumped[name]) if healthy(name) else None
        if times is None:
            missing.append(name)
            continue
        if times[0] < 0:
            early.append(name)
        reactions.append(times[0])
        totals.append(times[1])
    label = f"{len(names)} at once" if at_once else "one at a time"
    return Switches(label, names, Spread.of(reactions), Spread.of(totals), missing, early)


# --- report ----------------------------------------------------------------------------------


def row(what: str, spread: Spread, unit: str = "s") -> str:
    return (
        f"  {what:<44} n={spread.n:<4} median {spread.median:7.3f} {unit}  p99 "
        f"{spread.p99:7.3f} {unit}  max {spread.max:7.3f} {unit}"
    )


def cpu_row(what: str, cpu: Cpu) -> str:
    return (
        f"  {what:<26} {cpu.seconds:6.1f} s wall | operator {cpu.operator_s:6.1f} CPU-s "
        f"({cpu.operator_cores:.2f} cores) | mlflow {cpu.mlflow_cores:.2f} | emulator+bench "
        f"{cpu.emulator_cores:.2f} | others {cpu.other_cores:.2f} cores"
    )


def report(results: dict[str, Any]) -> list[dict[str, Any]]:
    n = results["objects"]
    healthy = results["create"]
    print(f"\ncreate -> Healthy ({n} ModelDeployments created in a burst of "
          f"{healthy['burst_s'] * 1000:.0f} ms; pods available at once)")  # fmt: skip
    print(row("per object (its create -> its Healthy)", healthy["per_object"]))
    print(f"  {'all (first create -> last Healthy)':<44} {healthy['total_s']:.2f} s; then "
          f"writes went on for {healthy['settle_s']:.1f} s")  # fmt: skip
    if healthy["missing"]:
        print(f"  NOT Healthy within the budget: {len(healthy['missing'])}: "
              f"{healthy['missing'][:5]}...")  # fmt: skip
    print("\nblue-green switch on a version bump (1 -> 2), all objects present and settled")
    for batch in results["switches"]:
        print(row(f"{batch.label}: preview available -> switched", batch.reaction))
        print(row(f"{batch.label}: spec bumped -> switched", batch.bump_to_switch))
        if batch.missing:
            print(f"  NOT switched within the budget: {batch.missing}")
        if batch.early:
            print(f"  VIOLATION: active switched before the preview was available: {batch.early}")
    ops = results["operator"]
    print(f"\noperator process: RSS {ops['rss_idle_bytes'] / 2**20:.0f} MB with no objects, "
          f"{ops['rss_settled_bytes'] / 2**20:.0f} MB with {n} Healthy, peak "
          f"{ops['rss_peak_bytes'] / 2**20:.0f} MB")  # fmt: skip
    print(f"  reconciles {ops['reconciles']} ({ops['reconciles'] / n:.1f} per object, counted "
          f"by bench/counted_operator.py), API requests {ops['api_requests']} "
          f"({ops['api_requests'] / n:.1f} per object): a creation (to settled) "
          f"{ops['api_requests_per_creation']:.1f}, a rollout (of those rolled out) "
          f"{ops['api_requests_per_rollout']:.1f}")  # fmt: skip
    print("  API requests by verb and kind, per object:")
    for kind, count in ops["api_requests_by_kind"].items():
        print(f"    {kind:<40} {count:7d} {count / n:7.2f}")
    print(f"  CPU {ops['cpu_ms_per_reconcile']:.0f} ms per reconcile (kopf's event handling "
          f"included); rollouts promoted {ops['promoted']:.0f}, reconcile errors "
          f"{ops['errors']:.0f}")  # fmt: skip
    print("emulator round trip (one GET over HTTP, for scale)")
    for when, spread in results["api_round_trip"].items():
        print(row(f"with {when}", spread))
    print("CPU by phase (cores = CPU seconds / wall seconds)")
    for phase, cpu in results["cpu"].items():
        print(cpu_row(phase, cpu))
    complete = [not batch.missing and not batch.early for batch in results["switches"]]
    targets = [  # (what, value, limit, unit, inclusive: <= rather than <)
        *((f"switch p99, {batch.label}", batch.reaction.p99 if whole else float("nan"),
           SWITCH_MAX_S, "s", False)
          for batch, whole in zip(results["switches"], complete, strict=True)),
        (f"operator peak RSS, {n} objects", ops["rss_peak_bytes"] / 2**20,
         RSS_MAX_BYTES / 2**20, "MB", False),
        ("API requests, a creation + a rollout",
         ops["api_requests_per_creation"] + ops["api_requests_per_rollout"],
         CALLS_MAX_PER_OBJECT, "", True),
    ]  # fmt: skip
    print("\ntargets")
    verdicts = verdicts_of(targets)
    machine_warning(results)
    return verdicts


def verdicts_of(targets: list[tuple[str, float, float, str, bool]]) -> list[dict[str, Any]]:
    """Print each target PASS or MISS (NaN: incomplete, a miss) and return them."""
    verdicts = []
    for name, value, limit, unit, inclusive in targets:
        ok = value <= limit if inclusive else value < limit
        sign = "<=" if inclusive else "<"
        print(f"  {name:<34} {value:8.3f} {unit:<2} target {sign} {limit:g} {unit}  {verdict(ok)}")
        verdicts.append({"target": name, "value": value, "limit": limit, "unit": unit, "pass": ok})
    return verdicts


def machine_warning(results: dict[str, Any]) -> None:
    busiest = max(cpu.other_cores for cpu in results["cpu"].values())
    if busiest > QUIET_CORES:
        print(f"WARNING: other processes used up to {busiest:.2f} cores during a phase (column "
              "'others'): latencies are inflated; rerun on a quiet machine")  # fmt: skip


# --- main ------------------------------------------------------------------------------------


@contextlib.contextmanager
def stopping(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


def run(objects: int, sample: int, tmp: Path) -> dict[str, Any]:
    import mlflow.version

    print(f"machine: {os.cpu_count()} cores, {platform.platform()}, Python "
          f"{platform.python_version()}, MLflow {mlflow.version.VERSION}", flush=True)  # fmt: skip
    names = [f"bench-{i:03d}" for i in range(objects)]
    picked = names[:: max(1, objects // (2 * sample))][: 2 * sample]  # spread over the names
    one_at_a_time, at_once = picked[0::2], picked[1::2]
    with contextlib.ExitStack() as stack:
        mlflow = stack.enter_context(stopping(start_mlflow(tmp)))
        register(mlflow_uri := f"http://{HOST}:{mlflow.port}")
        print(f"MLflow at {mlflow_uri}: {MODEL} versions 1 and 2 registered", flush=True)
        kube = stack.enter_context(KubeEmulator(log_dir=tmp / "pods"))
        kube.apply_crd(build_crd())
        kube.controller.behave_default("available")
        # The stand-in rescans every Deployment and its pods on each tick and on each write
        # (~0.45 s a pass at 200 Deployments here): at its 0.1 s default tick it never rests,
        # and the emulator's HTTP server waits for the GIL. `available` pods need no timer;
        # writes still wake it at once.
        kube.controller.tick = CONTROLLER_TICK_S
        kube.controller.batch = CONTROLLER_BATCH_S
        timeline = Timeline(kube)
        stack.callback(timeline.close)
        operator = stack.enter_context(stopping(start_operator(kube, mlflow_uri, tmp)))
        print(f"operator up (pid {operator.pid}); kube API emulator at {kube.url}", flush=True)
        wait_quiet()
        rss_idle = tree_rss_bytes(operator.pid)
        round_trips = {"no objects": api_round_trip(kube)}
        budget = (HEALTHY_BUDGET_S[0] + HEALTHY_BUDGET_S[1] * objects + SETTLE_BUDGET_S
                  + (2 * sample + 1) * ROLLOUT_BUDGET_S)  # fmt: skip
        with RssSampler(operator.pid, budget) as rss:
            clocks = [Clock.now(operator, mlflow)]
            print(f"\ncreating {objects} ModelDeployments", flush=True)
            create = create_all(kube, timeline, operator, names)
            clocks.append(Clock.now(operator, mlflow))
            settle_s = settle(kube, operator)
            print(
                f"  no write for {QUIET_WRITES_S:.0f} s after another {settle_s:.1f} s", flush=True
            )
            clocks.append(Clock.now(operator, mlflow))
            rss_settled = tree_rss_bytes(operator.pid)
            created_calls = sum(1 for c in kube.requests if c.name != PROBE)
            round_trips[f"{objects} Healthy"] = api_round_trip(kube)
            print(f"switching {len(one_at_a_time)} one at a time, then {len(at_once)} at once",
                  flush=True)  # fmt: skip
            switches = [rollouts(kube, timeline, operator, one_at_a_time, at_once=False)]
            clocks.append(Clock.now(operator, mlflow))
            switches.append(rollouts(kube, timeline, operator, at_once, at_once=True))
            clocks.append(Clock.now(operator, mlflow))
        metrics = operator_metrics(operator.port)
        time.sleep(0.6)  # the count is written every 0.5 s
        count = reconciles_done(tmp)
        calls = [c for c in kube.requests if c.name != PROBE]
    phases = (f"create -> {objects} Healthy", "settling", "switches one at a time",
              "switches at once")  # fmt: skip
    cpu = {phase: Cpu.between(*pair) for phase, pair in zip(phases, pairwise(clocks), strict=True)}
    reconciles = max(1, count)
    return {
        "objects": objects,
        "create": {**create, "settle_s": settle_s},
        "switches": switches,
        "cpu": cpu,
        "api_round_trip": round_trips,
        "operator": {
            "rss_idle_bytes": rss_idle,
            "rss_settled_bytes": rss_settled,
            "rss_peak_bytes": max(rss.peak, rss_settled),
            "reconciles": reconciles,
            "cpu_ms_per_reconcile": 1000 * sum(c.operator_s for c in cpu.values()) / reconciles,
            "api_requests": len(calls),
            # creation (to settled) per object, and the rest per object rolled out
            "api_requests_per_creation": created_calls / objects,
            "api_requests_per_rollout": (len(calls) - created_calls) / len(picked),
            "api_requests_by_kind": dict(
                Counter(
                    f"{c.verb} {c.resource}{'/' + c.subresource if c.subresource else ''}"
                    for c in calls
                ).most_common()
            ),
            "promoted": metrics.get('turnout_operator_rollouts_total{outcome="promoted"}', 0.0),
            "errors": metrics.get("turnout_operator_reconcile_errors_total", 0.0),
            "metrics": metrics,
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--objects", type=int, default=200, help="ModelDeployments (default 200).")
    p.add_argument("--quick", action="store_true", help="30 objects, 5 switches per batch.")
    p.add_argument("--json", type=Path, help="Also write the results to this JSON file.")
    args = p.parse_args(argv)
    objects, sample = (30, 5) if args.quick else (max(1, args.objects), 20)
    sample = min(sample, max(1, objects // 2))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the `finally`s on SIGTERM too
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="turnout-bench-operator-") as tmp:
        results = run(objects, sample, Path(tmp))
    verdicts = report(results)
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    if args.json:
        document = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
            **{
                k: v
                for k, v in results.items()
                if k not in ("create", "switches", "cpu", "api_round_trip")
            },
            "api_round_trip": {k: asdict(v) for k, v in results["api_round_trip"].items()},
            "create": {**results["create"], "per_object": asdict(results["create"]["per_object"])},
            "switches": [asdict(batch) for batch in results["switches"]],
            "cpu": {phase: asdict(cpu) for phase, cpu in results["cpu"].items()},
            "targets": verdicts,
        }
        args.json.write_text(json.dumps(document, indent=2, default=str))
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
