"""Operator benchmark on the real control plane: N ModelDeployments created, then all rolled out
at once; the switch latency, and the operator's API requests per object from the API server's
audit log.

Why it exists: bench/operator.py measures the operator against the in-process emulator, whose
one-threaded HTTP server is the bottleneck once many rollouts run at once, and which counts the
requests it serves itself. Here the API server is kube-apiserver (etcd, the controller manager
and the scheduler beside it), started with the same functions as tests/real's `cluster` fixture
(bench/analysis.py's `operator_on_real_cluster`): the node agent runs each pod as a process, the
operator runs out of cluster under the chart's Role, MLflow holds two versions of a model.

The pods run a stand-in for turnout-serve (bench/standin/turnout-serve, put first on the
container's PATH through `spec.template.env`): tests/real/echo.py, which answers every probe
with 200. A real turnout-serve loads the model in a few seconds of CPU and ~250 MB per pod; 40 of
them would measure the 2 cores' queue, not the operator. What is measured does not depend on
what the pods serve: the operator waits for the Deployment's status to show every replica
available (the kubelet's readiness probes), then points the active Service at the new color.
Smoke tests are off, as in bench/operator.py (the stand-in scores nothing).

Times come from watches this process holds on the API server (ModelDeployments, Deployments,
Services and Pods of the namespace): each event is stamped (`time.perf_counter()`) as it
arrives. The switch latency runs from the event of the Deployment status write that shows every
replica of the preview available to the event of the Service write that points the active
Service at it; both travel the same path (etcd, the watch cache, one HTTP stream each), so the
delay of delivery mostly cancels out. Resource versions are compared as numbers: one etcd hands
them out in order.

The API requests are the audit log's (tests/real/controlplane.py records every request of the
operator's ServiceAccount at the Metadata level): those made from the first create to the last
rollout settled, over the number of objects, by verb and resource.

What it must never do: send traffic anywhere but 127.0.0.1 and the pod network it makes, loop
without a bound (every wait has a deadline), or leave a process behind (all stop in a `finally`).

Needs root, iproute2, the built control plane (scripts/build-controlplane.sh) and helm for the
chart's Role (`make tools`).

    .venv/bin/python bench/operator_real.py [--objects N] [--json results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from analysis import operator_on_real_cluster  # bench/analysis.py; puts the repo on sys.path
from serving import RssSampler, bench_operator, poll, tree_cpu_s, tree_rss_bytes, wait_quiet
from tests.conftest import BIN
from tests.real.controlplane import ControlPlane
from tests.real.node.plan import SYSTEM_PATH
from tests.real.operator import USER
from turnout_operator.domain.spec import API_VERSION, GROUP, PLURAL

B = bench_operator()
STANDIN = Path(__file__).resolve().with_name("standin")
WATCHED = {  # (group, plural) -> the path of the namespace's collection
    (GROUP, PLURAL): "/apis/" + API_VERSION + "/namespaces/{ns}/" + PLURAL,
    ("apps", "deployments"): "/apis/apps/v1/namespaces/{ns}/deployments",
    ("", "services"): "/api/v1/namespaces/{ns}/services",
    ("", "pods"): "/api/v1/namespaces/{ns}/pods",
}
HEALTHY_BUDGET_S = 300.0  # all created -> all Healthy
ROLLOUT_BUDGET_S = 300.0  # all bumped -> all Healthy on version 2
SETTLE_BUDGET_S, QUIET_S = 120.0, 10.0  # then no watched write for 10 s (a preStop sleeps 5 s)
# An operator as shipped reconciles each object every 60 s; tests/real's fixture says 10 s.
OPERATOR_ENV = {"TURNOUT_OPERATOR_RESYNC_SECONDS": "60"}


class WatchedTimeline(B.Timeline):
    """bench/operator.py's Timeline fed by the API server's watch streams, stamped on arrival."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        self.stamps: dict[int, float] = {}
        self.mds: dict[str, list[Any]] = {}
        self.deployments: dict[str, list[Any]] = {}
        self.services: dict[str, list[Any]] = {}
        self.last_event = time.perf_counter()
        self.events = 0
        self._clients: list[httpx.Client] = []
        for (group, plural), path in WATCHED.items():
            http = plane.http()
            self._clients.append(http)
            url = path.format(ns=namespace)
            listed = http.get(url).raise_for_status().json()["metadata"]["resourceVersion"]
            threading.Thread(target=self._watch, args=(http, url, listed, group, plural),
                             daemon=True, name=f"watch {plural}").start()  # fmt: skip

    def _watch(self, http: httpx.Client, url: str, rv: str, group: str, plural: str) -> None:
        params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "3600"}
        with contextlib.suppress(httpx.HTTPError, RuntimeError):  # closed at the end of the run
            timeout = httpx.Timeout(10.0, read=None)
            with http.stream("GET", url, params=params, timeout=timeout) as answer:
                for line in answer.iter_lines():
                    at = time.perf_counter()
                    if not line:
                        continue
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.last_event, self.events = at, self.events + 1
                        self.keep(group, plural, obj, int(obj["metadata"]["resourceVersion"]), at)

    def mark(self, rv: int) -> None:
        """A write of this process: stamped when its answer came."""
        self.stamps[rv] = time.perf_counter()

    def collect(self) -> None:
        """Nothing to do: the watch threads keep the history as it arrives."""

    def close(self) -> None:
        for http in self._clients:
            http.close()


