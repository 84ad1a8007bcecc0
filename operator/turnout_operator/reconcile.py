"""One reconcile of one ModelDeployment: observe, plan, act, write the status once.

The steps are the planner's; this module only reads the cluster and the registry through the
adapters, carries out the actions in order and writes the status back. A smoke test is the one
action whose answer the planner needs at once: the reconcile then observes again and plans a
second time. Everything here is synchronous and runs in a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import (
    Action,
    DeployColor,
    Emit,
    PointService,
    RemoveAnnotation,
    RolloutFinished,
    ScaleColor,
    SmokeTest,
    TagVersion,
    VersionState,
)
from turnout_operator.domain.manifests import (
    Defaults,
    build_deployment,
    build_service,
    deployment_name,
    service_name,
)
from turnout_operator.domain.observed import (
    ANNOTATIONS,
    Observed,
    Resolved,
    ResolveFailed,
    SmokeResult,
)
from turnout_operator.domain.planner import plan
from turnout_operator.domain.spec import ModelDeploymentSpec
from turnout_operator.domain.status import (
    ModelDeploymentStatus,
    parse_time,
    set_condition,
)
from turnout_operator.kube import Kube
from turnout_operator.metrics import OperatorMetrics
from turnout_operator.registry_http import RegistryError
from turnout_operator.settings import OperatorSettings
from turnout_operator.tags import TagWriter

log = logging.getLogger("turnout_operator.reconcile")
MAX_PASSES = 3
MAX_REGISTRY_RETRY_SECONDS = 300.0


class Registry(Protocol):
    tracking_uri: str

    def resolve(self, ref: Any) -> Resolved | ResolveFailed: ...

    def tag(self, name: str, version: str, key: str, state: VersionState) -> None: ...

    def smoke_payload(self, name: str, version: str) -> bytes | None: ...


RegistryFactory = Callable[[str, Mapping[str, str]], Registry]


@dataclass
class Reconciler:
    kube: Kube
    registries: RegistryFactory
    settings: OperatorSettings
    metrics: OperatorMetrics
    tags: TagWriter
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    in_cluster: bool = False

    def reconcile(self, namespace: str, name: str) -> float | None:
        """Bring one ModelDeployment a step closer to its spec; seconds until it is due again
        (None: only a change will need it)."""
        body = self.kube.model_deployment(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self.metrics.observe(namespace, name, None)
            return None
        generation = int(body["metadata"].get("generation", 1))
        status = _status_of(body)
        try:
            spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            self._invalid(body, status, generation, exc)
            return None
        now = self.clock()
        registry: Registry | None = None
        resolution: Resolved | ResolveFailed | None = None
        if _resolve_due(spec, status, generation, now, self.settings.registry_retry_seconds):
            registry, resolution = self._resolve(spec, namespace)
        annotations = body["metadata"].get("annotations") or {}
        active, preview = self.kube.selectors(namespace, name)
        observed = Observed(
            status=status, name=name, namespace=namespace, generation=generation,
            annotations={k: v for k, v in annotations.items() if k in ANNOTATIONS},
            resolution=resolution, colors=self.kube.colors(namespace, name),
            active_selector=active, preview_selector=preview,
        )  # fmt: skip
        act = _Acts(self, body, spec, namespace, name, registry)
        for _ in range(MAX_PASSES):
            result = plan(spec, observed, now)
            smoke = act.run(result.actions)
            if result.status != status:
                self.kube.patch_status(namespace, name, _wire(result.status))
            status = result.status
            if smoke is None:
                break
            active, preview = self.kube.selectors(namespace, name)
            observed = replace(
                observed, status=status, annotations={}, smoke=smoke,
                colors=self.kube.colors(namespace, name),
                active_selector=active, preview_selector=preview,
            )  # fmt: skip
        self.metrics.observe(namespace, name, status.phase, spec.model.name,
                             status.active_version, status.active_color)  # fmt: skip
        wake = _next_wake(spec, status, result.requeue_after, now, self.settings)
        if act.postponed:  # a smoke test waits for the registry: try again soon, not at resync
            wake = min(wake or self.settings.registry_retry_seconds,
                       self.settings.registry_retry_seconds)  # fmt: skip
        return wake

    def _resolve(
        self, spec: ModelDeploymentSpec, namespace: str
    ) -> tuple[Registry, Resolved | ResolveFailed]:
        registry, problem = self.registry_for(spec, namespace)
        return registry, problem or registry.resolve(spec.model)

    def registry_for(
        self, spec: ModelDeploymentSpec, namespace: str
    ) -> tuple[Registry, ResolveFailed | None]:
        """The MLflow registry the spec names, with the credentials from its Secret."""
        tracking_uri = spec.registry.tracking_uri or self.settings.tracking_uri
        credentials: Mapping[str, str] = {}
        problem = None
        if spec.registry.credentials_secret:
            try:
                credentials = self.kube.secret(namespace, spec.registry.credentials_secret)
            except LookupError as exc:
                problem = ResolveFailed(R.UNAUTHORIZED, f"registry credentials: {exc}")
        return self.registries(tracking_uri, credentials), problem

    def _invalid(
        self, body: dict[str, Any], status: ModelDeploymentStatus, generation: int,
        error: ValidationError,
    ) -> None:  # fmt: skip
        meta = body["metadata"]
        message = "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )[:1000]
        now = self.clock()
        updated = status.model_copy(deep=True)
        updated.conditions = set_condition(
            updated.conditions, R.DEGRADED, "True", R.INVALID_SPEC, message, now, generation
        )
        updated.phase, updated.message, updated.observed_generation = (
            "Degraded", message, generation,
        )  # fmt: skip
        if updated != status:
            self.kube.event(body, "Warning", R.INVALID_SPEC, message)
            self.kube.patch_status(meta["namespace"], meta["name"], _wire(updated))
        model = ((body.get("spec") or {}).get("model") or {}).get("name")
        self.metrics.observe(meta["namespace"], meta["name"], "Degraded",
                             model if isinstance(model, str) else "",
                             status.active_version, status.active_color)  # fmt: skip


class _Acts:
    """Carries out one plan's actions for one ModelDeployment."""

    def __init__(
        self, reconciler: Reconciler, body: dict[str, Any], spec: ModelDeploymentSpec,
        namespace: str, name: str, registry: Registry | None,
    ) -> None:  # fmt: skip
        self.r, self.body, self.spec = reconciler, body, spec
        self.namespace, self.name = namespace, name
        self._registry = registry
        self.postponed = False
        settings = reconciler.settings
        self.defaults = Defaults(image=settings.serving_image, tracking_uri=settings.tracking_uri)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self.r.registry_for(self.spec, self.namespace)[0]
        return self._registry

    def run(self, actions: tuple[Action, ...]) -> SmokeResult | None:
        smoke = None
        for action in actions:
            result = self.do(action)
            if result is not None:
                smoke = result
        return smoke

    def do(self, action: Action) -> SmokeResult | None:
        kube, ns, name = self.r.kube, self.namespace, self.name
        match action:
            case DeployColor(color, version, model_uri, replicas):
                kube.apply_deployment(
                    build_deployment(name, ns, color, version, model_uri, replicas, self.spec,
                                     self.defaults), self.body)  # fmt: skip
            case ScaleColor(color, replicas):
                kube.scale(ns, deployment_name(name, color), replicas)
            case PointService(role, color):
                kube.point_service(build_service(name, ns, role, color), self.body)
            case SmokeTest(color, version):
                return self.smoke(version)
            case TagVersion(version, state):
                self.r.tags.put(self.registry, self.spec.model.name, version,
                                f"turnout.dev/{ns}.{name}", state)  # fmt: skip
            case RemoveAnnotation(key):
                kube.remove_annotation(ns, name, key)
            case Emit(type_, reason, message):
                kube.event(self.body, type_, reason, message)
            case RolloutFinished(outcome, seconds):
                self.r.metrics.rollout_finished(outcome, seconds)
        return None

    def smoke(self, version: str) -> SmokeResult | None:
        """The smoke test's verdict; None when the registry cannot hand out the input example
        now (a registry error must not reject a version: the next reconcile tries again)."""
        try:
            payload = self.registry.smoke_payload(self.spec.model.name, version)
        except RegistryError as exc:
            log.warning("smoke test of %s %s postponed: %s", self.name, version, exc)
            self.postponed = True
            return None
        if payload is None:
            return SmokeResult(version, True, "no input example logged: smoke test skipped")
        token = None
        if self.spec.auth.token_secret:  # the preview wants a token: the one its pods mount
            try:
                token = self.r.kube.auth_token(self.namespace, self.spec.auth.token_secret)
            except LookupError as exc:
                return SmokeResult(version, False, f"smoke test has no token to send: {exc}")
        settings = self.r.settings
        direct = settings.smoke_via == "direct" or (
            settings.smoke_via == "auto" and self.r.in_cluster
        )
        return self.r.kube.smoke(
            self.namespace, service_name(self.name, "preview"), version, payload, direct,
            settings.smoke_timeout_seconds, token,
        )  # fmt: skip


