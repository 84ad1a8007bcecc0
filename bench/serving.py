"""Serving benchmark: `mlflow models serve` against `turnout-serve`, same model, same payloads.

Why it exists: turnout-serve promises to answer the MLflow scoring protocol several times faster
and leaner than `mlflow models serve` (the targets below). This script measures both servers side
by side in one run on this machine — throughput and latency under wrk, peak RSS of each process
tree, cold start, and the cost of turnout's drift+metrics — and prints the ratios against the
targets, marking each PASS or MISS. It is a script, not a test: it asserts nothing.

What it must never do: send traffic anywhere but 127.0.0.1, loop without a bound in count and
time, or leave a server running (every server is started in its own session and killed in a
`finally`, on Ctrl-C and SIGTERM too).

    .venv/bin/python bench/serving.py [--quick] [--json results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

HOST = "127.0.0.1"  # the only address this script ever sends traffic to
BENCH_DIR = Path(__file__).resolve().parent
LUA_SCRIPT = BENCH_DIR / "wrk_post.lua"
VENV_BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 120.0
POLL_INTERVAL_S = 0.02
RSS_INTERVAL_S = 0.1
QUIET_CORES = 0.3  # background CPU above this (in cores) disturbs the figures
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Performance targets (turnout relative to `mlflow models serve`).
RPS_1ROW_MIN = 8.0
P99_1ROW_MAX = 1 / 8
RPS_100ROW_MIN = 6.0
RSS_MAX = 0.60
COLD_START_MAX = 0.70
DRIFT_LOSS_MAX = 0.10

# Measured earlier on this 2-core machine, printed next to today's numbers for context.
EARLIER = (
    "earlier on this machine: mlflow models serve ~210-290 RPS, p99 ~80-90 ms (1 row, c=8); "
    "~170-220 RPS (100 rows); ~500 MB RSS; 4.5 s cold start. A minimal FastAPI+orjson+numpy "
    "app calling the estimator directly: ~2,400 RPS, p99 ~6 ms."
)

T = TypeVar("T")


# --- the model and payloads ------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """What both servers serve: the model URI, extra environment, and whether drift is on."""

    uri: str
    env: dict[str, str]
    drift_reference: bool
    note: str


def train(tmp: Path) -> tuple[Any, Served]:
    """The benchmark's model: 100-tree gradient boosting on diabetes, with a drift reference if the
    installed turnout can log one (then served from a throwaway tracking store), else a dir."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = GradientBoostingRegressor(n_estimators=100, random_state=0).fit(X, y)
    options: dict[str, Any] = {
        "signature": infer_signature(X, model.predict(X)),
        "input_example": X.head(5),
        "skops_trusted_types": ["sklearn.tree._tree.Tree"],
    }
    try:
        from turnout_serving.reference import log_reference
    except ImportError as exc:
        path = tmp / "model"
        mlflow.sklearn.save_model(model, str(path), **options)
        note = f"drift NOT measured: turnout_serving.reference is not importable ({exc})"
        return X, Served(str(path), {}, drift_reference=False, note=note)
    tracking_uri = f"sqlite:///{tmp}/mlflow.db"
    mlflow.set_tracking_uri(tracking_uri)
    artifacts = (tmp / "artifacts").as_uri()
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("bench", artifacts))
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(model, name="model", **options)
        log_reference(X)
    env = {"MLFLOW_TRACKING_URI": tracking_uri}
    note = "drift reference logged with turnout_serving.reference.log_reference"
    return X, Served(f"runs:/{run.info.run_id}/model", env, drift_reference=True, note=note)


def split_payload(X: Any, rows: int) -> bytes:
    """A `dataframe_split` body of the first `rows` rows (the same bytes for both servers)."""
    head = X.head(rows)
    document = {"dataframe_split": {"columns": list(head.columns), "data": head.values.tolist()}}
    return json.dumps(document).encode()


# --- processes -------------------------------------------------------------------------------


