"""The blue-green planner: `plan(spec, observed, now) -> Plan(actions, status, requeue_after)`.

A pure function, read as a list of steps in the spirit of Argo Rollouts' blue-green reconcile:
handle the users' annotations, take the registry's answer, advance the post-promotion analysis
and settle pending scale-downs (rolling back automatically if the newly active color fails, or
fails its analysis, inside its window), start or advance the one rollout, keep Services and idle
colors as the status says, decide whether to retrain (domain/retraining.py), keep the Service's
exposure and the routes as the spec says (domain/exposure.py), then compute the status once.
The caller reads the cluster and the registry, carries out the actions in order and writes the
status back.

Invariants (property tests in tests/unit/test_planner_properties.py): the active Service is only
pointed at a color whose pods serve the active version and are available; at most one rollout
is in progress, never in the active color; a rejected version is never promoted until
`turnout.dev/retry`; no version is promoted while its pre-promotion analysis is running, failed,
or inconclusive and not accepted by `turnout.dev/promote`; a failed post-promotion analysis
always rolls back.

It must never do I/O or read the clock: `now` is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from turnout_operator.domain import autoscaling, gates, rollout
from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import (
    Action,
    DeployColor,
    PointService,
    RemoveAnnotation,
    ScaleColor,
)
from turnout_operator.domain.exposure import expose
from turnout_operator.domain.observed import (
    ABORT,
    PROMOTE,
    RETRY,
    ROLLBACK,
    Observed,
    Resolved,
    ResolveFailed,
)
from turnout_operator.domain.plan_state import Pass, last_good_version
from turnout_operator.domain.retraining import decide
from turnout_operator.domain.rollback import (
    post_promotion_analysis,
    rollback,
    settle_scale_downs,
)
from turnout_operator.domain.spec import COLORS, ModelDeploymentSpec
from turnout_operator.domain.status import ModelDeploymentStatus, set_condition, timestamp
from turnout_operator.domain.summary import summarize

__all__ = ["Plan", "last_good_version", "plan", "plan_invalid"]

MIN_REQUEUE_SECONDS = 1.0


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    status: ModelDeploymentStatus
    requeue_after: float | None  # seconds until a timer is due (scale-down, promotion, deadline)


def plan(spec: ModelDeploymentSpec, observed: Observed, now: datetime) -> Plan:
    p = Pass(spec, observed, now)
    handle_annotations(p)
    take_resolution(p)
    post_promotion_analysis(p)
    settle_scale_downs(p)
    if not spec.paused:
        if p.status.rollout is None:
            rollout.start(p)
        else:
            rollout.advance(p)
    keep_services_and_colors(p)
    autoscaling.keep_autoscaler(p)
    retrain(p)
    expose(p)
    summarize(p)
    autoscaling.record_scale(p)
    return _result(p)


def plan_invalid(spec: ModelDeploymentSpec, observed: Observed, now: datetime, why: str) -> Plan:
    """The plan for a ModelDeployment whose spec cannot be acted on (`why` names the field):
    Degraded with reason InvalidSpec and a Warning Event when that is news. Nothing is deployed
    from such a spec, but the annotations still work: abort and rollback only point Services
    and schedule scale-downs, so they never depend on the spec being right (`spec` is what
    could be salvaged from it: its delays, or their defaults). Scale-downs that fall due still
    happen."""
    p = Pass(spec, observed, now)
    handle_annotations(p)
    settle_scale_downs(p)
    previous = p.status.condition(R.DEGRADED)
    if previous is None or (previous.reason, previous.message) != (R.INVALID_SPEC, why):
        p.emit(True, R.INVALID_SPEC, why)
    p.invalid = why
    if p.status.rollout is not None:
        version = p.status.rollout.version
        p.progress = (R.INVALID_SPEC, f"the rollout of version {version} waits for a valid spec")
    summarize(p)
    autoscaling.record_scale(p)
    return _result(p)


def _result(p: Pass) -> Plan:
    requeue = None
    if p.wakeups:
        requeue = max(MIN_REQUEUE_SECONDS, (min(p.wakeups) - p.now).total_seconds())
    return Plan(actions=tuple(p.actions), status=p.status, requeue_after=requeue)


def handle_annotations(p: Pass) -> None:
    """retry, abort, promote, rollback: each is acted on once and removed."""
    annotations = p.observed.annotations
    if RETRY in annotations:
        p.actions.append(RemoveAnnotation(RETRY))
        _retry(p)
    if ABORT in annotations:
        p.actions.append(RemoveAnnotation(ABORT))
        if p.status.rollout is not None:
            rollout.abort(p, R.ABORTED_BY_USER, "aborted by the turnout.dev/abort annotation")
        else:
            p.emit(False, R.ANNOTATION_IGNORED, "abort: no rollout in progress")
    if PROMOTE in annotations:
        p.actions.append(RemoveAnnotation(PROMOTE))
        if p.status.rollout is not None:
            p.status.rollout.promote = True
            p.emit(False, R.PROMOTION_REQUESTED, f"promote version {p.status.rollout.version}")
        elif gates.accept_post_promotion(p):
            p.emit(False, R.PROMOTION_REQUESTED,
                   f"version {p.status.active_version} kept: its inconclusive post-promotion "
                   "analysis is accepted")  # fmt: skip
        else:
            p.emit(False, R.ANNOTATION_IGNORED, "promote: no rollout in progress")
    if ROLLBACK in annotations:
        p.actions.append(RemoveAnnotation(ROLLBACK))
        rollback(p)


def _retry(p: Pass) -> None:
    desired = p.desired_version()
    if desired in p.status.rejected_versions:
        p.status.rejected_versions = [v for v in p.status.rejected_versions if v != desired]
        p.emit(False, R.RETRYING, f"retrying version {desired}")
    else:
        p.emit(False, R.RETRYING, "retry: the desired version is not rejected")
    p.healthy_again = True


def take_resolution(p: Pass) -> None:
    """Record what the registry said (if it was asked this time) in ModelResolved."""
    resolution, status, generation = p.observed.resolution, p.status, p.observed.generation
    if isinstance(resolution, Resolved):
        before = status.desired_version
        if before is not None and before != resolution.version:
            p.notify("version.resolved", resolution.version, R.RESOLVED,
                     f"{p.spec.model.reference} is now version {resolution.version} "
                     f"(was {before})")  # fmt: skip
        status.desired_version = resolution.version
        status.resolved_at = timestamp(p.now)
        status.conditions = set_condition(
            status.conditions, R.MODEL_RESOLVED, "True", R.RESOLVED,
            f"{p.spec.model.reference} is version {resolution.version}", p.now, generation,
        )  # fmt: skip
        if resolution.version in status.rejected_versions:
            p.progress = (R.VERSION_REJECTED, f"version {resolution.version} is rejected")
    elif isinstance(resolution, ResolveFailed):
        status.resolved_at = timestamp(p.now)
        previous = status.condition(R.MODEL_RESOLVED)
        if previous is None or previous.status != "False" or previous.reason != resolution.reason:
            p.emit(True, R.MODEL_RESOLUTION_FAILED, resolution.message)
        status.conditions = set_condition(
            status.conditions, R.MODEL_RESOLVED, "False", resolution.reason,
            resolution.message, p.now, generation,
        )  # fmt: skip


def keep_services_and_colors(p: Pass) -> None:
    """The active color keeps the spec's replicas and template; Services point where the status
    says (the active one only at available pods); colors nobody uses are scaled to zero."""
    status, observed = p.status, p.observed
    pointed = {(a.role, a.color) for a in p.actions if isinstance(a, PointService)}
    active = status.active_color
    if active is not None and status.active_version is not None:
        version, state = status.active_version, observed.color(active)
        replicas = autoscaling.active_replicas(p.spec, state)
        p.actions.append(DeployColor(active, version, p.uri(version), replicas,
                                     autoscaled=p.spec.autoscaling is not None))  # fmt: skip
        if (
            observed.active_selector != active
            and ("active", active) not in pointed
            and state.version == version
            and state.available
        ):
            p.actions.append(PointService("active", active))
    preview = status.rollout.color if status.rollout else active
    if (
        preview is not None
        and observed.preview_selector != preview
        and ("preview", preview) not in pointed
    ):
        p.actions.append(PointService("preview", preview))
    busy = {active, status.rollout.color if status.rollout else None}
    busy |= {sd.color for sd in status.scale_downs}
    for color in COLORS:
        if color not in busy and observed.color(color).replicas > 0:
            p.actions.append(ScaleColor(color, 0))


def retrain(p: Pass) -> None:
    """spec.retraining: follow the running Job, start one when a trigger fires, move the alias
    to what it registered (`promote: alias`). Its record stays in the status when the spec
    drops retraining."""
    retraining, seen = p.spec.retraining, p.observed.retraining
    if retraining is None or seen is None:
        return
    decision = decide(retraining, p.status.retraining, seen, p.now)
    p.status.retraining = decision.status
    p.actions.extend(decision.actions)
    if decision.wake_at is not None:
        p.wakeups.append(decision.wake_at)
