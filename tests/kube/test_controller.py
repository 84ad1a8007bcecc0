"""The deployment controller stand-in: pod behaviours, Deployment status as the real controller
writes it, rollouts and scaling, and `process` pods really running, reached through the Service
proxy, crash-looping, and killed."""

from __future__ import annotations

import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from kubernetes.client import ApiClient
from kubernetes.client import CoreV1Api as Core

from tests.conftest import wait_until
from tests.kube.conftest import deployment
from tests.kube.emulator import KubeEmulator
from tests.kube.processes import Probe, _probe

Obj = dict[str, Any]


def conditions(status: Obj) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c["reason"]) for c in status["conditions"]]


def counters(status: Obj) -> Obj:
    return {key: value for key, value in status.items() if key != "conditions"}


def settled(kube: KubeEmulator, name: str, generation: int, **expected: int) -> Obj:
    """The Deployment's status once it observed `generation` and shows the `expected` counters."""

    def probe() -> Obj | None:
        status = (kube.get("apps/v1", "Deployment", "default", name) or {}).get("status", {})
        counts = {k: status.get(k, 0) for k in expected}
        return (
            status
            if status.get("observedGeneration") == generation and counts == expected
            else None
        )

    return wait_until(probe, timeout=15, what=f"{name} at generation {generation} with {expected}")


def test_available_deployment_scales_and_rolls_out(kube: KubeEmulator) -> None:
    kube.create(deployment("web", replicas=3))
    status = settled(kube, "web", 1, availableReplicas=3)
    assert counters(status) == {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3,
                                "readyReplicas": 3, "availableReplicas": 3}  # fmt: skip
    assert conditions(status) == [("Available", "True", "MinimumReplicasAvailable"),
                                  ("Progressing", "True", "NewReplicaSetAvailable")]  # fmt: skip
    pods = kube.list("v1", "Pod", "default", labels="app=web")
    first_hash = pods[0]["metadata"]["labels"]["pod-template-hash"]
    assert [(p["metadata"]["labels"], p["metadata"]["ownerReferences"][0]["name"], p["status"]["phase"],
             p["status"]["containerStatuses"][0]["ready"]) for p in pods] == [
        ({"app": "web", "pod-template-hash": first_hash}, "web", "Running", True)] * 3  # fmt: skip
    kube.patch("apps/v1", "Deployment", "default", "web",
               {"spec": {"template": {"metadata": {"annotations": {"revision": "2"}}}}})  # fmt: skip
    settled(kube, "web", 2, availableReplicas=3)
    hashes = {
        p["metadata"]["labels"]["pod-template-hash"] for p in kube.list("v1", "Pod", "default")
    }
    assert len(hashes) == 1 and hashes != {first_hash}
    kube.patch("apps/v1", "Deployment", "default", "web", {"spec": {"replicas": 0}})
    status = settled(kube, "web", 3, replicas=0)
    assert counters(status) == {"observedGeneration": 3}  # zero counters are omitted, as in k8s
    assert kube.list("v1", "Pod") == []


def test_crashloop_and_image_pull_behaviours(kube: KubeEmulator) -> None:
    kube.controller.behave("default", "crashy", "crashloop", restart_interval=0.2)
    kube.controller.behave("default", "pully", "image_pull")
    kube.create(deployment("crashy"))
    kube.create(deployment("pully"))

    def container(app: str) -> Obj | None:
        pods = kube.list("v1", "Pod", "default", labels=f"app={app}")
        return (
            pods[0]["status"]["containerStatuses"][0]
            if pods and "status" in pods[0] and "containerStatuses" in pods[0]["status"]
            else None
        )

    crashing = wait_until(lambda: (c := container("crashy")) and c["restartCount"] >= 2 and c)
    assert (crashing["ready"], crashing["state"]["waiting"]["reason"]) == (
        False,
        "CrashLoopBackOff",
    )
    status = settled(kube, "crashy", 1, replicas=1, unavailableReplicas=1)
    assert "availableReplicas" not in status
    assert conditions(status)[0] == ("Available", "False", "MinimumReplicasUnavailable")
    pulling = wait_until(lambda: container("pully"))
    assert pulling["state"]["waiting"]["reason"] in {"ErrImagePull", "ImagePullBackOff"}
    assert kube.list("v1", "Pod", "default", labels="app=pully")[0]["status"]["phase"] == "Pending"