def poll(check: Callable[[], T | None], timeout_s: float, interval_s: float) -> T | None:
    """Call `check` every `interval_s` until it returns non-None or `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / max(interval_s, POLL_INTERVAL_S)) + 1):
        result = check()
        if result is not None or time.monotonic() > deadline:
            return result
        time.sleep(interval_s)
    return None


def bench_operator() -> Any:
    """bench/operator.py (its Timeline, Spread, targets, ...), for the scripts that build on it;
    imported by path: its name is the standard library's `operator`."""
    if "bench_operator" in sys.modules:
        return sys.modules["bench_operator"]
    spec = importlib.util.spec_from_file_location("bench_operator", BENCH_DIR / "operator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_operator"] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One server process (and its children), started in its own session."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    def start(self) -> None:
        env = {**os.environ, **self.env, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
        with self.log_path.open("ab") as log:
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(
                self.argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def stop(self) -> None:
        """SIGTERM to the session's process group, SIGKILL after 15 s."""
        if self.proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)  # the group this script created for the server
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait_s)
                # the group may outlive its leader (mlflow's uvicorn child): make sure it is gone
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue
            return

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def log_tail(self, lines: int = 25) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def post(self, body: bytes, timeout_s: float = 10.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout_s)
        try:
            conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> Any:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=5.0)
        try:
            conn.request("GET", path)
            return json.loads(conn.getresponse().read())
        except (OSError, ValueError):
            return None
        finally:
            conn.close()

    def wait_first_200(self, body: bytes) -> float:
        """Seconds from spawn to the first 200 on POST /invocations (polled every 20 ms)."""

        def answered() -> float | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                status, _ = self.post(body, timeout_s=5.0)
            except OSError:
                return None
            return time.perf_counter() - self.started if status == 200 else None

        seconds = poll(answered, READY_TIMEOUT_S, POLL_INTERVAL_S)
        if seconds is None:
            raise RuntimeError(
                f"{self.name} not ready in {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}"
            )
        return seconds


@contextlib.contextmanager
def running(server: Server, body: bytes) -> Iterator[float]:
    """A started server that answers 200; yields its cold start; always stopped afterwards."""
    try:
        server.start()
        yield server.wait_first_200(body)
    finally:
        server.stop()


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants, from the parent ids in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def tree_rss_bytes(root: int) -> int:
    """Summed VmRSS of `root` and all its descendants."""
    total = 0
    for pid in tree_pids(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total += int(match.group(1)) * 1024 if match else 0
    return total


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) used so far by `root` and all its descendants."""
    ticks = 0
    for pid in tree_pids(root):
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot, plus time stolen by the hypervisor."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass(frozen=True)
class CpuClock:
    """Where the machine's CPU time went: the server tree, wrk, this script, everything else."""

    wall: float
    busy: float
    server: float
    wrk: float  # finished children of this script: wrk (servers are reaped only at the end)
    bench: float

    @classmethod
    def now(cls, server_pid: int) -> CpuClock:
        kids, me = resource.getrusage(resource.RUSAGE_CHILDREN), os.times()
        return cls(
            time.perf_counter(),
            machine_busy_s(),
            tree_cpu_s(server_pid),
            kids.ru_utime + kids.ru_stime,
            me.user + me.system,
        )


def other_cores(before: CpuClock, after: CpuClock) -> float:
    """Cores used by processes that are neither the server, wrk nor this script."""
    own = (after.server - before.server) + (after.wrk - before.wrk) + (after.bench - before.bench)
    return max(0.0, (after.busy - before.busy - own) / (after.wall - before.wall))


def idle_other_cores(seconds: float = 1.0) -> float:
    """Cores busy over `seconds` outside this script (call it while no server is running)."""
    before = CpuClock.now(os.getpid())
    time.sleep(seconds)
    return other_cores(before, CpuClock.now(os.getpid()))


