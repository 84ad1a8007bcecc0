"""A cluster for operator tests: the Kubernetes API emulator, the real operator as a process
(`turnout-operator run`, out of cluster, with a kubeconfig), the real MLflow registry, and pods
that are real `turnout-serve` processes; plus helpers to drive and read it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from mlflow import MlflowClient

from tests.conftest import free_port, wait_until
from tests.integration.conftest import BIN, Process, Registry, start
from tests.kube.emulator import KubeEmulator
from turnout_operator.crd import build_crd

API = "turnout.dev/v1alpha1"
ROW = {"age": 0.03, "sex": 0.05, "bmi": 0.06, "bp": 0.02, "s1": -0.04, "s2": -0.03,
       "s3": -0.04, "s4": 0.0, "s5": 0.02, "s6": -0.02}  # fmt: skip


@dataclass
class Cluster:
    kube: KubeEmulator
    operator: Process
    metrics: str
    registry: Registry

    def apply(self, name: str, model: dict[str, str], **spec: Any) -> None:
        self.kube.create({
            "apiVersion": API, "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"model": model, "replicas": 1, **spec},
        })  # fmt: skip

    def md(self, name: str) -> dict[str, Any]:
        found = self.kube.get(API, "ModelDeployment", "default", name)
        assert found is not None
        return found

    def status(self, name: str) -> dict[str, Any]:
        return self.md(name).get("status") or {}

    def wait_phase(self, name: str, phase: str, timeout: float = 90, **fields: Any) -> dict:  # type: ignore[type-arg]
        def reached() -> dict | None:  # type: ignore[type-arg]
            self.operator.alive()
            status = self.status(name)
            ok = status.get("phase") == phase and all(status.get(k) == v for k, v in fields.items())
            return status if ok else None

        try:
            return wait_until(
                reached, timeout=timeout, interval=0.2, what=f"{name} {phase} {fields}"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstatus: {self.status(name)}\noperator log:\n"
                                 f"{self.operator.output()[-4000:]}") from None  # fmt: skip

    def selector(self, service: str) -> str | None:
        found = self.kube.get("v1", "Service", "default", service)
        return None if found is None else found["spec"]["selector"].get("turnout.dev/color")

    def predict(self, service: str) -> httpx.Response:
        return httpx.post(
            f"{self.kube.url}/api/v1/namespaces/default/services/{service}:http/proxy/invocations",
            json={"dataframe_records": [ROW]}, timeout=30,
        )  # fmt: skip

    def reasons(self, name: str) -> list[str]:
        return [e.get("reason", "") for e in self.kube.events("default", involved_name=name)]

    def tag(self, model: str, version: str, name: str) -> str | None:
        client = MlflowClient(self.registry.uri)
        tags = client.get_model_version(model, version).tags
        return tags.get(f"turnout.dev/default.{name}")


def running_cluster(
    registry: Registry,
    home: Path,
    *,
    pods: str = "process",
    extra_env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """A cluster whose pods behave as `pods` (a controller mode of tests/kube), for a fixture
    to `yield from`."""
    with KubeEmulator(log_dir=home / "pods") as kube:
        kube.apply_crd(build_crd())
        kube.controller.behave_default(pods)
        kubeconfig = kube.write_kubeconfig(home / "kubeconfig")
        port = free_port()
        env = {
            **registry.env,
            "KUBECONFIG": str(kubeconfig),
            "TURNOUT_OPERATOR_TRACKING_URI": registry.uri,
            "TURNOUT_OPERATOR_METRICS_PORT": str(port),
            "TURNOUT_OPERATOR_RESYNC_SECONDS": "10",
            **(extra_env or {}),
        }
        log = home / "operator.log"
        argv = [str(BIN / "turnout-operator"), "run", "--namespace", "default"]
        operator = Process(f"http://127.0.0.1:{port}", start(argv, log, env), log)
        try:
            yield Cluster(kube, operator, f"http://127.0.0.1:{port}/metrics", registry)
        finally:
            operator.stop()
