"""The Helm chart installed for real: `helm install` against the real API server, the operator
running in a pod (the node agent runs its container's command, with the chart's ServiceAccount
token mounted where in-cluster clients look for it), and a ModelDeployment that becomes Healthy
and serves predictions. `helm uninstall` then removes the operator and its RBAC."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import require_tool, wait_until
from tests.integration.cluster import API, HEALTHY_CONDITIONS, ROW, conditions
from tests.manifests import CHART
from tests.real import controlplane as cp

pytestmark = pytest.mark.real


def helm(plane: cp.ControlPlane, *args: str, timeout: float = 300) -> str:
    done = subprocess.run([require_tool("helm"), "--kubeconfig", str(plane.kubeconfig), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip
    assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_chart_installs_an_operator_that_rolls_out_a_model(
    control_plane: cp.ControlPlane,
    core: client.CoreV1Api,
    crd: dict[str, Any],
    pods_registry: str,
) -> None:
    suffix = uuid.uuid4().hex[:5]
    system, watched, release = f"turnout-{suffix}", f"models-{suffix}", f"turnout-{suffix}"
    core.create_namespace({"metadata": {"name": watched}})
    helm(control_plane, "install", release, str(CHART), "--namespace", system,
         "--create-namespace", "--wait", "--timeout", "4m",
         "--set", f"watchNamespaces={{{watched}}}",
         "--set", f"operator.trackingUri={pods_registry}",
         # no cluster DNS here: smoke tests go through the API server's service proxy
         "--set", "operator.smokeVia=proxy")  # fmt: skip
    try:
        pods = core.list_namespaced_pod(system).items
        assert [p.status.phase for p in pods] == ["Running", "Running"]  # two replicas
        account = f"{release}-operator"  # the chart's own ServiceAccount
        assert {p.spec.service_account_name for p in pods} == {account}
        # one of them leads: it holds the Lease, named after the operator, in its namespace
        leases = client.CoordinationV1Api(core.api_client)
        lease = leases.read_namespaced_lease(account, system).spec
        assert lease.holder_identity in {p.metadata.name for p in pods}
        assert lease.lease_duration_seconds == 15
        # and only it carries the label the registry webhook Service selects

        def labelled() -> list[str] | None:
            found = [p.metadata.name for p in core.list_namespaced_pod(system).items
                     if (p.metadata.labels or {}).get("turnout.dev/leader") == "true"]  # fmt: skip
            return found or None

        assert wait_until(labelled, timeout=30, interval=0.5, what="the leader's pod labelled") == [
            lease.holder_identity
        ]
        with control_plane.http() as admin:
            manifest = {"apiVersion": API, "kind": "ModelDeployment",
                        "metadata": {"name": "diabetes", "namespace": watched},
                        "spec": {"model": {"name": "Diabetes", "version": "1"}, "replicas": 1}}  # fmt: skip
            created = admin.post(f"/apis/turnout.dev/v1alpha1/namespaces/{watched}/modeldeployments",
                                 json=manifest)  # fmt: skip
            assert created.status_code == 201, created.text

            def healthy() -> dict[str, Any] | None:
                found = admin.get(f"/apis/turnout.dev/v1alpha1/namespaces/{watched}"
                                  "/modeldeployments/diabetes").json()  # fmt: skip
                status = found.get("status") or {}
                return status if status.get("phase") == "Healthy" else None

            status = wait_until(healthy, timeout=240, interval=0.5, what="diabetes Healthy")
            assert (status["activeVersion"], conditions(status)) == ("1", HEALTHY_CONDITIONS)
            answer = admin.post(f"/api/v1/namespaces/{watched}/services/diabetes:http/proxy"
                                "/invocations", json={"dataframe_records": [ROW]})  # fmt: skip
            assert answer.status_code == 200, answer.text
            assert len(answer.json()["predictions"]) == 1
        # in the pod, the operator was its ServiceAccount, and was refused nothing
        calls = control_plane.audit(f"system:serviceaccount:{system}:{account}")
        assert any(
            c["verb"] == "patch"
            and c["objectRef"].get("subresource") == "status"
            and c["objectRef"]["resource"] == "modeldeployments"
            for c in calls
        )
        assert [c["requestURI"] for c in calls if c["responseStatus"]["code"] == 403] == []
    finally:
        with control_plane.http() as admin:
            admin.delete(
                f"/apis/turnout.dev/v1alpha1/namespaces/{watched}/modeldeployments/diabetes"
            )
        helm(control_plane, "uninstall", release, "--namespace", system, "--wait")
    wait_until(lambda: not core.list_namespaced_pod(system).items, timeout=90, interval=0.5,
               what="the operator's pod gone")  # fmt: skip
    core.delete_namespace(watched)
    core.delete_namespace(system)