def wait_quiet(max_wait_s: float = 30.0) -> float:
    """Wait (bounded) until other processes use under QUIET_CORES; return what they used last."""
    other = poll(lambda: o if (o := idle_other_cores()) < QUIET_CORES else None, max_wait_s, 0)
    if other is None:
        other = idle_other_cores()
        print(
            f"  machine still busy after {max_wait_s:.0f} s: other processes use "
            f"{other:.2f} cores; measuring anyway",
            flush=True,
        )
    return other


class RssSampler:
    """Samples a process tree's RSS every 100 ms in a thread, keeping the maximum."""

    def __init__(self, pid: int, max_seconds: float) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._max_samples = int(max_seconds / RSS_INTERVAL_S)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(self._max_samples):
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            if self._stop.wait(RSS_INTERVAL_S):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)


# --- load ------------------------------------------------------------------------------------


@dataclass
class Load:
    """One wrk run, as wrk reported it."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx answers plus socket errors
    server_cores: float = 0.0  # CPU the server tree used, in cores
    server_cpu_ms: float = 0.0  # server CPU per request
    other_cores: float = 0.0  # CPU used by anything but the server, wrk and this script


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def parse_wrk(text: str) -> Load:
    def latency(pct: str) -> float:
        match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
        return float(match.group(1)) * _UNITS_MS[match.group(2)] if match else float("nan")

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    requests = re.search(r"^\s*(\d+) requests in", text, re.MULTILINE)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return Load(
        rps=float(rps.group(1)) if rps else 0.0,
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        requests=int(requests.group(1)) if requests else 0,
        errors=(int(non2xx.group(1)) if non2xx else 0)
        + (sum(int(n) for n in sockets.groups()) if sockets else 0),
    )


def wrk(port: int, body_file: Path, connections: int, seconds: float) -> Load:
    threads = min(2, connections)  # wrk and the server share the machine's 2 cores
    whole = max(1, round(seconds))  # wrk takes whole seconds
    argv = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{whole}s", "--timeout", "10s",
        "--latency", "-s", str(LUA_SCRIPT), f"http://{HOST}:{port}/invocations", "--",
        str(body_file),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()[-500:]
        raise RuntimeError(f"wrk failed ({done.returncode}): {output}")
    return parse_wrk(done.stdout)


def measured_wrk(server: Server, body_file: Path, connections: int, seconds: float) -> Load:
    """A wrk run with the CPU time of the server tree and of everything else accounted for."""
    before = CpuClock.now(server.pid)
    load = wrk(server.port, body_file, connections, seconds)
    after = CpuClock.now(server.pid)
    server_s = after.server - before.server
    load.server_cores = server_s / (after.wall - before.wall)
    load.server_cpu_ms = 1000 * server_s / max(load.requests, 1)
    load.other_cores = other_cores(before, after)
    return load


@dataclass
class Plan:
    seconds: float
    warmup_seconds: float
    concurrencies: tuple[int, ...]
    cold_starts: int  # timed cold starts per server (after an untimed round, when > 1)


@dataclass
class ServerResult:
    cold_start_s: list[float] = field(default_factory=list)
    peak_rss_bytes: int = 0
    loads: dict[str, Load] = field(default_factory=dict)  # key: "<rows>x<connections>"


def print_load(what: str, load: Load) -> None:
    print(
        f"  {what:<34} {load.rps:7.1f} RPS  p50 {load.p50_ms:7.2f} ms  p99 {load.p99_ms:7.2f} ms"
        f"  errors {load.errors}  server {load.server_cores:.2f} cores, "
        f"{load.server_cpu_ms:.2f} CPU-ms/req  others {load.other_cores:.2f} cores",
        flush=True,
    )


def cold_starts(
    make: dict[str, Callable[[], Server]], body: bytes, plan: Plan
) -> dict[str, list[float]]:
    """Servers started in turn, so each sees the same machine; an untimed round fills caches."""
    untimed = 1 if plan.cold_starts > 1 else 0
    timings: dict[str, list[float]] = {name: [] for name in make}
    for attempt in range(untimed + plan.cold_starts):
        for name, factory in make.items():
            with running(factory(), body) as seconds:
                if attempt >= untimed:
                    timings[name].append(seconds)
    for name, timed in timings.items():
        print(f"  {name:<8} {_fmt_list(timed)} s", flush=True)
    return timings


def measure_loads(
    servers: dict[str, Server], bodies: dict[int, Path], plan: Plan
) -> dict[str, ServerResult]:
    """Every payload x concurrency on each server back to back, so they see the same machine;
    the RSS of every server's process tree is sampled throughout."""
    results = {name: ServerResult() for name in servers}
    runs = len(bodies) * len(plan.concurrencies) * len(servers)
    budget = runs * (plan.seconds + plan.warmup_seconds + 40)
    samplers = {name: RssSampler(s.pid, budget) for name, s in servers.items()}
    with contextlib.ExitStack() as stack:
        for sampler in samplers.values():
            stack.enter_context(sampler)
        for rows, body_file in bodies.items():
            for connections in plan.concurrencies:
                for name, server in servers.items():
                    wrk(server.port, body_file, connections, plan.warmup_seconds)
                    load = measured_wrk(server, body_file, connections, plan.seconds)
                    results[name].loads[f"{rows}x{connections}"] = load
                    print_load(f"{server.name}, {rows} row(s), c={connections}", load)
    for name, sampler in samplers.items():
        results[name].peak_rss_bytes = sampler.peak
    return results


