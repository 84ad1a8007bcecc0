"""A batch/v1 Job runs to completion on the real control plane: kube-controller-manager's Job
controller makes the pod, the node agent runs it as a process once (restartPolicy Never) or
restarts it in place (OnFailure), and reports how it ended; the Job controller turns that into the
conditions the operator reads (Complete, Failed with BackoffLimitExceeded or DeadlineExceeded).
The pod sees the env and envFrom Secret it was given; a Job owned by another object goes with it,
as the operator's retraining Jobs go with their ModelDeployment."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from kmock import KubernetesError
from kubernetes import client

from tests.conftest import wait_until
from tests.kube.emulator import KubeEmulator
from tests.real.conftest import RunningNode

pytestmark = pytest.mark.real

Obj = dict[str, Any]
LABELS = {"app.kubernetes.io/managed-by": "turnout", "app.kubernetes.io/component": "retraining"}


def job(name: str, code: str, *, backoff_limit: int = 0, policy: str = "Never",
        deadline: int | None = None, **container: Any) -> Obj:  # fmt: skip
    """A Job shaped as the operator's retraining Job: labels on it and its template, one
    container running `python -c code`, restartPolicy Never, a backoffLimit, a TTL."""
    spec: Obj = {
        "backoffLimit": backoff_limit,
        "ttlSecondsAfterFinished": 3600,
        "template": {
            "metadata": {"labels": LABELS},
            "spec": {"restartPolicy": policy, "terminationGracePeriodSeconds": 2, "containers": [
                {"name": "trainer", "image": "trainer:dev", "command": [sys.executable, "-c", code],
                 **container}]},
        },
    }  # fmt: skip
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": LABELS}, "spec": spec}  # fmt: skip


def read(api: client.ApiClient, path: str) -> Obj:
    """An object as the API server sends it (JSON, not the client's models)."""
    answer = api.call_api(path, "GET", auth_settings=["BearerToken"], _preload_content=False,
                          _return_http_data_only=True)  # fmt: skip
    return json.loads(answer.data)  # type: ignore[no-any-return]


def finished(api: client.ApiClient, namespace: str, name: str, timeout: float = 90) -> Obj:
    """The Job once it has a Complete or Failed condition."""

    def done() -> Obj | None:
        found = read(api, f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
        conditions = found.get("status", {}).get("conditions") or []
        final = any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
                    for c in conditions)  # fmt: skip
        return found if final else None

    return wait_until(done, timeout=timeout, interval=0.2, what=f"Job {name} to finish")


def conditions(found: Obj) -> list[tuple[str, str, str, str]]:
    return [(c["type"], c["status"], c.get("reason", ""), c.get("message", ""))
            for c in found["status"]["conditions"]]  # fmt: skip


def job_pods(core: client.CoreV1Api, namespace: str, name: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items  # type: ignore[no-any-return]


def test_a_job_that_exits_0_completes_and_its_pod_sees_its_env_and_secret(
    api: client.ApiClient, core: client.CoreV1Api, namespace: str, node_agent: RunningNode,
    tmp_path: Path,
) -> None:  # fmt: skip
    batch = client.BatchV1Api(api)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "registry"},
                                              "stringData": {"MLFLOW_TRACKING_TOKEN": "s3cret"}})  # fmt: skip
    out = "/out/env.json"  # a hostPath volume: tmp_path
    code = ("import json, os, sys; names = ['TURNOUT_MODEL_NAME', 'MLFLOW_TRACKING_TOKEN', 'POD'];"
            f" open({out!r}, 'w').write(json.dumps({{n: os.environ.get(n) for n in names}}))")  # fmt: skip
    env = [{"name": "TURNOUT_MODEL_NAME", "value": "iris"},
           {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]  # fmt: skip
    body = job(
        "train",
        code,
        env=env,
        envFrom=[{"secretRef": {"name": "registry"}}],
        volumeMounts=[{"name": "out", "mountPath": "/out"}],
    )
    body["spec"]["template"]["spec"]["volumes"] = [
        {"name": "out", "hostPath": {"path": str(tmp_path)}}
    ]
    batch.create_namespaced_job(namespace, body)
    done = finished(api, namespace, "train")
    (pod,) = job_pods(core, namespace, "train")
    assert json.loads((tmp_path / "env.json").read_text()) == {
        "TURNOUT_MODEL_NAME": "iris", "MLFLOW_TRACKING_TOKEN": "s3cret", "POD": pod.metadata.name}  # fmt: skip
    assert done["status"]["succeeded"] == 1
    assert conditions(done) == [
        ("SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
        ("Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
    ]  # fmt: skip
    terminated = pod.status.container_statuses[0].state.terminated
    assert (pod.status.phase, terminated.exit_code, terminated.reason) == (
        "Succeeded",
        0,
        "Completed",
    )


def test_a_job_that_exits_3_fails_at_its_backoff_limit(
    api: client.ApiClient, core: client.CoreV1Api, namespace: str, node_agent: RunningNode
) -> None:
    client.BatchV1Api(api).create_namespaced_job(namespace, job("fail", "raise SystemExit(3)"))
    done = finished(api, namespace, "fail")
    (pod,) = job_pods(core, namespace, "fail")
    terminated = pod.status.container_statuses[0].state.terminated
    assert (pod.status.phase, terminated.exit_code, terminated.reason) == ("Failed", 3, "Error")
    assert conditions(done) == [
        ("FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        ("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
    ]  # fmt: skip
    assert (done["status"]["failed"], pod.status.container_statuses[0].restart_count) == (1, 0)


def test_on_failure_restarts_the_container_in_place(
    api: client.ApiClient, core: client.CoreV1Api, namespace: str, node_agent: RunningNode,
    tmp_path: Path,
) -> None:  # fmt: skip
    code = ("import pathlib, sys; p = pathlib.Path('/out/tried');"
            " sys.exit(0) if p.exists() else (p.touch(), sys.exit(1))")  # fmt: skip
    body = job("again", code, backoff_limit=2, policy="OnFailure",
               volumeMounts=[{"name": "out", "mountPath": "/out"}])  # fmt: skip
    body["spec"]["template"]["spec"]["volumes"] = [
        {"name": "out", "hostPath": {"path": str(tmp_path)}}
    ]
    client.BatchV1Api(api).create_namespaced_job(namespace, body)
    done = finished(api, namespace, "again")
    assert conditions(done)[-1][:3] == ("Complete", "True", "CompletionsReached")
    (pod,) = job_pods(core, namespace, "again")
    status = pod.status.container_statuses[0]
    assert (pod.status.phase, status.restart_count, status.state.terminated.exit_code) == (
        "Succeeded", 1, 0)  # fmt: skip


def test_a_job_past_its_active_deadline_fails_and_its_pod_is_stopped(
    api: client.ApiClient, core: client.CoreV1Api, namespace: str, node_agent: RunningNode
) -> None:
    client.BatchV1Api(api).create_namespaced_job(
        namespace, job("slow", "import time; time.sleep(120)", deadline=3)
    )
    running = wait_until(lambda: [p for p in job_pods(core, namespace, "slow")
                                  if p.status.phase == "Running"], timeout=60, what="the pod to run")  # fmt: skip
    done = finished(api, namespace, "slow")
    assert conditions(done) == [
        ("FailureTarget", "True", "DeadlineExceeded", "Job was active longer than specified deadline"),
        ("Failed", "True", "DeadlineExceeded", "Job was active longer than specified deadline"),
    ]  # fmt: skip
    assert done["status"]["failed"] == 1
    # the Job controller deleted the pod; the node agent stopped its process and confirmed
    wait_until(lambda: not job_pods(core, namespace, "slow"), timeout=60, what="the pod to go")
    assert not node_agent.pod_dir(running[0]).exists()


def test_a_job_goes_with_its_owner(
    api: client.ApiClient, core: client.CoreV1Api, namespace: str, node_agent: RunningNode
) -> None:
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    body = job("owned", "import time; time.sleep(120)")
    body["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                            "uid": owner.metadata.uid, "controller": True}]  # fmt: skip
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(namespace, body)
    (pod,) = wait_until(lambda: [p for p in job_pods(core, namespace, "owned")
                                 if p.status.phase == "Running"], timeout=60, what="the pod to run")  # fmt: skip
    core.delete_namespaced_config_map("owner", namespace)
    wait_until(lambda: not batch.list_namespaced_job(namespace).items, timeout=60,
               what="the garbage collector to delete the Job")  # fmt: skip
    wait_until(lambda: not job_pods(core, namespace, "owned"), timeout=60,
               what="the garbage collector to delete its pod")  # fmt: skip
    assert not node_agent.pod_dir(pod).exists()


UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def normalized(value: Any, namespace: str) -> Any:
    """`value` with uids, times and the namespace replaced by placeholders, and what only a real
    server keeps (managedFields, resourceVersion) left out."""
    if isinstance(value, dict):
        return {k: normalized(v, namespace) for k, v in value.items()
                if k not in ("managedFields", "resourceVersion")}  # fmt: skip
    if isinstance(value, list):
        return [normalized(v, namespace) for v in value]
    if isinstance(value, str):
        return ("<uid>" if UID.match(value) else "<time>" if TIME.match(value)
                else "<namespace>" if value == namespace else value)  # fmt: skip
    return value


def test_the_emulator_defaults_and_finishes_jobs_as_the_real_one(
    api: client.ApiClient, namespace: str, node_agent: RunningNode, tmp_path: Path
) -> None:
    """The same Jobs on both sides: as created (defaults, generated selector and labels, a Job
    without labels of its own), as finished (status), and one the API server refuses."""
    bodies = {"done": job("done", "pass"), "fail": job("fail", "raise SystemExit(3)")}
    del bodies["done"]["metadata"]["labels"]
    refused = job("always", "pass", policy="Always")
    batch = client.BatchV1Api(api)
    real: dict[str, Any] = {}
    for name, body in bodies.items():
        made = api.call_api(f"/apis/batch/v1/namespaces/{namespace}/jobs", "POST", body=body,
                            auth_settings=["BearerToken"], _preload_content=False,
                            _return_http_data_only=True)  # fmt: skip
        made = json.loads(made.data)
        real[name] = (made, finished(api, namespace, name))
    with pytest.raises(client.ApiException) as answer:
        batch.create_namespaced_job(namespace, refused)
    real_refusal = (answer.value.status, json.loads(answer.value.body)["message"])
    with KubeEmulator(namespaces=(namespace,), log_dir=tmp_path / "emulator") as kube:
        emulated: dict[str, Any] = {}
        for name, body in bodies.items():
            made = kube.create({**body, "metadata": {**body["metadata"], "namespace": namespace}})
            emulated[name] = (made, wait_until(
                lambda name=name: _final(kube.get("batch/v1", "Job", namespace, name)),
                timeout=30, what=f"the emulated Job {name} to finish"))  # fmt: skip
        with pytest.raises(KubernetesError) as emulated_answer:
            kube.create({**refused, "metadata": {**refused["metadata"], "namespace": namespace}})
        emulated_refusal = (emulated_answer.value.status, emulated_answer.value.message)
    for name in bodies:
        for stage, (real_side, emulated_side) in zip(
            ("created", "finished"), zip(real[name], emulated[name], strict=True), strict=True
        ):
            assert normalized(emulated_side, namespace) == normalized(real_side, namespace), (
                name,
                stage,
            )
    assert emulated_refusal == real_refusal


def _final(found: Obj | None) -> Obj | None:
    conditions = (found or {}).get("status", {}).get("conditions") or []
    return found if any(c["type"] in ("Complete", "Failed") for c in conditions) else None
