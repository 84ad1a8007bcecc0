"""batch/v1 Jobs on the emulator: the API server's defaults and generated selector, and the Job
controller stand-in (tests/kube/jobs.py) running the container as a process to a Complete or
Failed condition, retrying up to backoffLimit, stopping at activeDeadlineSeconds; a Job goes
with its owner. tests/real/test_jobs.py holds the same Jobs to the real control plane's."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tests.conftest import wait_until
from tests.kube.emulator import KubeEmulator

Obj = dict[str, Any]


def job(name: str, code: str, *, backoff_limit: int = 0, policy: str = "Never", **spec: Any) -> Obj:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "train"}},
        "spec": {"backoffLimit": backoff_limit, **spec, "template": {
            "metadata": {"labels": {"app": "train"}},
            "spec": {"restartPolicy": policy, "containers": [
                {"name": "trainer", "image": "trainer:dev",
                 "command": [sys.executable, "-c", code]}]}}},
    }  # fmt: skip


def finished(kube: KubeEmulator, name: str, timeout: float = 30) -> Obj:
    def done() -> Obj | None:
        found = kube.get("batch/v1", "Job", "default", name) or {}
        conditions = found.get("status", {}).get("conditions") or []
        return found if any(c["type"] in ("Complete", "Failed") for c in conditions) else None

    return wait_until(done, timeout=timeout, what=f"Job {name} to finish")


def conditions(found: Obj) -> list[tuple[str, str, str, str]]:
    return [(c["type"], c["status"], c["reason"], c["message"])
            for c in found["status"]["conditions"]]  # fmt: skip


def pods_of(kube: KubeEmulator, name: str) -> list[Obj]:
    return kube.list("v1", "pods", "default", labels=f"job-name={name}")


def counters(found: Obj) -> Obj:
    return {k: v for k, v in found["status"].items() if k not in ("conditions", "startTime",
                                                                  "completionTime")}  # fmt: skip


def test_the_api_server_defaults_a_job_and_selects_its_pods_by_its_uid(
    kube: KubeEmulator, api: kubernetes.client.ApiClient
) -> None:
    body = job("train", "pass")
    del body["metadata"]["labels"]  # a Job without labels gets its template's
    made = api.sanitize_for_serialization(
        kubernetes.client.BatchV1Api(api).create_namespaced_job("default", body)
    )
    uid = made["metadata"]["uid"]
    spec = made["spec"]
    assert made["metadata"]["generation"] == 1
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert spec["template"]["metadata"]["labels"] == {
        "app": "train", "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
        "batch.kubernetes.io/job-name": "train", "job-name": "train"}  # fmt: skip
    # the template's map itself, in Go: the generated labels show on the Job too
    assert made["metadata"]["labels"] == spec["template"]["metadata"]["labels"]
    assert {k: v for k, v in spec.items() if k not in ("selector", "template")} == {
        "parallelism": 1, "completions": 1, "backoffLimit": 0, "manualSelector": False,
        "completionMode": "NonIndexed", "suspend": False,
        "podReplacementPolicy": "TerminatingOrFailed"}  # fmt: skip
    assert spec["template"]["spec"]["dnsPolicy"] == "ClusterFirst"


def test_a_job_must_not_restart_always(api: kubernetes.client.ApiClient) -> None:
    with pytest.raises(kubernetes.client.ApiException) as refused:
        kubernetes.client.BatchV1Api(api).create_namespaced_job(
            "default", job("x", "", policy="Always")
        )
    assert refused.value.status == 422
    assert json.loads(refused.value.body)["message"] == (
        'Job.batch "x" is invalid: spec.template.spec.restartPolicy: Required value: valid '
        'values: "OnFailure", "Never"'
    )


def test_a_job_that_exits_0_completes_with_its_env_and_secret(
    kube: KubeEmulator, tmp_path: Path
) -> None:
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "registry"},
                 "stringData": {"MLFLOW_TRACKING_TOKEN": "s3cret"}})  # fmt: skip
    out = tmp_path / "env.json"
    code = ("import json, os; names = ['TURNOUT_MODEL_NAME', 'MLFLOW_TRACKING_TOKEN', 'POD'];"
            f" open({str(out)!r}, 'w').write(json.dumps({{n: os.environ.get(n) for n in names}}))")  # fmt: skip
    body = job("train", code)
    body["spec"]["template"]["spec"]["containers"][0].update(
        env=[{"name": "TURNOUT_MODEL_NAME", "value": "iris"},
             {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        envFrom=[{"secretRef": {"name": "registry"}}])  # fmt: skip
    kube.create(body)
    done = finished(kube, "train")
    (pod,) = pods_of(kube, "train")
    assert json.loads(out.read_text()) == {
        "TURNOUT_MODEL_NAME": "iris", "MLFLOW_TRACKING_TOKEN": "s3cret", "POD": pod["metadata"]["name"]}  # fmt: skip
    assert conditions(done) == [
        ("SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
        ("Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
    ]  # fmt: skip
    assert counters(done) == {
        "succeeded": 1,
        "terminating": 0,
        "uncountedTerminatedPods": {},
        "ready": 0,
    }
    assert done["status"]["completionTime"] >= done["status"]["startTime"]
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Job", "train", done["metadata"]["uid"], True)  # fmt: skip
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (pod["status"]["phase"], terminated["exitCode"], terminated["reason"]) == (
        "Succeeded",
        0,
        "Completed",
    )


def test_a_job_that_exits_3_fails_at_its_backoff_limit(kube: KubeEmulator) -> None:
    kube.create(job("fail", "raise SystemExit(3)"))
    done = finished(kube, "fail")
    assert conditions(done) == [
        ("FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        ("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
    ]  # fmt: skip
    assert counters(done) == {
        "failed": 1,
        "terminating": 0,
        "uncountedTerminatedPods": {},
        "ready": 0,
    }
    assert "completionTime" not in done["status"]
    (pod,) = pods_of(kube, "fail")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (pod["status"]["phase"], terminated["exitCode"], terminated["reason"]) == (
        "Failed",
        3,
        "Error",
    )


def test_a_failed_pod_is_followed_by_a_new_one_up_to_the_backoff_limit(kube: KubeEmulator) -> None:
    kube.create(job("retry", "raise SystemExit(2)", backoff_limit=1))
    done = finished(kube, "retry")
    assert [c[:3] for c in conditions(done)][-1] == ("Failed", "True", "BackoffLimitExceeded")
    assert done["status"]["failed"] == 2
    pods = pods_of(kube, "retry")
    assert sorted(p["status"]["phase"] for p in pods) == ["Failed", "Failed"]


def test_on_failure_restarts_the_container_in_place(kube: KubeEmulator, tmp_path: Path) -> None:
    marker = tmp_path / "tried"
    code = (f"import pathlib, sys; p = pathlib.Path({str(marker)!r});"
            " sys.exit(0) if p.exists() else (p.touch(), sys.exit(1))")  # fmt: skip
    kube.create(job("again", code, backoff_limit=2, policy="OnFailure"))
    done = finished(kube, "again")
    assert [c[:3] for c in conditions(done)][-1] == ("Complete", "True", "CompletionsReached")
    (pod,) = pods_of(kube, "again")
    status = pod["status"]["containerStatuses"][0]
    assert (pod["status"]["phase"], status["restartCount"], status["state"]["terminated"]["exitCode"]) == (
        "Succeeded", 1, 0)  # fmt: skip


def test_a_job_past_its_active_deadline_fails_and_its_pod_is_deleted(
    kube: KubeEmulator, tmp_path: Path
) -> None:
    pid = tmp_path / "pid"
    code = f"import os, time; open({str(pid)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    kube.create(job("slow", code, activeDeadlineSeconds=1))
    done = finished(kube, "slow")
    assert conditions(done) == [
        ("FailureTarget", "True", "DeadlineExceeded", "Job was active longer than specified deadline"),
        ("Failed", "True", "DeadlineExceeded", "Job was active longer than specified deadline"),
    ]  # fmt: skip
    assert done["status"]["failed"] == 1
    assert pods_of(kube, "slow") == []
    running = int(wait_until(pid.read_text, what="the pid"))
    wait_until(lambda: not Path(f"/proc/{running}").exists() or
               "Z" in Path(f"/proc/{running}/stat").read_text().split()[2],
               timeout=10, what="the process to be stopped")  # fmt: skip


def test_a_job_goes_with_its_owner(kube: KubeEmulator) -> None:
    owner = kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}})
    body = job("owned", "import time; time.sleep(60)")
    body["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                            "uid": owner["metadata"]["uid"], "controller": True}]  # fmt: skip
    kube.create(body)
    wait_until(lambda: pods_of(kube, "owned"), what="the Job's pod")
    kube.delete("v1", "ConfigMap", "default", "owner")
    assert kube.get("batch/v1", "Job", "default", "owned") is None
    assert pods_of(kube, "owned") == []
