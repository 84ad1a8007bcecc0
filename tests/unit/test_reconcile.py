"""The order of one reconcile, against a recording stand-in for the Kubernetes adapter.

What users rely on: a reconcile never asks the registry itself (it hands the question back, so a
registry that hangs holds no reconcile); an annotation is removed only after the status recording
what it did is written; an object the API server refuses anyway ends Degraded/InvalidSpec with the
server's reason instead of a silent retry loop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from turnout_operator.domain.observed import ColorState, ExposureSeen, Resolved
from turnout_operator.domain.spec import ModelDeploymentSpec
from turnout_operator.kube import Rejected
from turnout_operator.metrics import OperatorMetrics
from turnout_operator.reconcile import Answer, Question, Reconciler
from turnout_operator.settings import OperatorSettings

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


class RecordingKube:
    """Answers reads from `objects` and records every write, in order."""

    def __init__(self, body: dict[str, Any], refuse: str | None = None) -> None:
        self.body = body
        self.refuse = refuse
        self.writes: list[tuple[str, Any]] = []
        self.colors_: dict[str, ColorState] = {}
        self.admin_secrets: set[str] = set()  # ModelDeployments whose admin Secret was ensured

    def model_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        return self.body

    def colors(self, namespace: str, name: str) -> dict[str, ColorState]:
        return self.colors_

    def selectors(self, namespace: str, name: str) -> tuple[None, None]:
        return None, None

    def exposure(self, namespace: str, name: str, ingress: bool, http_route: bool) -> ExposureSeen:
        return ExposureSeen()  # no Service yet: PointService creates it as spec.service says

    def ensure_admin_secret(self, namespace: str, name: str, owner: dict[str, Any]) -> None:
        self.admin_secrets.add(name)

    def autoscaler(self, namespace: str, name: str) -> None:
        return None

    def apply_deployment(
        self, body: dict[str, Any], owner: dict[str, Any], keep_replicas: bool = False
    ) -> None:
        # the pods mount the admin token: its Secret comes first, or they could not start
        assert body["metadata"]["labels"]["turnout.dev/model-deployment"] in self.admin_secrets
        if self.refuse:
            raise Rejected(f"Deployment {body['metadata']['name']}: {self.refuse}")
        self.writes.append(("deployment", body["metadata"]["name"]))

    def apply_disruption_budget(self, body: dict[str, Any], owner: dict[str, Any]) -> None:
        self.writes.append(("disruption-budget", body["metadata"]["name"]))

    def point_service(self, body: dict[str, Any], owner: dict[str, Any]) -> None:
        self.writes.append(("service", body["metadata"]["name"]))

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.writes.append(("scale", name))

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.writes.append(("status", status))
        self.body = {**self.body, "status": status}

    def remove_annotation(self, namespace: str, name: str, key: str) -> None:
        self.writes.append(("remove-annotation", key))

    def event(self, owner: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.writes.append(("event", (type_, reason, message)))


class Untouchable:
    """A registry a reconcile may hand to the tag writer, but never call."""

    def __init__(self, uri: str, credentials: Any) -> None:
        self.tracking_uri = uri

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a reconcile must not ask the registry ({name})")


class Tags:
    def __init__(self) -> None:
        self.wanted: list[tuple[str, str]] = []

    def put(self, registry: Any, model: str, version: str, key: str, state: str) -> None:
        self.wanted.append((version, state))


def reconciler(kube: RecordingKube) -> Reconciler:
    return Reconciler(
        kube=kube,  # type: ignore[arg-type]
        registries=Untouchable,
        settings=OperatorSettings(),
        metrics=OperatorMetrics(CollectorRegistry()),
        tags=Tags(),  # type: ignore[arg-type]
        clock=lambda: NOW,
    )


def model_deployment(spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "bikes", "namespace": "ml", "uid": "u1", "generation": 1, **meta},
        "spec": spec,
    }  # fmt: skip


SPEC = {"model": {"name": "bikes", "version": "3"}, "replicas": 1}


def test_a_due_resolution_is_handed_back_not_asked() -> None:
    kube = RecordingKube(model_deployment(SPEC))
    outcome = reconciler(kube).reconcile("ml", "bikes")
    assert outcome.ask is not None and outcome.ask.generation == 1
    [(kind, status)] = kube.writes  # the status is written before any answer comes
    assert (kind, status["phase"], status["observedGeneration"]) == ("status", "Pending", 1)


def test_an_annotation_is_removed_only_after_the_status_is_written() -> None:
    kube = RecordingKube(model_deployment(SPEC, annotations={"turnout.dev/promote": "now"}))
    reconciler(kube).reconcile("ml", "bikes", Answer(1, Resolved("3", "models:/bikes/3")))
    kinds = [kind for kind, _ in kube.writes]
    assert kinds.index("remove-annotation") > max(i for i, k in enumerate(kinds) if k == "status")


def test_an_object_the_api_server_refuses_ends_invalid_with_its_reason() -> None:
    refusal = 'spec.template.spec.containers[0].resources.requests[cpu]: Invalid value: "lots"'
    kube = RecordingKube(model_deployment(SPEC), refuse=refusal)
    outcome = reconciler(kube).reconcile("ml", "bikes", Answer(1, Resolved("3", "models:/bikes/3")))
    why = f"the API server rejected Deployment bikes-blue: {refusal}"
    assert kube.writes[0] == ("event", ("Warning", "InvalidSpec", why))
    status = kube.writes[-1][1]
    assert (status["phase"], status["message"]) == ("Degraded", why)
    assert [w for w in kube.writes if w[0] in ("deployment", "service")] == []
    assert outcome.ask is None


def test_a_registry_webhook_asks_before_the_reconcile_that_the_poll_would_not_ask_yet() -> None:
    floating = {"model": {"name": "bikes", "alias": "champion"}, "replicas": 1,
                "registry": {"pollIntervalSeconds": 3600}}  # fmt: skip
    kube = RecordingKube(model_deployment(floating))
    r = reconciler(kube)
    r.reconcile("ml", "bikes", Answer(1, Resolved("3", "models:/bikes/3")))
    assert kube.body["status"]["resolvedAt"] == "2026-11-23T12:00:00Z"
    assert r.reconcile("ml", "bikes").ask is None  # polled a moment ago: next in an hour
    writes = len(kube.writes)
    asked = r.question("ml", "bikes")  # what a webhook-woken daemon asks first
    assert asked is not None and (asked.namespace, asked.generation) == ("ml", 1)
    assert asked.spec.model.alias == "champion"
    assert len(kube.writes) == writes  # asking writes nothing
    kube.body["spec"] = {"model": {"name": "bikes"}}  # no version, alias or stage
    assert r.question("ml", "bikes") is None  # an invalid spec asks nothing


class CountingRegistry:
    """A registry that answers every resolution with version 3, counting them by credentials."""

    asked: list[dict[str, str]] = []

    def __init__(self, uri: str, credentials: dict[str, str]) -> None:
        self.tracking_uri, self.credentials = uri, dict(credentials)
        self.identity = f"{uri} {sorted(credentials.items())}"

    def resolve(self, ref: Any) -> Resolved:
        CountingRegistry.asked.append(self.credentials)
        return Resolved("3", f"models:/{ref.name}/3")


def test_resolutions_are_shared_by_reference_and_credentials_only() -> None:
    CountingRegistry.asked = []
    kube = RecordingKube(model_deployment(SPEC))
    kube.secret = lambda namespace, name: {"MLFLOW_TRACKING_TOKEN": name}  # type: ignore[attr-defined]
    r = reconciler(kube)
    r.registries = CountingRegistry  # type: ignore[assignment]
    ticks = iter(range(100))  # a clock one second further at each reading
    r.answers.clock = lambda: float(next(ticks))

    def question(**registry: Any) -> Question:
        spec = {"model": {"name": "bikes", "alias": "champion"}, "registry": registry}
        return Question("ml", 1, ModelDeploymentSpec.model_validate(spec))

    answers = [r.resolve(question()) for _ in range(3)]
    answers += [r.resolve(question(credentialsSecret=s)) for s in ("team-a", "team-b", "team-a")]
    assert answers == [Answer(1, Resolved("3", "models:/bikes/3"))] * 6
    assert CountingRegistry.asked == [
        {}, {"MLFLOW_TRACKING_TOKEN": "team-a"}, {"MLFLOW_TRACKING_TOKEN": "team-b"},
    ]  # fmt: skip
    delivery = r.answers.clock()
    assert r.resolve(question(), after=delivery).resolution == Resolved("3", "models:/bikes/3")
    assert len(CountingRegistry.asked) == 4  # a webhook's moment asks again
