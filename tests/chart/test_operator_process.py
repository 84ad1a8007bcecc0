"""The chart's operator container, run as it is rendered: the same command, arguments and
environment, as a local process against the Kubernetes API emulator and a real MLflow registry.
It must take the Lease (the chart runs two replicas with leader election), bring a
ModelDeployment to Healthy, answer the rendered liveness probe, make no API call the chart's own
RBAC would refuse, and release the Lease when stopped.

What differs from a pod, and why:
- the command is resolved in this venv's bin/ (the image puts `turnout-operator` on PATH);
- the environment is exactly the container's `env` (the downward API's values made up: POD)
  plus KUBECONFIG (no service account token here, so the operator falls back to the kubeconfig,
  as it does out of cluster);
- values, not edits, move what would clash on a shared machine: `operator.trackingUri` (the test's
  MLflow), `operator.metricsPort` and `operator.health.port` (free ports), and
  `operator.health.bindAddress=127.0.0.1` (nothing listens beyond loopback here).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.chart.conftest import operator_container
from tests.conftest import BIN, Process, Registry, free_port, wait_until
from tests.integration.cluster import LEADER_ELECTION_ROLE, calls_made, rules
from tests.kube.emulator import KubeEmulator
from tests.manifests import NAMESPACE, Doc, Helm, one

API = "turnout.dev/v1alpha1"
POD = {
    "metadata.name": "turnout-operator-6f7c9-abcde",
    "metadata.namespace": NAMESPACE,
}  # the downward API
MODES = {  # mode -> (extra --set, the role kind the chart grants with)
    "cluster-wide": ([], "ClusterRole"),
    "namespaced": (["watchNamespaces={default}"], "Role"),
}


def run_rendered(container: Doc, kubeconfig: Path, log: Path) -> Process:
    argv = [str(BIN / container["command"][0]), *container["command"][1:], *container["args"]]
    env = {e["name"]: e["value"] if "value" in e else POD[e["valueFrom"]["fieldRef"]["fieldPath"]]
           for e in container["env"]}  # fmt: skip
    popen = subprocess.Popen(
        argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=log.parent,
        env={**env, "KUBECONFIG": str(kubeconfig)},
    )  # fmt: skip
    return Process(f"http://127.0.0.1:{env['TURNOUT_OPERATOR_METRICS_PORT']}", popen, log)


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_rendered_operator_serves_a_model(
    helm: Helm, mlflow_registry: Registry, kube: KubeEmulator, tmp_path: Path, mode: str
) -> None:
    sets, role_kind = MODES[mode]
    metrics_port, health_port = free_port(), free_port()
    docs = helm.template(
        None, f"operator.trackingUri={mlflow_registry.uri}", f"operator.metricsPort={metrics_port}",
        f"operator.health.port={health_port}", "operator.health.bindAddress=127.0.0.1", *sets,
        include_crds=True,
    )  # fmt: skip
    container = operator_container(docs)
    kube.apply_crd(one(docs, "CustomResourceDefinition"))  # what `helm install` applies first
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    operator = run_rendered(container, kube.write_kubeconfig(tmp_path / "kubeconfig"),
                            tmp_path / "operator.log")  # fmt: skip
    try:
        version = mlflow_registry.models["Diabetes"]["versions"][0]
        kube.create({
            "apiVersion": API, "kind": "ModelDeployment",
            "metadata": {"name": "diabetes", "namespace": "default"},
            "spec": {"model": {"name": "Diabetes", "version": version}, "replicas": 1,
                     "strategy": {"blueGreen": {"smokeTest": False}}},
        })  # fmt: skip

        def healthy() -> Doc | None:
            operator.alive()
            status = kube.get(API, "ModelDeployment", "default", "diabetes")["status"]  # type: ignore[index]
            return status if status.get("phase") == "Healthy" else None

        status = wait_until(healthy, timeout=60, interval=0.2, what=f"Healthy ({mode})")
        assert (status["activeVersion"], status["activeColor"]) == (version, "blue")

        # the chart's defaults reached the pods the operator built
        deployment = kube.get("apps/v1", "Deployment", "default", "diabetes-blue")
        assert deployment is not None
        [server] = deployment["spec"]["template"]["spec"]["containers"]
        pod_env = {e["name"]: e.get("value") for e in server["env"]}
        assert pod_env["MLFLOW_TRACKING_URI"] == mlflow_registry.uri
        assert server["image"] == "ghcr.io/turnout-dev/turnout-serve:0.1.0"

        # the kubelet's probe, as rendered, on the port the probe names
        probe = container["livenessProbe"]["httpGet"]
        port = {p["name"]: p["containerPort"] for p in container["ports"]}[probe["port"]]
        assert port == health_port
        assert httpx.get(f"http://127.0.0.1:{port}{probe['path']}", timeout=5).status_code == 200

        healthy_gauge = 'turnout_operator_modeldeployment_phase{phase="Healthy"} 1.0'
        wait_until(lambda: healthy_gauge in httpx.get(f"{operator.url}/metrics").text,
                   timeout=10, what="the operator's metrics to count it Healthy")  # fmt: skip
    except AssertionError as exc:
        raise AssertionError(f"{exc}\noperator log:\n{operator.output()[-4000:]}") from None
    finally:
        operator.stop()
    # every call the operator made is one the chart's RBAC of this mode allows; its Lease (taken,
    # renewed, released on the way out), what the chart's leader-election Role allows
    made = calls_made(kube)
    leases = {call for call in made if call[1] == "leases" or call == ("", "pods", "patch")}
    election = [d for d in docs if d["metadata"]["name"] == LEADER_ELECTION_ROLE]
    assert leases == rules(election, "Role")  # and the leader's label on its own pod
    assert made - leases <= rules([d for d in docs if d not in election], role_kind)
    lease = kube.get("coordination.k8s.io/v1", "Lease", NAMESPACE, "turnout-operator")
    assert lease is not None and lease["spec"]["holderIdentity"] == ""
