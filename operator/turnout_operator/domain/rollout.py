"""The one rollout: deploy the target to the idle color, wait for it, smoke-test it, analyse it
(mirroring the active color's traffic to it), wait for the promotion gate, scale it up, switch
the active Service; or abort, or give way to a newer version.

Argo Rollouts' blue-green order, with the registry's version as the thing rolled out. The active
Service is only switched here (`switch`) and only once the new color serves the version with all
its replicas available, the smoke test passed and the pre-promotion analysis (gates.py) did, or
was inconclusive and accepted by hand.
"""

from __future__ import annotations

from datetime import timedelta

from turnout_operator.domain import autoscaling, gates
from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import (
    DeployColor,
    PointService,
    RolloutFinished,
    SmokeTest,
    TagVersion,
)
from turnout_operator.domain.observed import Resolved
from turnout_operator.domain.plan_state import Pass
from turnout_operator.domain.spec import Color, other
from turnout_operator.domain.status import Rollout, parse_time, timestamp


def start(p: Pass) -> None:
    """Start rolling out the target version, if it is not the active one."""
    status = p.status
    target = p.target_version()
    if target is None or target == status.active_version:
        return
    first = status.active_color is None
    color: Color = "blue" if status.active_color is None else other(status.active_color)
    gates.stop_post_promotion(p, color, f"version {target} rolls out into {color}")
    for sd in [sd for sd in status.scale_downs if sd.color == color]:
        # The idle color still holds the previous version for instant rollback; the new
        # rollout needs it, so that version is retired now.
        p.drop_scale_down(sd)
        if sd.after == "Promotion":
            p.retire(sd.version, sd.color, "replaced by a newer rollout")
    resolution = p.observed.resolution
    run_id = (
        resolution.run_id
        if isinstance(resolution, Resolved) and resolution.version == target
        else None
    )
    status.rollout = Rollout(
        version=target,
        color=color,
        model_uri=p.uri(target),
        run_id=run_id,
        started_at=timestamp(p.now),
    )
    replicas = autoscaling.full_replicas(p) if first else p.bg.preview_replica_count
    p.actions += [
        DeployColor(color, target, p.uri(target), replicas),
        PointService("preview", color),
        TagVersion(target, "preview"),
    ]
    p.emit(False, R.ROLLOUT_STARTED, f"deploying version {target} to {color}")
    p.notify("rollout.started", target, R.ROLLOUT_STARTED, f"deploying version {target} to {color}")
    advance(p)


def advance(p: Pass) -> None:
    """Move the rollout in progress one step, as far as the observed state allows."""
    status = p.status
    rollout = status.rollout
    assert rollout is not None
    target = p.target_version()
    if target != rollout.version:
        supersede(p, f"version {target} is now desired" if target else "nothing is desired")
        start(p)
        return
    first = status.active_color is None
    # As many pods as the active color runs now (autoscaled, it may grow meanwhile: the
    # preview follows). Nothing to scale up when the preview already runs them all.
    count = autoscaling.full_replicas(p)
    full = first or rollout.scaled_up_at is not None or p.bg.preview_replica_count >= count
    replicas = count if full else p.bg.preview_replica_count
    state = p.observed.color(rollout.color)
    if state.failure is not None and state.version == rollout.version:
        abort(p, *_failure_reason(state.failure, rollout.version, rollout.color))
        return
    if not state.serves(rollout.version, replicas):
        _wait_for_pods(p, rollout, replicas, state.available)
        return
    if rollout.ready_at is None:
        rollout.ready_at = timestamp(p.now)
    if not _smoke_tested(p, rollout):
        return
    if not first and not _analysed(p, rollout):
        return
    if not first and not _promotion_allowed(p, rollout):
        return
    if not full:
        rollout.scaled_up_at = timestamp(p.now)
        p.actions.append(DeployColor(rollout.color, rollout.version, rollout.model_uri, count))
        p.progress = (R.SCALING_UP, f"scaling {rollout.color} to {count}")
        p.wakeups.append(p.after(p.bg.progress_deadline_seconds))
        return
    if not first and not gates.baseline_taken(p, rollout):
        return
    switch(p, rollout)


def _analysed(p: Pass, rollout: Rollout) -> bool:
    """Mirroring runs from the smoke test to the switch; the pre-promotion analysis must pass
    (or, inconclusive, be accepted by turnout.dev/promote); a failed one aborts."""
    verdict, why = gates.pre_promotion(p, rollout)
    if verdict == "failed":
        abort(p, R.ANALYSIS_FAILED, why)
        return False
    gates.keep_mirroring(p, rollout)
    return verdict == "passed"


def _wait_for_pods(p: Pass, rollout: Rollout, replicas: int, available: int) -> None:
    """Not all pods are available yet: keep the Deployment as wanted, or abort at the deadline
    (counted from the start, or from the scale-up)."""
    deadline = parse_time(rollout.scaled_up_at or rollout.started_at) + timedelta(
        seconds=p.bg.progress_deadline_seconds
    )
    if p.now >= deadline:
        abort(
            p,
            R.PROGRESS_DEADLINE_EXCEEDED,
            f"version {rollout.version} ({rollout.color}) did not become available within "
            f"{p.bg.progress_deadline_seconds}s ({available}/{replicas} pods available)",
        )
        return
    p.actions.append(DeployColor(rollout.color, rollout.version, rollout.model_uri, replicas))
    p.wakeups.append(deadline)
    step = R.SCALING_UP if rollout.scaled_up_at else R.WAITING_FOR_PREVIEW
    p.progress = (step, f"{available}/{replicas} pods of version {rollout.version} available")


