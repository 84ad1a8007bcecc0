"""A cluster for operator tests: the Kubernetes API emulator, the real operator as a process
(`turnout-operator run`, out of cluster, with a kubeconfig), the real MLflow registry, and pods
that are real `turnout-serve` processes; plus helpers to drive and read it."""

from __future__ import annotations

import contextlib
import itertools
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from mlflow import MlflowClient

from tests.conftest import BIN, ROOT, Process, Registry, free_port, start, wait_until
from tests.kube.emulator import KubeEmulator
from turnout_operator.crd import build_crd

API = "turnout.dev/v1alpha1"
# The conditions of a Healthy ModelDeployment: type -> (status, reason)
HEALTHY_CONDITIONS = {
    "Ready": ("True", "Available"),
    "Progressing": ("False", "RolloutComplete"),
    "ModelResolved": ("True", "Resolved"),
    "Degraded": ("False", "Healthy"),
}
ROW = {"age": 0.03, "sex": 0.05, "bmi": 0.06, "bp": 0.02, "s1": -0.04, "s2": -0.03,
       "s3": -0.04, "s4": 0.0, "s5": 0.02, "s6": -0.02}  # fmt: skip


@dataclass
class Cluster:
    # tests/kube's KubeEmulator, or tests/real/objects.py's RealKube: the same direct access
    # (create, get, list, patch, delete, events, url, http)
    kube: Any
    operator: Process
    metrics: str
    registry: Registry
    argv: list[str] = field(default_factory=list)  # how the operator was started, for restarts
    env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0
    namespace: str = "default"

    def restart_operator(self) -> None:
        """Kill the operator with SIGKILL (no cleanup, as a node failure would) and start a new
        one the same way; it must pick up every ModelDeployment from status and cluster alone."""
        self.operator.stop(signal.SIGKILL)
        self.restarts += 1
        log = self.operator.log.with_name(f"operator.{self.restarts}.log")
        self.operator = Process(self.operator.url, start(self.argv, log, self.env), log)

    def apply(self, name: str, model: dict[str, str], **spec: Any) -> None:
        self.kube.create({
            "apiVersion": API, "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"model": model, "replicas": 1, **spec},
        })  # fmt: skip

    def metric(self, sample: str) -> float:
        """One sample of the operator's /metrics, e.g. `name{label="value"}`; 0 when absent."""
        for line in httpx.get(self.metrics).text.splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def md(self, name: str) -> dict[str, Any]:
        found = self.kube.get(API, "ModelDeployment", self.namespace, name)
        assert found is not None
        return found

    def status(self, name: str) -> dict[str, Any]:
        return self.md(name).get("status") or {}

    def wait_phase(
        self, name: str, phase: str, timeout: float = 90, **fields: Any
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
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

    def wait_rollout(self, name: str, version: str, timeout: float = 60) -> dict[str, Any]:
        """The status once a rollout of `version` is under way (Progressing or Paused: a preview
        whose pods start fast can pass Progressing between two reads)."""
        return wait_until(
            lambda: (s := self.status(name)).get("rollout", {}).get("version") == version and s,
            timeout=timeout, interval=0.1, what=f"{name}: a rollout of version {version}",
        )  # fmt: skip

    def selector(self, service: str) -> str | None:
        found = self.kube.get("v1", "Service", self.namespace, service)
        return None if found is None else found["spec"]["selector"].get("turnout.dev/color")

    def predict(self, service: str) -> httpx.Response:
        """A prediction through the API server's service proxy to `service`."""
        with self.kube.http() as http:
            return http.post(
                f"/api/v1/namespaces/{self.namespace}/services/{service}:http/proxy/invocations",
                json={"dataframe_records": [ROW]},
            )

    def reasons(self, name: str) -> list[str]:
        return [e.get("reason", "") for e in self.kube.events(self.namespace, involved_name=name)]

    def tag(self, model: str, version: str, name: str) -> str | None:
        client = MlflowClient(self.registry.uri)
        tags = client.get_model_version(model, version).tags
        return tags.get(f"turnout.dev/{self.namespace}.{name}")

    # --- driving a rollout by hand, as a user does with kubectl -------------------------------

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.kube.patch(API, "ModelDeployment", self.namespace, name, {"spec": spec})

    def delete_model_deployments(self) -> None:
        """Every ModelDeployment of the namespace (and so, by garbage collection, what it
        owns): what a test made is gone before the next starts."""
        for md in self.kube.list(API, "ModelDeployment", self.namespace):
            with contextlib.suppress(Exception):  # already on its way out
                self.kube.delete(API, "ModelDeployment", self.namespace, md["metadata"]["name"])

    def annotate(self, name: str, key: str, value: str = "true") -> None:
        self.kube.patch(API, "ModelDeployment", self.namespace, name,
                        {"metadata": {"annotations": {key: value}}})  # fmt: skip

    def annotations(self, name: str) -> dict[str, str]:
        return dict(self.md(name)["metadata"].get("annotations") or {})

    def wait_annotation_handled(self, name: str, key: str, timeout: float = 30) -> None:
        """The operator removes an annotation once the status recording what it did is written:
        right after that status, not with it."""
        wait_until(lambda: key not in self.annotations(name), timeout=timeout, interval=0.2,
                   what=f"{key} removed from {name}")  # fmt: skip

    # --- reading and waiting --------------------------------------------------------------------

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.kube.get("apps/v1", "Deployment", self.namespace, name)

    def replicas(self, deployment: str) -> int | None:
        found = self.deployment(deployment)
        return None if found is None else int(found["spec"]["replicas"])

    def wait_replicas(self, deployment: str, count: int, timeout: float = 30) -> None:
        wait_until(lambda: self.replicas(deployment) == count, timeout=timeout, interval=0.2,
                   what=f"{deployment} at {count} replicas")  # fmt: skip

    def wait_tag(
        self, model: str, version: str, name: str, state: str, timeout: float = 30
    ) -> None:
        wait_until(lambda: self.tag(model, version, name) == state, timeout=timeout,
                   interval=0.2, what=f"{model} v{version} tagged {state} for {name}")  # fmt: skip

    def wait_event(self, name: str, reason: str, timeout: float = 30) -> None:
        """Events are posted before the status is written, and a scale-down's after the scale:
        wait for them rather than race them."""
        wait_until(lambda: reason in self.reasons(name), timeout=timeout, interval=0.2,
                   what=f"a {reason} event on {name}")  # fmt: skip


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """type -> (status, reason)"""
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def history(status: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(version, color, outcome), newest first."""
    return [(h["version"], h["color"], h["outcome"]) for h in status.get("history", [])]


def running_cluster(
    registry: Registry,
    home: Path,
    *,
    pods: str = "process",
    extra_env: dict[str, str] | None = None,
    all_namespaces: bool = False,
    crd: dict[str, Any] | None = None,
) -> Iterator[Cluster]:
    """A cluster whose pods behave as `pods` (a controller mode of tests/kube), for a fixture
    to `yield from`; the operator watches namespace `default`, or all of them. The CRD is the
    generated one unless another is given."""
    with KubeEmulator(log_dir=home / "pods") as kube:
        kube.apply_crd(crd or build_crd())
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
        scope = ["--all-namespaces"] if all_namespaces else ["--namespace", "default"]
        argv = [str(BIN / "turnout-operator"), "run", *scope]
        operator = Process(f"http://127.0.0.1:{port}", start(argv, log, env), log)
        cluster = Cluster(kube, operator, f"http://127.0.0.1:{port}/metrics", registry, argv, env)
        try:
            yield cluster
        finally:
            cluster.operator.stop()


# What an older CRD lacks: the limits the operator checks itself (`helm upgrade` never upgrades
# a chart's CRDs, so an operator can meet a CRD from before its limits).
LIMITS = frozenset({"maximum", "maxLength", "pattern", "maxProperties", "maxItems",
                    "x-kubernetes-validations"})  # fmt: skip


def without_limits(node: Any) -> Any:
    """The CRD (or a part of it) with LIMITS removed everywhere."""
    if isinstance(node, dict):
        return {k: without_limits(v) for k, v in node.items() if k not in LIMITS}
    if isinstance(node, list):
        return [without_limits(item) for item in node]
    return node


# The published RBAC (manifests/), by mode: the file and the kind of role it grants with.
RBAC = {
    "namespaced": (ROOT / "manifests" / "overlays" / "namespaced" / "rbac.yaml", "Role"),
    "cluster-wide": (ROOT / "manifests" / "base" / "rbac.yaml", "ClusterRole"),
    # the replicas' Lease, in the operator's own namespace, whatever it watches
    "leader-election": (ROOT / "manifests" / "base" / "leader-election.yaml", "Role"),
}
LEADER_ELECTION_ROLE = "turnout-operator-leader-election"
Rule = tuple[str, str, str]  # (group, resource[/subresource], verb)


def calls_made(kube: KubeEmulator) -> set[Rule]:
    """Every (group, resource[/subresource], verb) the emulator was asked for."""
    return {
        (call.group, f"{call.resource}/{call.subresource}" if call.subresource else call.resource,
         call.verb)
        for call in kube.requests
    }  # fmt: skip


def granted(mode: str) -> set[Rule]:
    """What the published RBAC of `mode` ("namespaced", "cluster-wide" or "leader-election")
    allows."""
    path, kind = RBAC[mode]
    return rules(yaml.safe_load_all(path.read_text()), kind)


def rules(documents: Iterable[Any], kind: str) -> set[Rule]:
    """(group, resource[/subresource], verb) granted by the `kind` objects among documents."""
    allowed = set()
    for document in documents:
        if document and document["kind"] == kind:
            for rule in document["rules"]:
                for group, resource, verb in itertools.product(
                    rule["apiGroups"], rule["resources"], rule["verbs"]
                ):
                    allowed.add((group, resource, verb))
    return allowed
