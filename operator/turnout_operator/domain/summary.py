"""The status of a pass, computed once at its end: conditions, phase, message, endpoints."""

from __future__ import annotations

from turnout_operator.domain import reasons as R
from turnout_operator.domain.autoscaling import active_replicas
from turnout_operator.domain.plan_state import Pass
from turnout_operator.domain.spec import Phase
from turnout_operator.domain.status import ConditionStatus, set_condition

Verdict = tuple[ConditionStatus, str, str]  # status, reason, message

# Degraded reasons that stay until a promotion or a retry (the others are recomputed each pass).
STICKY_DEGRADED = frozenset({
    R.ABORTED_BY_USER, R.SMOKE_TEST_FAILED, R.PROGRESS_DEADLINE_EXCEEDED, R.CRASH_LOOP,
    R.IMAGE_PULL, R.PREVIEW_FAILED, R.ROLLED_BACK, R.AUTO_ROLLED_BACK, R.ANALYSIS_FAILED,
})  # fmt: skip


def summarize(p: Pass) -> None:
    status, observed, generation = p.status, p.observed, p.observed.generation
    rollout = status.rollout
    status.preview_version = rollout.version if rollout else None
    status.preview_color = rollout.color if rollout else None
    name, namespace = observed.name, observed.namespace
    port = "" if p.spec.service.port == 80 else f":{p.spec.service.port}"
    status.endpoints.active = (
        f"http://{name}.{namespace}.svc{port}" if status.active_color else None
    )
    status.endpoints.preview = (
        f"http://{name}-preview.{namespace}.svc" if status.active_color or rollout else None
    )
    ready = _ready(p)
    reason, message = p.progress
    settled = status.condition(R.PROGRESSING)
    if (
        rollout is None
        and not p.analysing
        and reason == R.NO_ROLLOUT
        and settled is not None
        and settled.status == "False"
        and settled.reason == R.ROLLOUT_COMPLETE
    ):
        message = settled.message  # the last rollout's outcome stands until the next one
    progressing: Verdict = (
        ("True", reason, message)
        if rollout is not None or p.analysing
        else ("False", R.ROLLOUT_COMPLETE if reason == R.NO_ROLLOUT else reason, message)
    )
    degraded = _degraded(p, ready[0] == "True")
    conditions = status.conditions
    for type_, verdict in ((R.READY, ready), (R.PROGRESSING, progressing), (R.DEGRADED, degraded)):
        conditions = set_condition(conditions, type_, *verdict, p.now, generation)
    if p.invalid is None and not any(c.type == R.MODEL_RESOLVED for c in conditions):
        conditions = set_condition(
            conditions, R.MODEL_RESOLVED, "Unknown", "Resolving",
            f"resolving {p.spec.model.reference}", p.now, generation,
        )  # fmt: skip
    status.conditions = conditions
    status.observed_generation = generation
    status.phase, status.message = _phase(p, ready, degraded)


def _ready(p: Pass) -> Verdict:
    status = p.status
    if status.active_color is None or status.active_version is None:
        return ("False", R.NOT_DEPLOYED, "no version is active yet")
    state = p.observed.color(status.active_color)
    if state.version == status.active_version and state.available:
        return (
            "True", R.AVAILABLE,
            f"version {status.active_version} ({status.active_color}): "
            f"{state.available}/{active_replicas(p.spec, state)} pods available",
        )  # fmt: skip
    return (
        "False", R.ACTIVE_UNAVAILABLE,
        f"version {status.active_version} ({status.active_color}) has no pod available",
    )  # fmt: skip


def _degraded(p: Pass, ready: bool) -> Verdict:
    status = p.status
    if p.invalid is not None:
        return ("True", R.INVALID_SPEC, p.invalid)
    if p.degraded is not None:
        return ("True", *p.degraded)
    resolved = status.condition(R.MODEL_RESOLVED)
    if status.active_color is None and resolved is not None and resolved.status == "False":
        return ("True", resolved.reason, resolved.message)
    if status.active_color is not None and not ready:
        return ("True", R.ACTIVE_UNAVAILABLE, "the active version has no pod available")
    previous = status.condition(R.DEGRADED)
    if (
        previous is not None
        and previous.status == "True"
        and not p.healthy_again
        and previous.reason in STICKY_DEGRADED
    ):
        return ("True", previous.reason, previous.message)
    return ("False", R.HEALTHY, "")


def _phase(p: Pass, ready: Verdict, degraded: Verdict) -> tuple[Phase, str]:
    if p.invalid is not None:
        return "Degraded", p.invalid
    if p.spec.paused:
        return "Paused", "spec.paused is true: rollouts are frozen"
    if p.status.rollout is not None or p.analysing:
        return ("Paused" if p.waiting_for_promotion else "Progressing"), p.progress[1]
    if degraded[0] == "True":
        return "Degraded", degraded[2]
    if ready[0] == "True":
        return "Healthy", ready[2]
    return "Pending", ready[2]