def drift_cost(on: Server, off: Server, body_file: Path, plan: Plan) -> dict[str, list[Load]]:
    """Drift+metrics on vs --no-drift at 1 row, c=8, in the order on-off-off-on (half-length
    runs), so a slow drift in the machine's background load falls evenly on both."""
    for server in (on, off):
        wrk(server.port, body_file, 8, plan.warmup_seconds)
    loads: dict[str, list[Load]] = {"on": [], "off": []}
    for key, server in (("on", on), ("off", off), ("off", off), ("on", on)):
        loads[key].append(measured_wrk(server, body_file, 8, plan.seconds / 2))
        print_load(f"{server.name}, 1 row, c=8", loads[key][-1])
    return loads


# --- report ----------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def mean(loads: list[Load], attribute: str) -> float:
    return statistics.fmean(getattr(load, attribute) for load in loads)


def print_table(ml: ServerResult, tu: ServerResult) -> None:
    print("\nload (wrk --latency; CPU = the server process tree's CPU time per request)")
    print(
        f"{'payload':<10}{'conns':>5} | {'mlflow RPS':>10} {'p50 ms':>7} {'p99 ms':>8} "
        f"{'CPU ms':>6} | {'turnout RPS':>11} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms':>6} | "
        f"{'RPS x':>6} {'p99 /':>6} {'CPU /':>6} | {'others':>6}"
    )
    for key, m in ml.loads.items():
        t = tu.loads[key]
        rows, conns = key.split("x")
        print(
            f"{rows + ' row(s)':<10}{conns:>5} | {m.rps:10.1f} {m.p50_ms:7.2f} {m.p99_ms:8.2f} "
            f"{m.server_cpu_ms:6.2f} | {t.rps:11.1f} {t.p50_ms:7.2f} {t.p99_ms:7.2f} "
            f"{t.server_cpu_ms:6.2f} | {t.rps / m.rps:6.2f} {m.p99_ms / t.p99_ms:6.2f} "
            f"{m.server_cpu_ms / t.server_cpu_ms:6.2f} | {max(m.other_cores, t.other_cores):6.2f}"
        )
    print(
        "RPS x = turnout RPS / mlflow RPS; p99 / and CPU / = mlflow's / turnout's; others = "
        "cores used by other processes during the pair of runs"
    )