def _status_of(body: dict[str, Any]) -> ModelDeploymentStatus:
    raw = body.get("status") or {}
    known = set(ModelDeploymentStatus.model_fields) | {
        f.alias for f in ModelDeploymentStatus.model_fields.values() if f.alias
    }
    try:
        return ModelDeploymentStatus.model_validate({k: v for k, v in raw.items() if k in known})
    except ValidationError:
        log.warning("unreadable status of %s: starting from an empty one", body["metadata"]["name"])
        return ModelDeploymentStatus()


def _wire(status: ModelDeploymentStatus) -> dict[str, Any]:
    """The status as a merge patch: absent fields as explicit nulls, so they are removed."""
    return status.model_dump(by_alias=True, mode="json")


def _resolve_due(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, generation: int, now: datetime,
    retry_seconds: float,
) -> bool:  # fmt: skip
    if status.observed_generation != generation or status.resolved_at is None:
        return True
    period = registry_period(spec, status, retry_seconds)
    if period is None:
        return status.desired_version is None
    return (now - parse_time(status.resolved_at)).total_seconds() >= period


def _next_wake(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, requeue: float | None,
    now: datetime, settings: OperatorSettings,
) -> float | None:  # fmt: skip
    waits = [requeue] if requeue is not None else []
    period = registry_period(spec, status, settings.registry_retry_seconds)
    if status.resolved_at is not None and period is not None:
        due = parse_time(status.resolved_at) + timedelta(seconds=period)
        waits.append(max(1.0, (due - now).total_seconds()))
    return min(waits) if waits else None


def registry_period(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, retry_seconds: float
) -> float | None:
    """Seconds from one registry answer to the next question; None: only a spec change asks.

    While the registry fails, the wait is as long as it has been failing (at least
    `retry_seconds`, at most MAX_REGISTRY_RETRY_SECONDS), so it doubles from one attempt to the
    next with no counter to keep: a registry that is down for long is not hammered by every
    ModelDeployment, and one that was down briefly is asked again soon.
    """
    resolved = status.condition(R.MODEL_RESOLVED)
    if resolved is not None and resolved.status == "False" and status.resolved_at is not None:
        failing = parse_time(status.resolved_at) - parse_time(resolved.last_transition_time)
        return min(MAX_REGISTRY_RETRY_SECONDS, max(retry_seconds, failing.total_seconds()))
    return float(spec.registry.poll_interval_seconds) if spec.model.floating else None