def test_slow_unready_after_and_never_ready_behaviours(kube: KubeEmulator) -> None:
    kube.controller.behave("default", "slow", "slow", delay=0.5)
    kube.controller.behave("default", "flaky", "unready_after", delay=0.5)
    kube.controller.behave("default", "stuck", "never_ready")
    kube.create(deployment("slow"))
    kube.create(deployment("flaky"))
    stuck = deployment("stuck")
    stuck["spec"]["progressDeadlineSeconds"] = 1
    kube.create(stuck)
    settled(kube, "slow", 1, readyReplicas=1, availableReplicas=1)
    unready = settled(kube, "flaky", 1, readyReplicas=0, unavailableReplicas=1)
    assert conditions(unready) == [("Available", "False", "MinimumReplicasUnavailable"),
                                   ("Progressing", "True", "NewReplicaSetAvailable")]  # fmt: skip

    def readiness(name: str) -> list[int]:  # the readyReplicas the Deployment went through
        seen = [s["status"].get("readyReplicas", 0) for s in kube.history("apps/v1", "Deployment", "default", name)
                if s.get("status", {}).get("replicas")]  # fmt: skip
        return [count for i, count in enumerate(seen) if i == 0 or seen[i - 1] != count]

    assert (readiness("slow"), readiness("flaky")) == ([0, 1], [1, 0])

    def deadline_exceeded() -> Obj | None:
        status = settled(kube, "stuck", 1, replicas=1)
        return status if conditions(status)[1][1] == "False" else None

    timed_out = wait_until(deadline_exceeded, what="the progress deadline")
    assert conditions(timed_out) == [("Available", "False", "MinimumReplicasUnavailable"),
                                     ("Progressing", "False", "ProgressDeadlineExceeded")]  # fmt: skip
    assert re.fullmatch(
        r'ReplicaSet "stuck-\w{10}" has timed out progressing\.',
        timed_out["conditions"][1]["message"],
    )


ECHO_SERVER = """
import http.server, os, sys
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.answer(200, f"{os.environ['GREETING']} {os.environ['COLOR']} {self.path}".encode())
    def do_POST(self):
        self.answer(201, self.rfile.read(int(self.headers["Content-Length"]))[::-1])
    def answer(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
host, port = sys.argv[1], int(sys.argv[2])
print(f"listening on {host}:{port}", flush=True)
http.server.HTTPServer((host, port), Echo).serve_forever()
"""


def test_process_behaviour_serves_through_the_service_proxy(
    api: ApiClient, kube: KubeEmulator
) -> None:
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
                 "stringData": {"greeting": "hello"}})  # fmt: skip
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"},
                 "data": {"COLOR": "green"}})  # fmt: skip
    kube.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": "default"},
                 "spec": {"selector": {"app": "echo"}, "ports": [{"name": "http", "port": 80, "targetPort": "web"}]}})  # fmt: skip
    proxy = f"{kube.url}/api/v1/namespaces/default/services/echo:http/proxy"
    with httpx.Client(trust_env=False, timeout=10) as http:
        assert http.get(f"{proxy}/greet").status_code == 503  # no pods yet
        kube.controller.behave("default", "echo", "process")
        kube.create(deployment(
            "echo", command=["python", "-c", ECHO_SERVER], args=["0.0.0.0", "8080"],
            ports=[{"name": "web", "containerPort": 8080}],
            env=[{"name": "GREETING", "valueFrom": {"secretKeyRef": {"name": "s", "key": "greeting"}}}],
            envFrom=[{"configMapRef": {"name": "cfg"}}],
            readinessProbe={"httpGet": {"path": "/healthz", "port": 8080}},
        ))  # fmt: skip
        settled(kube, "echo", 1, availableReplicas=1)
        endpoint = kube.controller.endpoint("default", "echo")
        assert endpoint is not None and endpoint != "http://127.0.0.1:8080"
        greeting = http.get(f"{proxy}/greet", params={"x": "1"})
        assert (greeting.status_code, greeting.text) == (200, "hello green /greet?x=1")
        posted = http.post(f"{proxy}/echo", content=b"abc")
        assert (posted.status_code, posted.text) == (201, "cba")
        through_client = Core(api).connect_get_namespaced_service_proxy_with_path(
            "echo:80", "default", "greet"
        )
        assert through_client == "hello green /greet"
        log = kube.controller.log_path("default", "echo").read_text()
        assert f"listening on 127.0.0.1:{endpoint.rsplit(':', 1)[1]}" in log
        kube.delete("apps/v1", "Deployment", "default", "echo")
        wait_until(lambda: refused(endpoint), what="the process killed")
        assert kube.controller.endpoint("default", "echo") is None
        assert http.get(f"{proxy}/greet").status_code == 503