def _smoke_tested(p: Pass, rollout: Rollout) -> bool:
    """True once the smoke test passed (or is off); asks for one, or aborts when it failed."""
    if not p.bg.smoke_test:
        return True
    smoke = p.observed.smoke
    if rollout.smoke is None and smoke is not None and smoke.version == rollout.version:
        rollout.smoke = "Passed" if smoke.passed else "Failed"
        rollout.smoke_message = smoke.message
    if rollout.smoke is None:
        p.actions.append(SmokeTest(rollout.color, rollout.version))
        p.progress = (R.SMOKE_TESTING, f"smoke-testing version {rollout.version}")
        return False
    if rollout.smoke == "Failed":
        abort(p, R.SMOKE_TEST_FAILED, rollout.smoke_message)
        return False
    return True


def _promotion_allowed(p: Pass, rollout: Rollout) -> bool:
    if rollout.promote:
        return True
    if not p.bg.auto_promotion_enabled:
        p.waiting_for_promotion = True
        p.progress = (
            R.WAITING_FOR_PROMOTION,
            f"version {rollout.version} is ready in preview; "
            "annotate turnout.dev/promote to switch",
        )
        return False
    assert rollout.ready_at is not None
    promote_at = parse_time(rollout.ready_at) + timedelta(seconds=p.bg.auto_promotion_seconds)
    if p.now < promote_at:
        p.wakeups.append(promote_at)
        p.waiting_for_promotion = True
        p.progress = (R.AUTO_PROMOTION_PENDING, f"promoting at {timestamp(promote_at)}")
        return False
    return True


def switch(p: Pass, rollout: Rollout) -> None:
    """Make the rollout's color active; the old color stays warm for `scaleDownDelaySeconds`."""
    status = p.status
    old_version, old_color, old_run = status.active_version, status.active_color, status.run_id
    p.actions += [
        PointService("active", rollout.color),
        PointService("preview", rollout.color),
        TagVersion(rollout.version, "active"),
    ]
    status.active_version, status.active_color = rollout.version, rollout.color
    status.model_uri, status.run_id = rollout.model_uri, rollout.run_id
    status.rollout = None
    gates.rollout_ended(p, rollout, old_color)
    if old_color is not None and old_version is not None:
        p.schedule_scale_down(
            old_color, old_version, p.bg.scale_down_delay_seconds, "Promotion", old_run
        )
    p.record(rollout.version, rollout.color, "Promoted")
    promoted = f"version {rollout.version} ({rollout.color}) is active"
    p.emit(False, R.PROMOTED, promoted)
    p.notify("rollout.promoted", rollout.version, R.PROMOTED, promoted)
    p.actions.append(RolloutFinished("promoted", p.elapsed(rollout)))
    p.progress = (R.ROLLOUT_COMPLETE, f"version {rollout.version} promoted")
    gates.start_post_promotion(p, rollout, old_version, old_color)
    # Promoting the last good version while the desired one is rejected (a rollback by
    # redeploy) ends Degraded like a warm rollback: what serves is not what the spec asks for.
    p.healthy_again = p.desired_version() not in status.rejected_versions


def abort(p: Pass, reason: str, message: str) -> None:
    """Reject the version; the active Service is left alone, the preview scaled down later."""
    status = p.status
    rollout = status.rollout
    assert rollout is not None
    status.rollout = None
    gates.rollout_ended(p, rollout, status.active_color)
    p.reject(rollout.version, reason, message)
    p.record(rollout.version, rollout.color, "Aborted", message)
    p.schedule_scale_down(
        rollout.color, rollout.version, p.bg.abort_scale_down_delay_seconds, "Abort"
    )
    if status.active_color is not None:
        p.actions.append(PointService("preview", status.active_color))
    p.emit(True, reason, message)
    p.notify("rollout.aborted", rollout.version, reason, message)
    p.actions.append(RolloutFinished("aborted", p.elapsed(rollout)))
    p.progress = (reason, message)


def supersede(p: Pass, why: str) -> None:
    """End the rollout without rejecting its version: a newer one (or none) is wanted. Its
    color is reused at once by the next rollout, or scaled down as an idle color."""
    status = p.status
    rollout = status.rollout
    assert rollout is not None
    status.rollout = None
    gates.rollout_ended(p, rollout, status.active_color)
    p.record(rollout.version, rollout.color, "Superseded", why)
    if status.active_color is not None:
        p.actions.append(PointService("preview", status.active_color))
    p.emit(False, R.SUPERSEDED, f"rollout of {rollout.version} stopped: {why}")
    p.actions.append(RolloutFinished("superseded", p.elapsed(rollout)))


def _failure_reason(failure: str, version: str, color: Color) -> tuple[str, str]:
    message = f"version {version} ({color}) pods are failing: {failure}"
    reason = failure.split(":", 1)[0]  # what follows is the container's own message
    if "CrashLoop" in reason:
        return R.CRASH_LOOP, message
    if "Image" in reason:
        return R.IMAGE_PULL, message
    return R.PREVIEW_FAILED, message
