"""Shadow traffic benchmark: what mirroring costs the active `turnout-serve`.

Why it exists: mirroring a share of live answers to a preview must not slow the active color
down noticeably (target: at most 5 % RPS lost at 10 %). This script starts an active and a
preview `turnout-serve` on the same model (bench/serving.py's), drives the active with `wrk`
(1 row, 8 connections) with mirroring off, at 10 % and at 100 % (`PUT /admin/shadow`, no rate
cap), in the order off-10-100-100-10-off (half-length runs) so a drift in the machine's
background load falls evenly on each, and prints RPS, p50/p99, the active's CPU per request, the
preview's CPU and the copies sent or dropped, with ratios to "off". It asserts nothing.

By default the preview shares the machine's cores with the active and `wrk`: at 100 % it does
as much scoring as the active, so the active's RPS then also drops for want of CPU; the active's
CPU per request is the cost of mirroring itself. With `--pin` the active runs on core 0 and the
preview, `wrk` and this script on core 1 (`taskset`, `os.sched_setaffinity`), as on a cluster
where the preview's pods run beside the active's CPU budget, not inside it: the RPS lost is then
what mirroring costs the active (other processes of the machine may still use either core).

What it must never do: send traffic anywhere but 127.0.0.1, loop without a bound in count and
time, or leave a server running (each runs in its own session, killed in a `finally`).

    .venv/bin/python bench/shadow.py [--quick] [--pin] [--json results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import serving as common  # bench/serving.py: the model, servers, wrk and CPU accounting

HOST = common.HOST
ADMIN_TOKEN = "bench-admin"
RPS_LOSS_AT_10_MAX = 0.05
ORDER = ("off", "10", "100", "100", "10", "off")
ACTIVE_CORE, OTHERS_CORE = 0, 1  # --pin: the active alone on one core, the rest on the other


@dataclass
class Run:
    mode: str
    load: common.Load
    preview_cores: float
    counts: dict[str, int]  # what became of the copies during the run (deltas)


def admin(port: int, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
        conn.request(method, "/admin/shadow", payload, headers)
        response = conn.getresponse()
        answer = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"{method} /admin/shadow answered {response.status}: {answer}")
        return dict(answer)
    finally:
        conn.close()


def set_mode(active: common.Server, preview: common.Server, mode: str, ttl: float) -> None:
    if mode == "off":
        admin(active.port, "DELETE")
        return
    admin(active.port, "PUT", {
        "target": f"http://{HOST}:{preview.port}", "percent": float(mode),
        "maxRequestsPerSecond": 100_000, "ttlSeconds": ttl,
    })  # fmt: skip


def settle(active: common.Server, timeout_s: float = 30.0) -> dict[str, Any]:
    """The active's shadow state once its queue is empty (bounded wait)."""
    state = common.poll(
        lambda: s if (s := admin(active.port, "GET"))["queued"] == s["sending"] == 0 else None,
        timeout_s, 0.05,
    )  # fmt: skip
    return state if state is not None else admin(active.port, "GET")


def measure(
    active: common.Server, preview: common.Server, body_file: Path, seconds: float, mode: str
) -> Run:
    set_mode(active, preview, mode, ttl=seconds + 60)
    before = settle(active)["counts"]
    preview_cpu, started = common.tree_cpu_s(preview.pid), time.perf_counter()
    load = common.measured_wrk(active, body_file, 8, seconds)
    preview_cores = (common.tree_cpu_s(preview.pid) - preview_cpu) / (time.perf_counter() - started)
    after = settle(active)["counts"]
    counts = {key: after[key] - before[key] for key in after}
    run = Run(mode, load, preview_cores, counts)
    copies = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    common.print_load(f"shadow {mode:>3}{'%' if mode != 'off' else ' '}", load)
    print(f"    preview {preview_cores:.2f} cores; copies: {copies or 'none'}", flush=True)
    return run


def pin(server: common.Server, core: int) -> None:
    """Start `server` bound to one core (`taskset` execs it: same pid; children inherit it)."""
    server.argv = ["taskset", "--cpu-list", str(core), *server.argv]