def model_deployment(name: str, namespace: str) -> dict[str, Any]:
    """bench/operator.py's ModelDeployment, its pods running the stand-in."""
    manifest: dict[str, Any] = B.model_deployment(name)
    manifest["metadata"]["namespace"] = namespace
    path = f"{STANDIN}:{BIN}:{SYSTEM_PATH}"
    manifest["spec"]["template"] = {"env": [{"name": "PATH", "value": path}]}
    return manifest


def wait(check: Callable[[], bool], budget: float, operator_alive: Callable[[], bool]) -> bool:
    return poll(lambda: (operator_alive() and check()) or None, budget, 0.1) is not None


def settle(timeline: WatchedTimeline, operator_alive: Callable[[], bool]) -> float:
    """Seconds until no watched object was written for QUIET_S (bounded)."""
    began = time.perf_counter()

    def quiet() -> bool:
        return time.perf_counter() - timeline.last_event >= QUIET_S

    wait(quiet, SETTLE_BUDGET_S, operator_alive)
    return time.perf_counter() - began - QUIET_S


def calls(events: list[dict[str, Any]]) -> dict[str, int]:
    """Audit events counted by `verb resource[/subresource]`, most first."""

    def what(e: dict[str, Any]) -> str:
        ref = e.get("objectRef") or {}
        sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
        return f"{e['verb']} {ref.get('resource', e.get('requestURI', '?'))}{sub}"

    return dict(Counter(what(e) for e in events).most_common())


def run(objects: int, tmp: Path) -> dict[str, Any]:
    names = [f"bench-{i:03d}" for i in range(objects)]
    env = {**OPERATOR_ENV, "TURNOUT_BENCH_RECONCILES": str(B.reconciles_file(tmp))}
    with operator_on_real_cluster(tmp, "benchscale", env, B.COUNTED_OPERATOR) as cluster:
        kube, namespace, process = cluster.kube, cluster.namespace, cluster.operator
        plane, pid = kube.plane, process.popen.pid
        B.register(cluster.registry.uri)
        print(f"MLflow: {B.MODEL} versions 1 and 2 registered; operator pid {pid}", flush=True)
        timeline = WatchedTimeline(plane, namespace)
        try:
            wait_quiet()
            rss_idle = tree_rss_bytes(pid)
            with RssSampler(pid, HEALTHY_BUDGET_S + ROLLOUT_BUDGET_S + 2 * SETTLE_BUDGET_S) as rss:
                before = len(plane.audit(USER))
                reconciles_before = B.reconciles_done(tmp)
                cpu = [tree_cpu_s(pid)]
                created = {}
                for name in names:
                    obj = kube.create(model_deployment(name, namespace))
                    created[name] = int(obj["metadata"]["resourceVersion"])
                    timeline.mark(created[name])
                print(f"{objects} ModelDeployments created", flush=True)

                def healthy(name: str, rv: int, version: str) -> Any:
                    return timeline.first(timeline.mds, name, rv, B.healthy_on(version))

                wait(lambda: all(healthy(n, created[n], "1") for n in names), HEALTHY_BUDGET_S,
                     process.alive)  # fmt: skip
                to_healthy = [s.at - timeline.at(created[n])
                              for n in names if (s := healthy(n, created[n], "1"))]  # fmt: skip
                settled = settle(timeline, process.alive)
                print(f"  {len(to_healthy)} Healthy; settled after {settled:.1f} s", flush=True)
                created_calls = plane.audit(USER)[before:]
                cpu.append(tree_cpu_s(pid))
                rss_settled = tree_rss_bytes(pid)
                bumped = {}
                for name in names:
                    patch = {"spec": {"model": {"version": "2"}}}
                    obj = kube.patch(API_VERSION, "ModelDeployment", namespace, name, patch)
                    bumped[name] = int(obj["metadata"]["resourceVersion"])
                    timeline.mark(bumped[name])
                print(f"{objects} bumped to version 2 at once", flush=True)
                wait(lambda: all(healthy(n, bumped[n], "2") for n in names), ROLLOUT_BUDGET_S,
                     process.alive)  # fmt: skip
                print(f"  settled after {settle(timeline, process.alive):.1f} s", flush=True)
                all_calls = plane.audit(USER)[before:]
                cpu.append(tree_cpu_s(pid))
                time.sleep(0.6)  # the count is written every 0.5 s
                reconciles = B.reconciles_done(tmp) - reconciles_before
            switches = [B.switch_times(timeline, n, bumped[n]) for n in names]
        finally:
            timeline.close()
        events = timeline.events
    done = [s for s in switches if s is not None]
    return {
        "objects": objects,
        "to_healthy": B.Spread.of(to_healthy),
        "switch": B.Spread.of([s[0] for s in done]),
        "bump_to_switch": B.Spread.of([s[1] for s in done]),
        "missing": [n for n, s in zip(names, switches, strict=True) if s is None],
        "early": [n for n, s in zip(names, switches, strict=True) if s and s[0] < 0],
        "calls_create": calls(created_calls),
        "calls": calls(all_calls),
        "requests_create": len(created_calls),
        "requests": len(all_calls),
        "watch_events": events,
        "reconciles": reconciles,
        "rss_idle_bytes": rss_idle,
        "rss_settled_bytes": rss_settled,
        "rss_peak_bytes": max(rss.peak, rss_settled),
        "operator_cpu_s": {"create": cpu[1] - cpu[0], "rollout": cpu[2] - cpu[1]},
    }


