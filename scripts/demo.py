"""`make demo`: the whole serving story on one machine, no Docker, no downloads.

Starts an MLflow tracking server (sqlite, local artifacts) on 127.0.0.1, trains and registers the
demo regressor (alias `champion`, with an input example and a drift reference), serves
`models:/Diabetes@champion` with turnout-serve, sends a prediction and its ground truth, prints
the answer and the metric lines that matter, and stops everything it started.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sklearn.datasets import load_diabetes

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORK = ROOT / ".demo"
SHOWN = re.compile(
    r"^(turnout_inference_requests_total\{.*code=\"200\".*endpoint=\"invocations\"|"
    r"turnout_inference_request_duration_seconds_count\{.*invocations|"
    r"turnout_inference_rows_total|turnout_model_info|turnout_model_load_seconds|"
    r"turnout_feature_drift_p_value\{.*feature=\"(bmi|s5)\"|turnout_drift_detected|"
    r"turnout_drift_window_rows|turnout_live_mae|turnout_live_rmse|"
    r"turnout_feedback_total\{.*matched)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ok(url: str, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{what} did not come up within {timeout:.0f}s; see the logs in {WORK}")


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def main() -> None:
    WORK.mkdir(exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    # The MLflow 3 tracking server otherwise spawns job-runner processes (~1.8 GB) the demo
    # never uses.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

    def launch(argv: list[str], log: str) -> None:
        processes.append(subprocess.Popen(argv, stdout=(WORK / log).open("wb"),
                                          stderr=subprocess.STDOUT, env=env, cwd=WORK))  # fmt: skip

    try:
        port = free_port()
        tracking = f"http://127.0.0.1:{port}"
        env["MLFLOW_TRACKING_URI"] = tracking
        step(f"MLflow tracking server on {tracking} (sqlite in {WORK})")
        db = WORK / f"mlflow-{port}.db"
        launch([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                "--backend-store-uri", f"sqlite:///{db}", "--default-artifact-root",
                str(WORK / f"artifacts-{port}"), "--workers", "1"], "mlflow.log")  # fmt: skip
        wait_ok(f"{tracking}/health", "the MLflow server")

        step("training and registering Diabetes (alias champion, with a drift reference)")
        registered = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "demo_models.py"), "--tracking-uri",
             tracking, "diabetes"], env=env, check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        print(json.dumps(json.loads(registered), indent=1))

        serve_port = free_port()
        url = f"http://127.0.0.1:{serve_port}"
        step(f"turnout-serve -m models:/Diabetes@champion -p {serve_port}")
        launch([str(BIN / "turnout-serve"), "-m", "models:/Diabetes@champion", "-p",
                str(serve_port), "--color", "blue", "--cache-dir", str(WORK / "cache")],
               "turnout-serve.log")  # fmt: skip
        wait_ok(f"{url}/v2/health/ready", "turnout-serve")
        print(json.dumps(httpx.get(f"{url}/info").json(), indent=1)[:900])

        X, y = load_diabetes(return_X_y=True, as_frame=True)
        rows = X.iloc[:3]
        payload = {"dataframe_split": {"columns": list(rows.columns),
                                       "data": rows.to_numpy().tolist()}}  # fmt: skip
        step("POST /invocations (dataframe_split, 3 rows, X-Request-Id: demo-1)")
        answer = httpx.post(f"{url}/invocations", json=payload, headers={"X-Request-Id": "demo-1"})
        print(answer.status_code, answer.text)

        step("POST /feedback with the true targets of those rows")
        labels = [float(v) for v in y.iloc[:3]]
        feedback = httpx.post(f"{url}/feedback", json={"request_id": "demo-1", "label": labels})
        print(feedback.status_code, feedback.text)

        step("a few more requests, then the metric lines that matter (GET /metrics)")
        for start in range(3, 303, 50):
            chunk = X.iloc[start : start + 50]
            httpx.post(f"{url}/invocations", json={"dataframe_split": {
                "columns": list(chunk.columns), "data": chunk.to_numpy().tolist()}})  # fmt: skip
        for line in httpx.get(f"{url}/metrics").text.splitlines():
            if SHOWN.match(line):
                print(line)
        print(f"\nDone. Logs are in {WORK}. Everything started here is being stopped.")
    finally:
        for proc in reversed(processes):
            proc.terminate()
        for proc in processes:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
