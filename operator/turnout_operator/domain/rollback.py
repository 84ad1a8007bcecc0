"""After a switch: the old color waits warm for `scaleDownDelaySeconds`. If the newly active pods
fail inside that window, or its post-promotion analysis fails, the Service goes back at once
(automatic rollback); the `turnout.dev/rollback` annotation does the same by hand, or redeploys
the last good version once the old color is gone. When the window ends the old color is scaled
to zero and its version retired (not while a post-promotion analysis still runs, or waits for a
decision on an inconclusive verdict); an aborted preview is scaled down the same way after
`abortScaleDownDelaySeconds`.
"""

from __future__ import annotations

from turnout_operator.domain import gates
from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import PointService, RolloutFinished, ScaleColor, TagVersion
from turnout_operator.domain.plan_state import Pass, last_good_version
from turnout_operator.domain.rollout import supersede
from turnout_operator.domain.spec import Color
from turnout_operator.domain.status import ScaleDown, parse_time


def settle_scale_downs(p: Pass) -> None:
    status = p.status
    for sd in list(status.scale_downs):
        due = parse_time(sd.at)
        in_use = sd.color == status.active_color or (
            status.rollout is not None and status.rollout.color == sd.color
        )
        held = sd.after == "Promotion" and sd.color == p.held_color
        if in_use:
            p.drop_scale_down(sd)
        elif sd.after == "Promotion" and (p.now < due or held) and _active_failing(p):
            _auto_rollback(p, sd)
        elif held:
            continue  # the post-promotion analysis may still need it
        elif p.now >= due:
            p.actions.append(ScaleColor(sd.color, 0))
            p.drop_scale_down(sd)
            if sd.after == "Promotion":
                p.retire(sd.version, sd.color)
            p.emit(False, R.SCALED_DOWN, f"{sd.color} (version {sd.version}) scaled to 0")
        else:
            p.wakeups.append(due)


def post_promotion_analysis(p: Pass) -> None:
    """Advance the post-promotion analysis; a failed one rolls back like a failing pod does:
    through the warm old color, or by redeploying the last good version when it is gone."""
    run = gates.post_promotion(p)
    if run is None:
        return
    message = gates.post_failure_message(run)
    warm = next(
        (sd for sd in p.status.scale_downs
         if sd.color == run.previous_color and sd.version == run.previous_version
         and sd.after == "Promotion"),
        None,
    )  # fmt: skip
    state = p.observed.color(run.previous_color)
    if warm is not None and state.version == warm.version and state.available:
        message += f"; switched back to version {warm.version} ({warm.color})"
        _switch_back(p, warm, run.color, run.version, R.ANALYSIS_FAILED, message)
        p.reject(run.version, R.ANALYSIS_FAILED, message)
        return
    _count_rollback(p, run.version, run.color)
    p.reject(run.version, R.ANALYSIS_FAILED, message)
    good = last_good_version(p.status)
    then = f"redeploying version {good}" if good else "no earlier good version to go back to"
    message = f"{message}; the old color is no longer warm: {then}"
    p.emit(True, R.ANALYSIS_FAILED, message)
    p.notify("rollout.rolled_back", run.version, R.ANALYSIS_FAILED, message)


def _active_failing(p: Pass) -> bool:
    """The active color's pods are crash-looping, or none is available."""
    if p.status.active_color is None:
        return False
    state = p.observed.color(p.status.active_color)
    return state.failure is not None or state.available == 0


def _auto_rollback(p: Pass, warm: ScaleDown) -> None:
    state = p.observed.color(warm.color)
    if state.version != warm.version or not state.available:
        return  # nothing warm to go back to; Ready=False tells the story
    failed, color = p.status.active_version, p.status.active_color
    assert failed is not None and color is not None
    failure = p.observed.color(color).failure or "no pod available"
    message = (
        f"version {failed} ({color}) failed after promotion ({failure}); "
        f"switched back to version {warm.version} ({warm.color})"
    )
    _switch_back(p, warm, color, failed, R.AUTO_ROLLED_BACK, message)  # traffic first
    p.reject(failed, R.AUTO_ROLLED_BACK, message)


def rollback(p: Pass) -> None:
    """The `turnout.dev/rollback` annotation: back to the last good version."""
    status = p.status
    active, good = status.active_version, last_good_version(status)
    if active is None or status.active_color is None or good is None:
        p.emit(False, R.ANNOTATION_IGNORED, "rollback: no earlier good version")
        return
    if status.rollout is not None:
        supersede(p, "a rollback was requested")
    failed_color = status.active_color
    message = f"version {active} rolled back to {good} by the turnout.dev/rollback annotation"
    warm = next(
        (sd for sd in status.scale_downs if sd.version == good and sd.after == "Promotion"),
        None,
    )
    state = p.observed.color(warm.color) if warm else None
    if warm is not None and state is not None and state.version == good and state.available:
        _switch_back(p, warm, failed_color, active, R.ROLLED_BACK, message)
        p.reject(active, R.ROLLED_BACK, message)
    else:
        # Rejecting the active version makes the last good one the target: a normal rollout.
        _count_rollback(p, active, failed_color)
        p.reject(active, R.ROLLED_BACK, message)
        message = f"{message}; {good} is no longer warm: redeploying it"
        p.emit(True, R.ROLLED_BACK, message)
        p.notify("rollout.rolled_back", active, R.ROLLED_BACK, message)


def _switch_back(
    p: Pass, warm: ScaleDown, failed_color: Color, failed: str, reason: str, message: str
) -> None:
    """Point the active Service back at the still-warm previous color."""
    status = p.status
    p.actions += [
        PointService("active", warm.color),
        PointService("preview", warm.color),
        TagVersion(warm.version, "active"),
    ]
    p.drop_scale_down(warm)
    _count_rollback(p, failed, failed_color)
    p.close(failed, failed_color, "RolledBack", message)
    p.record(warm.version, warm.color, "Promoted", f"restored by {reason}")
    status.active_version, status.active_color = warm.version, warm.color
    status.model_uri, status.run_id = p.uri(warm.version), warm.run_id
    p.schedule_scale_down(failed_color, failed, p.bg.abort_scale_down_delay_seconds, "Abort")
    p.emit(True, reason, message)
    p.notify("rollout.rolled_back", failed, reason, message)


def _count_rollback(p: Pass, failed: str, color: Color) -> None:
    """The rollout that promoted `failed` ends as rolled_back, timed from its promotion."""
    promoted = next(
        (e.promoted_at for e in p.status.history
         if e.version == failed and e.color == color and e.retired_at is None and e.promoted_at),
        None,
    )  # fmt: skip
    seconds = (p.now - parse_time(promoted)).total_seconds() if promoted else 0.0
    p.actions.append(RolloutFinished("rolled_back", seconds))