def report(runs: list[Run], quick: bool, layout: str) -> dict[str, Any]:
    by_mode: dict[str, list[Run]] = {}
    for run in runs:
        by_mode.setdefault(run.mode, []).append(run)

    def mean(mode: str, attribute: str) -> float:
        return statistics.fmean(getattr(r.load, attribute) for r in by_mode[mode])

    off_rps, off_p99, off_cpu = (
        mean("off", "rps"),
        mean("off", "p99_ms"),
        mean("off", "server_cpu_ms"),
    )
    print(f"\nmirroring on the active (1 row, c=8; means of the runs per mode; {layout})")
    print(f"{'shadow':<7} {'RPS':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms':>7} | "
          f"{'RPS /off':>8} {'p99 /off':>8} {'CPU /off':>8} | {'preview':>7} | copies")  # fmt: skip
    summary: dict[str, Any] = {}
    for mode in ("off", "10", "100"):
        rps, p99, cpu = mean(mode, "rps"), mean(mode, "p99_ms"), mean(mode, "server_cpu_ms")
        preview = statistics.fmean(r.preview_cores for r in by_mode[mode])
        counts: dict[str, int] = {}
        for run in by_mode[mode]:
            for key, value in run.counts.items():
                counts[key] = counts.get(key, 0) + value
        sent = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "none"
        label = "off" if mode == "off" else f"{mode} %"
        print(f"{label:<7} {rps:8.1f} {mean(mode, 'p50_ms'):7.2f} {p99:7.2f} {cpu:7.3f} | "
              f"{rps / off_rps:8.3f} {p99 / off_p99:8.3f} {cpu / off_cpu:8.3f} | "
              f"{preview:5.2f} c | {sent}")  # fmt: skip
        summary[mode] = {"rps": rps, "p99_ms": p99, "cpu_ms": cpu, "preview_cores": preview,
                         "counts": counts, "rps_ratio": rps / off_rps}  # fmt: skip
    print("CPU ms = the active's CPU time per request; preview = cores the preview used")
    loss = 1 - summary["10"]["rps"] / off_rps
    ok = loss <= RPS_LOSS_AT_10_MAX
    print(f"\ntarget: RPS lost at 10 % {loss:.3f} <= {RPS_LOSS_AT_10_MAX:.3f}  "
          f"{'PASS' if ok else 'MISS'}")  # fmt: skip
    busiest = max(r.load.other_cores - r.preview_cores for r in runs)
    if busiest > common.QUIET_CORES:
        print(f"WARNING: other processes than the servers and wrk used up to {busiest:.2f} "
              "cores in a run: the figures are disturbed; rerun on a quiet machine")  # fmt: skip
    if quick:
        print("(--quick: 2 s runs; use the full run for figures to quote)")
    summary["target"] = {"rps_loss_at_10": loss, "limit": RPS_LOSS_AT_10_MAX, "pass": ok}
    return summary


def run(seconds: float, warmup_seconds: float, tmp: Path, pinned: bool) -> dict[str, Any]:
    import mlflow.version

    print(f"machine: {os.cpu_count()} cores, {platform.platform()}, Python "
          f"{platform.python_version()}, MLflow {mlflow.version.VERSION}")  # fmt: skip
    X, served = common.train(tmp)
    print(f"model: 100-tree GradientBoostingRegressor on diabetes ({served.note})", flush=True)
    body_file = tmp / "body-1.json"
    body_file.write_bytes(common.split_payload(X, 1))
    one_row = body_file.read_bytes()
    make = common.factories(served, tmp)["turnout"]
    active, preview = make("--color", "blue"), make("--color", "green")
    active.env = {**active.env, "TURNOUT_ADMIN_TOKEN": ADMIN_TOKEN}
    active.name, preview.name = "active", "preview"
    preview.log_path, active.log_path = tmp / "preview.log", tmp / "active.log"
    layout = "active, preview and wrk share every core"
    if pinned:
        pin(active, ACTIVE_CORE)
        pin(preview, OTHERS_CORE)
        os.sched_setaffinity(0, {OTHERS_CORE})  # this script, and so wrk, its child
        layout = f"active on core {ACTIVE_CORE}; preview, wrk and this script on core {OTHERS_CORE}"
    print(f"layout: {layout}", flush=True)
    with contextlib.ExitStack() as stack:
        for server in (active, preview):
            stack.enter_context(common.running(server, one_row))
        common.wait_quiet()
        for mode in ("off", "100"):
            set_mode(active, preview, mode, ttl=60)
            common.wrk(active.port, body_file, 8, warmup_seconds)
        runs = [measure(active, preview, body_file, seconds, mode) for mode in ORDER]
        admin(active.port, "DELETE")
    summary = report(runs, quick=seconds < 3, layout=layout)
    return {
        "layout": "pinned" if pinned else "shared",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
        "seconds": seconds,
        "runs": [asdict(r) for r in runs],
        "summary": summary,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="2 s runs (instead of 5 s).")
    p.add_argument("--json", type=Path, help="Also write the results to this JSON file.")
    p.add_argument("--pin", action="store_true",
                   help=f"The active alone on core {ACTIVE_CORE}; the preview, wrk and this "
                   f"script on core {OTHERS_CORE} (default: all share every core).")  # fmt: skip
    args = p.parse_args(argv)
    if args.pin and {ACTIVE_CORE, OTHERS_CORE} - os.sched_getaffinity(0):
        print(f"--pin needs cores {ACTIVE_CORE} and {OTHERS_CORE} free to use", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("wrk is not installed (make tools)", file=sys.stderr)
        return 2
    seconds, warmup = (2.0, 1.0) if args.quick else (5.0, 2.0)
    return common.run_in_temporary_directory(
        "turnout-bench-shadow-", lambda tmp: run(seconds, warmup, tmp, pinned=args.pin), args.json
    )


if __name__ == "__main__":
    sys.exit(main())