def report(r: dict[str, Any]) -> list[dict[str, Any]]:
    n = r["objects"]
    print(f"\n{n} ModelDeployments on the real control plane (pods: the stand-in)")
    print(B.row("create -> Healthy, per object", r["to_healthy"]))
    print(B.row(f"{n} at once: preview available -> switched", r["switch"]))
    print(B.row(f"{n} at once: spec bumped -> switched", r["bump_to_switch"]))
    if r["missing"]:
        print(f"  NOT switched within the budget: {r['missing']}")
    if r["early"]:
        print(f"  VIOLATION: active switched before the preview was available: {r['early']}")
    per = r["requests"] / n
    creation = r["requests_create"] / n
    print(f"\noperator API requests (audit log): {r['requests']} = {per:.1f} per object "
          f"through a creation and a rollout ({creation:.1f} for the creation)")  # fmt: skip
    print(f"  reconciles {r['reconciles']} ({r['reconciles'] / n:.1f} per object)")
    for what, count in r["calls"].items():
        print(f"  {what:<40} {count:6d}  {count / n:6.2f} per object")
    print(f"operator RSS {r['rss_idle_bytes'] / 2**20:.0f} MB idle, "
          f"{r['rss_settled_bytes'] / 2**20:.0f} MB with {n} Healthy, peak "
          f"{r['rss_peak_bytes'] / 2**20:.0f} MB; CPU {r['operator_cpu_s']['create']:.1f} s "
          f"creating, {r['operator_cpu_s']['rollout']:.1f} s rolling out")  # fmt: skip
    complete = not r["missing"] and not r["early"]
    targets = [  # bench/operator.py's targets, as verdicts_of takes them
        (f"switch p99, {n} at once", r["switch"].p99 if complete else float("nan"),
         B.SWITCH_MAX_S, "s", False),
        ("API requests, a creation + a rollout", per, B.CALLS_MAX_PER_OBJECT, "", True),
    ]  # fmt: skip
    print("\ntargets")
    verdicts: list[dict[str, Any]] = B.verdicts_of(targets)
    return verdicts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--objects", type=int, default=20, help="ModelDeployments (default 20).")
    p.add_argument("--json", type=Path, help="Also write the results to this JSON file.")
    args = p.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, {platform.platform()}", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="turnout-bench-operator-real-") as tmp:
        results = run(max(1, args.objects), Path(tmp))
    verdicts = report(results)
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    if args.json:
        spreads = ("to_healthy", "switch", "bump_to_switch")
        document = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            **{k: asdict(v) if k in spreads else v for k, v in results.items()},
            "targets": verdicts,
        }
        args.json.write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