def report(results: dict[str, ServerResult], drift: dict[str, list[Load]], plan: Plan) -> list:
    ml, tu = results["mlflow"], results["turnout"]
    print_table(ml, tu)
    ml_cold, tu_cold = statistics.median(ml.cold_start_s), statistics.median(tu.cold_start_s)
    print(
        f"\npeak RSS under load (process tree): mlflow {ml.peak_rss_bytes / 2**20:.0f} MB, "
        f"turnout {tu.peak_rss_bytes / 2**20:.0f} MB"
    )
    print(
        f"cold start to first 200 (median of {len(ml.cold_start_s)}): mlflow {ml_cold:.2f} s, "
        f"turnout {tu_cold:.2f} s"
    )
    c8_1, c8_100 = "1x8", "100x8"
    targets = [
        ("RPS, 1 row, c=8", tu.loads[c8_1].rps / ml.loads[c8_1].rps, ">=", RPS_1ROW_MIN),
        ("p99, 1 row, c=8", tu.loads[c8_1].p99_ms / ml.loads[c8_1].p99_ms, "<=", P99_1ROW_MAX),
        ("RPS, 100 rows, c=8", tu.loads[c8_100].rps / ml.loads[c8_100].rps, ">=", RPS_100ROW_MIN),
        ("peak RSS", tu.peak_rss_bytes / ml.peak_rss_bytes, "<=", RSS_MAX),
        ("cold start", tu_cold / ml_cold, "<=", COLD_START_MAX),
    ]
    if drift:
        on, off = mean(drift["on"], "rps"), mean(drift["off"], "rps")
        print(
            f"turnout 1 row, c=8: drift+metrics on {on:.1f} RPS "
            f"({mean(drift['on'], 'server_cpu_ms'):.2f} CPU-ms/req), --no-drift {off:.1f} RPS "
            f"({mean(drift['off'], 'server_cpu_ms'):.2f} CPU-ms/req)"
        )
        targets.append(("drift+metrics RPS loss", 1 - on / off, "<=", DRIFT_LOSS_MAX))
    print("\ntargets (turnout relative to mlflow models serve)")
    verdicts = []
    for name, ratio, op, limit in targets:
        ok = ratio >= limit if op == ">=" else ratio <= limit
        print(f"  {name:<24} {ratio:7.3f}  target {op} {limit:.3f}  {verdict(ok)}")
        verdicts.append({"target": name, "ratio": ratio, "op": op, "limit": limit, "pass": ok})
    if not drift:
        name = "drift+metrics RPS loss"
        print(f"  {name:<24}     n/a  target <= {DRIFT_LOSS_MAX:.3f}  NOT MEASURED")
    loads = [*ml.loads.values(), *tu.loads.values(), *drift.get("on", []), *drift.get("off", [])]
    busiest = max(load.other_cores for load in loads)
    if busiest > QUIET_CORES:
        print(
            f"WARNING: other processes used up to {busiest:.2f} cores during a run (column "
            "'others'): those figures are disturbed; rerun on a quiet machine"
        )
    if plan.seconds < 5:
        print("(--quick: 3 s runs at c=8 only; use the full run for figures to quote)")
    return verdicts


def _fmt_list(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


# --- main ------------------------------------------------------------------------------------


def factories(served: Served, tmp: Path) -> dict[str, Callable[..., Server]]:
    def mlflow() -> Server:
        port = free_port()
        argv = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", served.uri, "-p", str(port),
                "-h", HOST, "--env-manager", "local"]  # fmt: skip
        return Server("mlflow models serve", argv, served.env, port, tmp / "mlflow.log")

    def turnout(*extra: str) -> Server:
        port = free_port()
        argv = [str(VENV_BIN / "turnout-serve"), "-m", served.uri, "-p", str(port), "-h", HOST,
                "--cache-dir", str(tmp / "cache"), *extra]  # fmt: skip
        name = " ".join(["turnout-serve", *extra])
        return Server(name, argv, served.env, port, tmp / "turnout.log")

    return {"mlflow": mlflow, "turnout": turnout}