def refused(url: str) -> bool:
    """Nothing listens on the port of `url` (any more)."""
    try:
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_stopping_the_emulator_kills_its_processes(tmp_path: Path) -> None:
    with KubeEmulator(log_dir=tmp_path) as kube:
        kube.controller.behave_default("process")
        kube.create(deployment("echo", command=["python", "-c", ECHO_SERVER], args=["0.0.0.0", "8080"],
                               ports=[{"containerPort": 8080}]))  # fmt: skip
        settled(kube, "echo", 1, availableReplicas=1)
        endpoint = kube.controller.endpoint("default", "echo")
        assert endpoint is not None and not refused(endpoint)
    assert refused(endpoint)


def test_a_process_that_exits_crash_loops(kube: KubeEmulator) -> None:
    kube.controller.behave("default", "dies", "process")
    kube.create(
        deployment(
            "dies", command=["python", "-c", "print('boom', flush=True); raise SystemExit(3)"]
        )
    )

    def crashed() -> Obj | None:
        pods = kube.list("v1", "Pod", "default", labels="app=dies")
        statuses = pods[0].get("status", {}).get("containerStatuses", []) if pods else []
        return statuses[0] if statuses and statuses[0]["restartCount"] >= 1 else None

    container = wait_until(crashed, timeout=15, what="a restart")
    assert (container["ready"], container["state"]["waiting"]["reason"], container["lastState"]["terminated"]["exitCode"]) == (
        False, "CrashLoopBackOff", 3)  # fmt: skip
    assert "boom" in kube.controller.log_path("default", "dies").read_text()


ECHO = Path(__file__).parents[1] / "real" / "echo.py"


def test_the_service_proxy_forwards_the_headers_the_real_api_server_forwards(
    kube: KubeEmulator,
) -> None:
    """The request of tests/real/test_proxy.py, answered by the same echo server: the same
    headers arrive (order aside). `Authorization` never does, whoever it was meant for: the real
    API server deletes it after authenticating the caller, so a client of a pod that wants a
    token must send it in a header of its own, and the emulator must not hide that."""
    kube.controller.behave("default", "echo", "process")
    kube.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": "default"},
                 "spec": {"selector": {"app": "echo"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})  # fmt: skip
    kube.create(deployment("echo", command=["python", str(ECHO)], args=["0.0.0.0", "8080"],
                           ports=[{"containerPort": 8080}]))  # fmt: skip
    settled(kube, "echo", 1, availableReplicas=1)
    path = "/api/v1/namespaces/default/services/echo:http/proxy/invocations"
    headers = {"X-Turnout-Probe": "checked", "X-Api-Key": "preview-key", "Accept": "application/json",
               "Authorization": "Bearer token-for-the-preview", "Connection": "keep-alive"}  # fmt: skip
    with httpx.Client(trust_env=False, timeout=10) as http:
        answer = http.post(f"{kube.url}{path}?a=1", headers=headers, content=b"{}")
    assert answer.status_code == 200, answer.text
    echoed = answer.json()
    assert (echoed["method"], echoed["path"], echoed["body"]) == ("POST", "/invocations?a=1", "{}")
    assert {name.lower(): value for name, value in echoed["headers"]} == {
        "host": kube.url.removeprefix("http://"),
        "user-agent": f"python-httpx/{httpx.__version__}",
        "content-length": "2",
        "accept": "application/json",
        "accept-encoding": "gzip, deflate",
        "x-api-key": "preview-key",
        "x-forwarded-for": "127.0.0.1",
        "x-forwarded-uri": path,
        "x-turnout-probe": "checked",
    }


class _SlowReady(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(1.2)  # a server starved of CPU on a busy machine
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_readiness_probe_waits_its_timeout_seconds() -> None:
    """As the kubelet: an answer within `timeoutSeconds` (1 s unless set) passes, a later one
    fails, so a slow but healthy server is not taken out of its Service."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowReady)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        probe = {
            "httpGet": {"path": "/ready", "port": 8080},
            "periodSeconds": 2,
            "failureThreshold": 3,
        }
        default = _probe({"readinessProbe": probe}, {8080: port}, {})
        patient = _probe({"readinessProbe": {**probe, "timeoutSeconds": 2}}, {8080: port}, {})
        assert default == Probe(port, "/ready", 1.0, 3, 1.0)
        assert patient == Probe(port, "/ready", 1.0, 3, 2.0)
        assert (default.check(), patient.check()) == (False, True)
    finally:
        server.shutdown()
        server.server_close()
