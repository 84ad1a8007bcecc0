"""One reconcile of one ModelDeployment: observe, plan, act, write the status once.

The steps are the planner's; this module only reads the cluster and the registry through the
adapters, carries out the actions in order and writes the status back. A smoke test and a
measurement are the actions whose answers the planner needs at once: the reconcile then observes
again and plans another time. Everything here is synchronous and runs in a worker thread.

What the order guarantees:
- The spec and every object it becomes are checked first (domain/validation.py): an invalid
  one is written nowhere but in its status (Degraded/InvalidSpec), and its annotations still act.
- A reconcile never waits for the registry to resolve the model: it returns the question
  (`Outcome.ask`), the caller asks it on the registry's own threads and reconciles again with
  the answer. A registry that never answers so delays nothing but that answer.
- An annotation is removed only after the status recording what it did is written: a reconcile
  that fails half-way leaves it to be acted on again.
- A notification is only put on its channel's queue (notifier.py): a receiver that is slow or
  down delays nothing here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from turnout_operator.answers import SharedAnswers
from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import (
    Action,
    AnalysisFinished,
    ApplyRoute,
    Autoscale,
    DeleteRoute,
    DeployColor,
    Emit,
    ExposeService,
    Measure,
    MoveAlias,
    Notify,
    PointService,
    RemoveAnnotation,
    RemoveAutoscaler,
    RetrainingCounted,
    RolloutFinished,
    ScaleColor,
    SmokeTest,
    StartRetraining,
    StartShadow,
    StopShadow,
    TagVersion,
)
from turnout_operator.domain.analysis import Measurement
from turnout_operator.domain.answers import Freshness
from turnout_operator.domain.exposure import applied, build_route, expose_service
from turnout_operator.domain.manifests import (
    Defaults,
    admin_secret_name,
    build_deployment,
    build_service,
    deployment_name,
    service_name,
)
from turnout_operator.domain.notifications import deliveries
from turnout_operator.domain.observed import (
    ANNOTATIONS,
    ExposureSeen,
    Observed,
    Resolved,
    ResolveFailed,
    SmokeResult,
)
from turnout_operator.domain.planner import Plan, plan, plan_invalid
from turnout_operator.domain.retraining import Retrained, Seen
from turnout_operator.domain.retraining_job import build_job
from turnout_operator.domain.scaling_manifests import build_autoscaler, build_disruption_budget
from turnout_operator.domain.spec import RETRAIN, Color, ModelDeploymentSpec
from turnout_operator.domain.status import ModelDeploymentStatus, parse_time
from turnout_operator.domain.validation import MAX_MESSAGE, check, name_problems
from turnout_operator.kube import Kube, Rejected
from turnout_operator.live_record import LiveRecorder
from turnout_operator.meter import Meter
from turnout_operator.metrics import OperatorMetrics
from turnout_operator.notifier import Notifier
from turnout_operator.registry_http import RegistryError
from turnout_operator.settings import OperatorSettings
from turnout_operator.tags import TagWriter

log = logging.getLogger("turnout_operator.reconcile")
MAX_PASSES = 4  # a smoke test, the old color's latency, then the switch
MAX_REGISTRY_RETRY_SECONDS = 300.0


class Registry(Protocol):
    tracking_uri: str

    @property
    def identity(self) -> str:
        """The server and the credentials: answers are shared only under the same one."""

    def resolve(self, ref: Any) -> Resolved | ResolveFailed: ...

    def tag(self, name: str, version: str, key: str, value: str) -> None: ...

    def smoke_payload(self, name: str, version: str) -> bytes | None: ...

    def retrained(self, name: str, job: str, serving: str | None) -> Retrained: ...

    def set_alias(self, name: str, alias: str, version: str) -> None: ...


RegistryFactory = Callable[[str, Mapping[str, str]], Registry]


@dataclass(frozen=True)
class Question:
    """A registry question a reconcile leaves to the caller, to ask off the reconcile's thread:
    what `spec.model` of generation `generation` resolves to."""

    namespace: str
    generation: int
    spec: ModelDeploymentSpec


@dataclass(frozen=True)
class Answer:
    generation: int
    resolution: Resolved | ResolveFailed


@dataclass(frozen=True)
class Outcome:
    wake: float | None  # seconds until the ModelDeployment is due again (None: on a change)
    ask: Question | None = None  # ask the registry, then reconcile again with the answer


@dataclass
class Reconciler:
    kube: Kube
    registries: RegistryFactory
    settings: OperatorSettings
    metrics: OperatorMetrics
    tags: TagWriter
    notifier: Notifier = field(default_factory=lambda: Notifier(()))
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    in_cluster: bool = False
    meter: Meter = field(init=False)  # reads the pods for analysis; tests may swap it
    live: LiveRecorder = field(init=False)  # records live quality in MLflow, in the background
    answers: SharedAnswers = field(init=False)  # every resolution goes through it

    def __post_init__(self) -> None:
        self.answers = SharedAnswers(on_fetched=self.metrics.resolution_fetched,
                                     on_shared=self.metrics.answers_shared.inc)  # fmt: skip
        self.meter = Meter(self.kube, self.settings.metrics_timeout_seconds)
        self.live = LiveRecorder(
            self.kube, self.tags, interval=self.settings.live_quality_interval_seconds,
            timeout=self.settings.metrics_timeout_seconds, direct=lambda: self.direct,
        )  # fmt: skip

    @property
    def direct(self) -> bool:
        """Whether pods and Services are reached directly (in the cluster) or through the API
        server's proxy."""
        via = self.settings.smoke_via
        return via == "direct" or (via == "auto" and self.in_cluster)

    @property
    def defaults(self) -> Defaults:
        return Defaults(image=self.settings.serving_image, tracking_uri=self.settings.tracking_uri)

    def reconcile(self, namespace: str, name: str, answer: Answer | None = None) -> Outcome:
        """Bring one ModelDeployment a step closer to its spec, with the registry's `answer`
        when one came. It never waits for the registry to resolve the model: when a resolution
        is due it says so
        (`Outcome.ask`), and the caller asks and calls again with the answer."""
        body = self.kube.model_deployment(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self.metrics.observe(namespace, name, None)
            self.live.forget(namespace, name)
            return Outcome(None)
        generation = int(body["metadata"].get("generation", 1))
        status = _status_of(body)
        checked = check(name, namespace, body.get("spec") or {}, self.defaults,
                        self.notifier.channels)  # fmt: skip
        spec, now = checked.spec, self.clock()
        if checked.problems:
            return self._invalid(body, spec, status, generation, checked.why, now)
        resolution = answer.resolution if answer and answer.generation == generation else None
        ask = None
        if resolution is None and _resolve_due(
            spec, status, generation, now, self.settings.registry_retry_seconds
        ):
            ask = Question(namespace, generation, spec)
        observed = self._observe(body, status, generation, resolution)
        observed = replace(observed, retraining=self._retraining_seen(body, spec, status),
                           exposure=self._exposure_seen(name, namespace, spec, status))  # fmt: skip
        act = _Acts(self, body, spec)
        try:
            result, status = self._carry_out(act, spec, observed, now)
        except Rejected as exc:
            why = f"the API server rejected {exc}"[:MAX_MESSAGE]
            return self._invalid(body, spec, status, generation, why, now)
        self.metrics.observe_status(namespace, name, spec.model.name, status)
        registry = lambda: self.registry_for(spec, namespace)[0]  # noqa: E731 (built when writing)
        self.live.serving(namespace, name, spec.model.name, status.active_version,
                          status.active_color, registry)  # fmt: skip
        wake = _next_wake(spec, status, result.requeue_after, now, self.settings)
        if act.postponed:  # a smoke test waits for the registry: try again soon, not at resync
            wake = min(wake or self.settings.registry_retry_seconds,
                       self.settings.registry_retry_seconds)  # fmt: skip
        if spec.retraining is not None:  # look at the triggers' figures as often as they are read
            interval = self.settings.live_quality_interval_seconds
            wake = min(wake or interval, interval)
        return Outcome(wake, ask)

    def question(self, namespace: str, name: str) -> Question | None:
        """The registry question of a ModelDeployment whose model a webhook says changed, asked
        before any reconcile so that the one reconcile that follows already has the answer;
        None: nothing to ask (gone, being deleted, or a spec that cannot be acted on)."""
        body = self.kube.model_deployment(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        checked = check(name, namespace, body.get("spec") or {}, self.defaults,
                        self.notifier.channels)  # fmt: skip
        if checked.problems:
            return None
        return Question(namespace, int(body["metadata"].get("generation", 1)), checked.spec)

    def resolve(self, question: Question, after: float | None = None) -> Answer:
        """What spec.model is now (blocking: run it off the reconcile pool): an answer another
        ModelDeployment following the same reference with the same credentials fetched lately
        enough (answers.py), else the registry's. `after`: a moment on `answers.clock` the
        answer must have been fetched after (a registry webhook's delivery)."""
        spec = question.spec
        registry, problem = self.registry_for(spec, question.namespace)
        if problem is not None:
            return Answer(question.generation, problem)
        ref = spec.model
        freshness = Freshness.of(spec.registry.poll_interval_seconds,
                                 self.settings.registry_retry_seconds, after)  # fmt: skip
        key = (registry.identity, ref.name, ref.version, ref.alias, ref.stage)
        resolution = self.answers.answer(key, lambda: registry.resolve(ref), freshness)
        return Answer(question.generation, resolution)

    def _observe(
        self, body: dict[str, Any], status: ModelDeploymentStatus, generation: int,
        resolution: Resolved | ResolveFailed | None, named: bool = True,
    ) -> Observed:  # fmt: skip
        """What the planner sees; nothing of the cluster when the name cannot name an object."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        annotations = meta.get("annotations") or {}
        active, preview = self.kube.selectors(namespace, name) if named else (None, None)
        return Observed(
            status=status, name=name, namespace=namespace, generation=generation,
            annotations={k: v for k, v in annotations.items() if k in ANNOTATIONS},
            resolution=resolution, colors=self.kube.colors(namespace, name) if named else {},
            active_selector=active, preview_selector=preview,
            autoscaler=self.kube.autoscaler(namespace, name) if named else None,
        )  # fmt: skip

    def _exposure_seen(
        self, name: str, namespace: str, spec: ModelDeploymentSpec, status: ModelDeploymentStatus
    ) -> ExposureSeen:
        """The routes are read when the spec wants one or the status says one was made."""
        ingress = spec.ingress is not None or "Ingress" in status.routes
        route = spec.http_route is not None or "HTTPRoute" in status.routes
        return self.kube.exposure(namespace, name, ingress, route)

    def _retraining_seen(
        self, body: dict[str, Any], spec: ModelDeploymentSpec, status: ModelDeploymentStatus
    ) -> Seen | None:
        """What the retraining triggers see: the active pods' figures as last read in the
        background (live_record.py), the running Job's state, and, while a `promote: alias`
        is pending, the version the Job registered (a registry that cannot answer now leaves it
        pending)."""
        if spec.retraining is None:
            return None
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        record = status.retraining.last if status.retraining else None
        job, why = None, ""
        if record is not None and record.state == "Running":
            job, why = self.kube.job_state(namespace, record.job_name)
        retrained = None
        if record is not None and record.promotion == "Pending":
            registry = self.registry_for(spec, namespace)[0]
            try:
                retrained = registry.retrained(spec.model.name, record.job_name, record.version)
            except RegistryError as exc:
                log.warning("promotion of %s/%s waits for the registry: %s", namespace, name, exc)
        figures = self.live.watched(namespace, name, status.active_version)
        return Seen(
            name=name, alias=spec.model.alias, active_version=status.active_version,
            rollout_in_progress=status.rollout is not None or spec.paused,
            drift_psi=figures.drift_psi if figures else None,
            drift_rows=figures.drift_rows if figures else 0,
            quality_error=figures.quality_error if figures else None,
            quality_rows=figures.quality_rows if figures else 0,
            training_error=figures.training_error if figures else None,
            annotation=(meta.get("annotations") or {}).get(RETRAIN),
            job=job, job_message=why, retrained=retrained,
        )  # fmt: skip

    def _carry_out(
        self, act: _Acts, spec: ModelDeploymentSpec, observed: Observed, now: datetime
    ) -> tuple[Plan, ModelDeploymentStatus]:
        """Plan, act, write the status; again with a smoke test's result when one ran. An
        annotation is removed only once the status recording its effect is written."""
        status = observed.status
        for _ in range(MAX_PASSES):
            result = plan(spec, observed, now)
            smoke, measurement = act.run(result.actions)
            if result.status != status:
                self.kube.patch_status(act.namespace, act.name, wire(result.status))
            status = result.status
            if smoke is None and measurement is None:
                break
            active, preview = self.kube.selectors(act.namespace, act.name)
            seen = observed.retraining  # its annotation, Job end and promotion are acted on
            once = None if seen is None else replace(seen, annotation=None, job=None,
                                                     retrained=None)  # fmt: skip
            seen_exposure = observed.exposure and applied(observed.exposure, spec,
                                                          act.name, act.namespace)  # fmt: skip
            observed = replace(
                observed, status=status, annotations={}, smoke=smoke, measurement=measurement,
                retraining=once, exposure=seen_exposure,
                colors=self.kube.colors(act.namespace, act.name),
                active_selector=active, preview_selector=preview,
            )  # fmt: skip
        act.remove_handled_annotations()
        return result, status

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
        self, body: dict[str, Any], spec: ModelDeploymentSpec, status: ModelDeploymentStatus,
        generation: int, why: str, now: datetime,
    ) -> Outcome:  # fmt: skip
        """A spec the operator cannot act on: Degraded/InvalidSpec, nothing built from it; the
        annotations still act (abort, rollback) and due scale-downs still happen."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        named = not name_problems(name)
        observed = self._observe(body, status, generation, None, named=named)
        result = plan_invalid(spec, observed, now, why)
        act = _Acts(self, body, spec)
        act.run(result.actions)
        if result.status != status:
            self.kube.patch_status(namespace, name, wire(result.status))
        act.remove_handled_annotations()
        self.metrics.observe_status(namespace, name, spec.model.name, result.status)
        return Outcome(result.requeue_after)


class _Acts:
    """Carries out one plan's actions for one ModelDeployment."""

    def __init__(self, reconciler: Reconciler, body: dict[str, Any], spec: ModelDeploymentSpec):
        self.r, self.body, self.spec = reconciler, body, spec
        self.namespace, self.name = body["metadata"]["namespace"], body["metadata"]["name"]
        self._registry: Registry | None = None
        self.postponed = False
        self.handled: list[str] = []  # annotations acted on, removed once the status is written
        self.defaults = reconciler.defaults
        self._admin_secret = False  # ensured during this reconcile
        self._mirroring: set[StartShadow] = set()  # asked during this reconcile
        self._budgets: set[Color] = set()  # disruption budgets applied during this reconcile

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self.r.registry_for(self.spec, self.namespace)[0]
        return self._registry

    def run(self, actions: tuple[Action, ...]) -> tuple[SmokeResult | None, Measurement | None]:
        """Carry out the plan; the smoke test's and the measurement's answers, if any ran."""
        smoke, measurement = None, None
        for action in actions:
            result = self.do(action)
            if isinstance(result, SmokeResult):
                smoke = result
            elif isinstance(result, Measurement):
                measurement = result
        return smoke, measurement

    def do(self, action: Action) -> SmokeResult | Measurement | None:
        kube, ns, name = self.r.kube, self.namespace, self.name
        match action:
            case DeployColor(color, version, model_uri, replicas, autoscaled):
                if not self._admin_secret:  # the pods mount it: it must exist before them
                    kube.ensure_admin_secret(ns, name, self.body)
                    self._admin_secret = True
                deployment = build_deployment(name, ns, color, version, model_uri, replicas,
                                              self.spec, self.defaults)  # fmt: skip
                kube.apply_deployment(deployment, self.body, keep_replicas=autoscaled)
                if color not in self._budgets:  # once per color and reconcile
                    self._budgets.add(color)
                    kube.apply_disruption_budget(build_disruption_budget(
                        name, ns, color, self.spec.disruption_budget), self.body)  # fmt: skip
            case Autoscale(color) if self.spec.autoscaling is not None:
                kube.apply_autoscaler(build_autoscaler(name, ns, color, self.spec.autoscaling),
                                      self.body)  # fmt: skip
            case RemoveAutoscaler():
                kube.delete_autoscaler(ns, name)
            case ScaleColor(color, replicas):
                kube.scale(ns, deployment_name(name, color), replicas)
            case PointService(role, color):
                kube.point_service(self.service(role, color), self.body)
            case ExposeService():
                kube.expose_service(self.service("active", None))
            case ApplyRoute(kind):
                route = build_route(kind, name, ns, self.spec)
                if route is not None:
                    kube.apply_route(route, self.body)
            case DeleteRoute(kind):
                kube.delete_route(kind, ns, name)
            case SmokeTest(color, version):
                return self.smoke(version)
            case TagVersion(version, state):
                self.r.tags.put(self.registry, self.spec.model.name, version,
                                f"turnout.dev/{ns}.{name}", state)  # fmt: skip
            case RemoveAnnotation(key):
                self.handled.append(key)
            case Emit(type_, reason, message):
                kube.event(self.body, type_, reason, message)
            case Notify():
                for channel, notification in deliveries(
                    self.spec.notifications, self.spec.model.name, ns, name, action
                ):
                    self.r.notifier.send(channel, notification)
            case RolloutFinished(outcome, seconds):
                self.r.metrics.rollout_finished(outcome, seconds)
            case Measure():
                return self.r.meter.measure(ns, name, action, self.r.direct, self.r.clock())
            case StartShadow() | StopShadow():
                self.shadow(action)
            case AnalysisFinished(gate, result):
                self.r.metrics.analysis_finished(gate, result)
            case StartRetraining() if self.spec.retraining is not None:
                kube.create_job(build_job(name, ns, action, self.spec, self.spec.retraining,
                                          self.defaults), self.body)  # fmt: skip
            case MoveAlias(alias, version):
                self.registry.set_alias(self.spec.model.name, alias, version)
            case RetrainingCounted(reason, result):
                self.r.metrics.retraining(reason, result)
        return None

    def service(self, role: Literal["active", "preview"], color: Color | None) -> dict[str, Any]:
        """The Service of `role` as the spec wants it (color None: no selector, for a write that
        keeps the one there)."""
        body = build_service(self.name, self.namespace, role, color or "blue")
        return expose_service(body, self.spec.service) if role == "active" else body

    def shadow(self, action: StartShadow | StopShadow) -> None:
        """Start (or renew) or stop mirroring on the active pods, with the admin token the
        operator gave them; a token missing now only delays mirroring to the next pass. Each
        planning pass of a reconcile renews the lease: once is enough."""
        if action in self._mirroring:
            return
        if isinstance(action, StartShadow):
            self._mirroring.add(action)
        try:
            admin = self.r.kube.auth_token(self.namespace, admin_secret_name(self.name))
            inference = None
            if isinstance(action, StartShadow) and self.spec.auth.token_secret:
                inference = self.r.kube.auth_token(self.namespace, self.spec.auth.token_secret)
        except LookupError as exc:
            log.warning("mirroring of %s/%s: %s", self.namespace, self.name, exc)
            return
        meter, direct = self.r.meter, self.r.direct
        if isinstance(action, StartShadow):
            meter.start_shadow(self.namespace, self.name, action, direct, admin, inference)
        else:
            meter.stop_shadow(self.namespace, self.name, action, direct, admin)

    def remove_handled_annotations(self) -> None:
        for key in dict.fromkeys(self.handled):
            self.r.kube.remove_annotation(self.namespace, self.name, key)
        self.handled = []

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
        return self.r.kube.smoke(
            self.namespace, service_name(self.name, "preview"), version, payload, self.r.direct,
            self.r.settings.smoke_timeout_seconds, token,
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


def wire(status: ModelDeploymentStatus) -> dict[str, Any]:
    """The status as a JSON merge patch of the stored one. Fields of an object that are absent
    become explicit nulls, so the merge removes them; a list is replaced whole, so its items
    carry no nulls (a null inside a list is a value, not a removal: an API server that does not
    prune it would store it, or refuse it)."""
    return _nulls_only_in_objects(status.model_dump(by_alias=True, mode="json"))


def _nulls_only_in_objects(value: Any, in_list: bool = False) -> Any:
    if isinstance(value, dict):
        return {
            k: _nulls_only_in_objects(v, in_list)
            for k, v in value.items()
            if not (in_list and v is None)
        }
    if isinstance(value, list):
        return [_nulls_only_in_objects(item, True) for item in value if item is not None]
    return value


def _resolve_due(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, generation: int, now: datetime,
    retry_seconds: float,
) -> bool:  # fmt: skip
    """Whether to ask the registry now: ModelResolved's observedGeneration is the generation
    of the spec that the last answer was for (other steps of a reconcile move the status's
    observedGeneration before the answer comes)."""
    resolved = status.condition(R.MODEL_RESOLVED)
    if (
        resolved is None
        or resolved.status == "Unknown"
        or resolved.observed_generation != generation
        or status.resolved_at is None
    ):
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