def predictions_agree(a: bytes, b: bytes) -> str:
    pa, pb = json.loads(a)["predictions"], json.loads(b)["predictions"]
    if len(pa) != len(pb):
        return f"NO: {len(pa)} vs {len(pb)} predictions"
    worst = max(abs(x - y) for x, y in zip(pa, pb, strict=True))
    return f"{'yes' if worst <= 1e-9 else 'NO'} (max |diff| {worst:.2e} over {len(pa)} rows)"


def run(plan: Plan, tmp: Path) -> dict[str, Any]:
    import mlflow.version

    cores = os.cpu_count()
    print(
        f"machine: {cores} cores, {platform.platform()}, Python {platform.python_version()}, "
        f"MLflow {mlflow.version.VERSION}\nwrk and the servers share the {cores} cores (nothing "
        "pinned); wrk runs 1 thread at c=1, 2 threads otherwise"
    )
    print(EARLIER)
    X, served = train(tmp)
    print(f"model: 100-tree GradientBoostingRegressor on diabetes, served from {served.uri}")
    print(served.note, flush=True)
    bodies = {}
    for rows in (1, 100):
        bodies[rows] = tmp / f"body-{rows}.json"
        bodies[rows].write_bytes(split_payload(X, rows))
    one_row = bodies[1].read_bytes()
    make = factories(served, tmp)

    print("\ncold starts (spawn to first 200 on POST /invocations)", flush=True)
    wait_quiet()
    timings = cold_starts(make, one_row, plan)

    with contextlib.ExitStack() as stack:
        servers = {name: factory() for name, factory in make.items()}
        no_drift = make["turnout"]("--no-drift") if served.drift_reference else None
        for server in [*servers.values(), no_drift]:
            if server is not None:
                stack.enter_context(running(server, one_row))
        answers = {name: s.post(bodies[100].read_bytes())[1] for name, s in servers.items()}
        print(f"predictions agree (100 rows): {predictions_agree(*answers.values())}")
        about = servers["turnout"].get_json("/info") or {}
        drift_status = str(about.get("drift"))
        print(f"turnout: fast path {about.get('fast_path')}; drift {drift_status}")
        print("\nload", flush=True)
        wait_quiet()
        results = measure_loads(servers, bodies, plan)
        drift: dict[str, list[Load]] = {}
        if no_drift is not None and drift_status.startswith("on"):
            drift = drift_cost(servers["turnout"], no_drift, bodies[1], plan)
        else:
            print(f"drift+metrics cost NOT measured: turnout reports drift {drift_status!r}")
    for name, timed in timings.items():
        results[name].cold_start_s = timed
    verdicts = report(results, drift, plan)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cores": cores, "platform": platform.platform()},
        "plan": asdict(plan),
        "model_uri": served.uri,
        "note": served.note,
        "drift_status": drift_status,
        "servers": {name: asdict(r) for name, r in results.items()},
        "drift": {key: [asdict(load) for load in loads] for key, loads in drift.items()},
        "targets": verdicts,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="3 s runs at concurrency 8 only.")
    p.add_argument("--json", type=Path, help="Also write the results to this JSON file.")
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (make tools)", file=sys.stderr)
        return 2
    plan = (
        Plan(seconds=3, warmup_seconds=1, concurrencies=(8,), cold_starts=1)
        if args.quick
        else Plan(seconds=8, warmup_seconds=2, concurrencies=(1, 8, 64), cold_starts=3)
    )
    return run_in_temporary_directory("turnout-bench-", lambda tmp: run(plan, tmp), args.json)


def run_in_temporary_directory(
    prefix: str, bench: Callable[[Path], dict[str, Any]], json_path: Path | None
) -> int:
    """Run `bench` in a temporary directory (its servers' `finally`s run on SIGTERM too), print
    the time it took, and write its results to `json_path` if given."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        results = bench(Path(tmp))
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    if json_path:
        json_path.write_text(json.dumps(results, indent=2))
        print(f"results written to {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
