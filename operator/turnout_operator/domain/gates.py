"""The analysis gates of a rollout, as planner steps: mirroring and the pre-promotion analysis
between the smoke test and the promotion gate, the old color's latency before the switch, and
the post-promotion analysis while the old color is warm.

Each step asks for what it needs as actions (`StartShadow`, `StopShadow`, `Measure`) and reads
what a `Measure` brought back from `Observed.measurement` in the next pass of the same
reconcile. The verdicts live in the status (`rollout.prePromotionAnalysis`,
`postPromotionAnalysis`), so an operator restarted mid-analysis resumes it. What a verdict does
to the rollout (abort, pause, roll back) is the caller's: rollout.py and rollback.py.

Mirroring is leased: every pass of a rollout that mirrors asks again (`StartShadow` with
SHADOW_LEASE_SECONDS), so pods whose operator stopped asking stop mirroring by themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import (
    AnalysisFinished,
    Gate,
    Measure,
    StartShadow,
    StopShadow,
)
from turnout_operator.domain.analysis import (
    Evaluation,
    Measurement,
    assess,
    evaluate_post,
    evaluate_pre,
    next_measurement_at,
    record,
)
from turnout_operator.domain.plan_state import Pass
from turnout_operator.domain.spec import Color
from turnout_operator.domain.status import (
    AnalysisRun,
    PostPromotionRun,
    PrePromotionRecord,
    Rollout,
    parse_time,
    timestamp,
)

SHADOW_LEASE_SECONDS = 120
SHADOW_RENEW_SECONDS = 40  # a pass at least this often while mirroring renews the lease
_MEASUREMENT_REASONS = {
    "Successful": R.MEASUREMENT_SUCCESSFUL, "Failed": R.MEASUREMENT_FAILED,
    "Inconclusive": R.MEASUREMENT_INCONCLUSIVE, "Error": R.MEASUREMENT_ERROR,
}  # fmt: skip
_NAMES: dict[Gate, str] = {
    "PrePromotion": "pre-promotion",
    "PostPromotion": "post-promotion",
    "Baseline": "baseline",
}
PreVerdict = Literal["passed", "waiting", "failed"]


# --- mirroring --------------------------------------------------------------------------------


def keep_mirroring(p: Pass, rollout: Rollout) -> None:
    """While the preview waits for the switch, the active color mirrors to it (spec.shadow);
    the lease is renewed on every pass. Shadow removed from the spec: mirroring stops."""
    active, shadow = p.status.active_color, p.bg.shadow
    if active is None:
        return
    if shadow is None:
        stop_mirroring(p, rollout, active)
        return
    p.actions.append(
        StartShadow(active, rollout.color, shadow.percent, shadow.max_requests_per_second,
                    SHADOW_LEASE_SECONDS)
    )  # fmt: skip
    rollout.mirroring = True
    p.wakeups.append(p.after(SHADOW_RENEW_SECONDS))


def stop_mirroring(p: Pass, rollout: Rollout, color: Color | None) -> None:
    """The rollout ends (or stops mirroring): the color that mirrored stops."""
    if rollout.mirroring and color is not None:
        p.actions.append(StopShadow(color))
    rollout.mirroring = False


def rollout_ended(p: Pass, rollout: Rollout, mirroring_color: Color | None) -> None:
    """The rollout is over (promoted, aborted, superseded): mirroring stops, and its
    pre-promotion analysis, if it had one, is kept in the status with its figures."""
    stop_mirroring(p, rollout, mirroring_color)
    run = rollout.pre_promotion_analysis
    if run is not None:
        p.status.last_pre_promotion_analysis = PrePromotionRecord(
            **run.model_dump(), version=rollout.version, color=rollout.color
        )


# --- one measurement step, shared by both gates -----------------------------------------------


def _step(
    p: Pass, run: AnalysisRun, measure: Measure, interval: int,
    evaluate: Callable[[Measurement], Evaluation], limits: tuple[int, int, int | None],
    terminating: bool,
) -> None:  # fmt: skip
    """Take the measurement that is due (ask for it, or count the one that came back), then
    assess the run; wake up when the next one is due."""
    due = next_measurement_at(run, interval)
    if p.now >= due:
        m = p.observed.measurement
        if m is None or m.gate != measure.gate or m.version != measure.version:
            p.actions.append(measure)
            return
        entry = record(run, evaluate(m), m.at)
        name = _NAMES[measure.gate]
        p.emit(
            entry.verdict != "Successful", _MEASUREMENT_REASONS[entry.verdict],
            f"{name} measurement of version {measure.version}: {entry.verdict}: {entry.message}",
        )  # fmt: skip
        due = next_measurement_at(run, interval)
    phase, why = assess(run, *limits, terminating=terminating)
    if phase == "Running":
        p.wakeups.append(due)
        return
    run.phase, run.message = phase, why
    p.actions.append(AnalysisFinished(measure.gate, phase))


def _last_message(run: AnalysisRun, verdict: str) -> str:
    """The reasons of the newest measurement with this verdict."""
    return next((m.message for m in reversed(run.measurements) if m.verdict == verdict), "")


# --- before the switch ------------------------------------------------------------------------


def pre_promotion(p: Pass, rollout: Rollout) -> tuple[PreVerdict, str]:
    """Where the pre-promotion analysis stands: passed (on to the promotion gate), waiting
    (measuring, or paused on an inconclusive verdict until turnout.dev/promote), failed (with
    the figures, for the abort)."""
    analysis = p.bg.analysis
    conditions = analysis.pre_promotion if analysis else None
    active = p.status.active_color
    if conditions is None or active is None:
        return "passed", ""
    run, version = rollout.pre_promotion_analysis, rollout.version
    if run is None:
        run = rollout.pre_promotion_analysis = AnalysisRun(started_at=timestamp(p.now))
        p.emit(False, R.ANALYSIS_STARTED,
               f"pre-promotion analysis of version {version}: {conditions.count} measurements, "
               f"one every {conditions.interval_seconds}s")  # fmt: skip
    if run.phase == "Running":
        query = conditions.provider.prometheus if conditions.provider else None
        _step(
            p, run, Measure("PrePromotion", version, (active, rollout.color), query),
            conditions.interval_seconds,
            lambda m: evaluate_pre(conditions, m, active, rollout.color),
            (conditions.failure_limit, conditions.inconclusive_limit, conditions.count),
            terminating=False,
        )  # fmt: skip
        if run.phase == "Inconclusive":
            rollout.promote = False  # only a promote given after this verdict accepts it
            p.emit(True, R.ANALYSIS_INCONCLUSIVE,
                   f"pre-promotion analysis of version {version} is inconclusive: "
                   f"{_last_message(run, 'Inconclusive')}")  # fmt: skip
        elif run.phase == "Successful":
            p.emit(False, R.ANALYSIS_SUCCESSFUL,
                   f"pre-promotion analysis of version {version}: {run.message}")  # fmt: skip
    if run.phase == "Successful":
        return "passed", ""
    if run.phase in ("Failed", "Error"):
        last = _last_message(run, "Failed" if run.phase == "Failed" else "Error")
        return "failed", (
            f"pre-promotion analysis of version {version} ({rollout.color}) failed: "
            f"{run.message}; last: {last}"
        )
    if run.phase == "Inconclusive":
        if rollout.promote:
            return "passed", ""
        p.waiting_for_promotion = True
        p.progress = (
            R.ANALYSIS_INCONCLUSIVE,
            f"pre-promotion analysis of version {version} is inconclusive "
            f"({_last_message(run, 'Inconclusive')}): annotate turnout.dev/promote to promote "
            "it, turnout.dev/abort to abort",
        )
        return "waiting", ""
    taken = run.taken
    p.progress = (
        R.PRE_PROMOTION_ANALYSIS,
        f"pre-promotion analysis of version {version}: {taken}/{conditions.count} measurements "
        f"({run.successful} successful); next at "
        f"{timestamp(next_measurement_at(run, conditions.interval_seconds))}",
    )
    return "waiting", ""


def baseline_taken(p: Pass, rollout: Rollout) -> bool:
    """A post-promotion p99 ratio needs the old color's p99 from just before the switch: the
    pre-promotion analysis's last reading of it, or one measurement of the active color now."""
    analysis = p.bg.analysis
    post = analysis.post_promotion if analysis else None
    active, version = p.status.active_color, p.status.active_version
    if (
        post is None
        or post.p99_latency_ratio_max is None
        or rollout.baseline_at is not None
        or active is None
        or version is None
    ):
        return True
    run = rollout.pre_promotion_analysis
    last = run.measurements[-1] if run and run.measurements else None
    if last is not None and "activeP99LatencySeconds" in last.values:
        rollout.baseline_p99_seconds = last.values["activeP99LatencySeconds"]
        rollout.baseline_at = last.at
        return True
    m = p.observed.measurement
    if m is not None and m.gate == "Baseline" and m.version == version:
        figures = m.color(active)
        enough = m.error is None and figures.requests >= post.min_requests
        rollout.baseline_p99_seconds = figures.p99_seconds if enough else None
        rollout.baseline_at = timestamp(m.at)
        return True
    p.actions.append(Measure("Baseline", version, (active,)))
    p.progress = (
        R.MEASURING_BASELINE,
        f"measuring the latency of version {version} ({active}) before the switch",
    )
    return False


# --- after the switch -------------------------------------------------------------------------


def start_post_promotion(
    p: Pass, rollout: Rollout, previous_version: str | None, previous_color: Color | None
) -> None:
    """At the switch: the post-promotion analysis of the new active version starts (when
    asked for, and when there is an old color to go back to)."""
    analysis = p.bg.analysis
    post = analysis.post_promotion if analysis else None
    p.status.post_promotion_analysis = None
    if post is None or previous_version is None or previous_color is None:
        return
    window = p.bg.post_window_seconds
    p.status.post_promotion_analysis = PostPromotionRun(
        started_at=timestamp(p.now), version=rollout.version, color=rollout.color,
        previous_version=previous_version, previous_color=previous_color,
        ends_at=timestamp(p.after(window)), baseline_p99_seconds=rollout.baseline_p99_seconds,
    )  # fmt: skip
    p.emit(False, R.ANALYSIS_STARTED,
           f"post-promotion analysis of version {rollout.version}: one measurement every "
           f"{post.interval_seconds}s for {window}s")  # fmt: skip
    run = p.status.post_promotion_analysis
    p.analysing, p.held_color = True, previous_color
    p.wakeups.append(next_measurement_at(run, post.interval_seconds))
    p.progress = (R.POST_PROMOTION_ANALYSIS, _post_progress(run))


def post_promotion(p: Pass) -> PostPromotionRun | None:
    """Advance the post-promotion analysis; the run when it has failed (the caller rolls
    back), None otherwise. While it runs, or is inconclusive and not accepted, the old color
    is held warm (`p.held_color`) and the phase says so."""
    status = p.status
    run = status.post_promotion_analysis
    if run is None or run.phase not in ("Running", "Inconclusive") or run.accepted:
        return None  # none, or decided: kept as a record until the next switch
    analysis = p.bg.analysis
    post = analysis.post_promotion if analysis else None
    if status.active_version != run.version or status.active_color != run.color or post is None:
        status.post_promotion_analysis = None  # rolled back, or no longer asked for
        return None
    if run.phase == "Running":
        terminating = p.now >= parse_time(run.ends_at)
        _step(
            p, run, Measure("PostPromotion", run.version, (run.color,),
                            post.provider.prometheus if post.provider else None),
            post.interval_seconds,
            lambda m: evaluate_post(post, m, run.color, run.baseline_p99_seconds),
            (post.failure_limit, post.inconclusive_limit, post.count), terminating,
        )  # fmt: skip
        if run.phase == "Running" and not terminating:
            p.wakeups.append(parse_time(run.ends_at))
        if run.phase == "Successful":
            p.emit(False, R.ANALYSIS_SUCCESSFUL,
                   f"post-promotion analysis of version {run.version}: {run.message}")  # fmt: skip
            return None
        if run.phase == "Inconclusive":
            p.emit(True, R.ANALYSIS_INCONCLUSIVE,
                   f"post-promotion analysis of version {run.version} is inconclusive: "
                   f"{_last_message(run, 'Inconclusive')}")  # fmt: skip
    if run.phase in ("Failed", "Error"):
        return run
    p.analysing = True
    p.held_color = run.previous_color
    if run.phase == "Inconclusive":
        p.waiting_for_promotion = True
        p.progress = (
            R.ANALYSIS_INCONCLUSIVE,
            f"post-promotion analysis of version {run.version} is inconclusive "
            f"({_last_message(run, 'Inconclusive')}); version {run.previous_version} stays "
            "warm: annotate turnout.dev/promote to keep the new version, turnout.dev/rollback "
            "to go back",
        )
        return None
    p.progress = (R.POST_PROMOTION_ANALYSIS, _post_progress(run))
    return None


def _post_progress(run: PostPromotionRun) -> str:
    return (
        f"post-promotion analysis of version {run.version}: {run.taken} measurements "
        f"({run.successful} successful) until {run.ends_at}"
    )


def stop_post_promotion(p: Pass, color: Color, why: str) -> None:
    """A newer rollout takes the old color the post-promotion analysis would roll back to:
    the analysis ends (superseded, like the rollout of a version nobody wants any more)."""
    run = p.status.post_promotion_analysis
    if run is None or run.previous_color != color or run.phase not in ("Running", "Inconclusive"):
        return
    p.status.post_promotion_analysis = None
    p.analysing, p.held_color, p.waiting_for_promotion = False, None, False
    p.emit(False, R.SUPERSEDED, f"post-promotion analysis of version {run.version} stopped: {why}")


def accept_post_promotion(p: Pass) -> bool:
    """turnout.dev/promote with no rollout: accept an inconclusive post-promotion verdict."""
    run = p.status.post_promotion_analysis
    if (
        run is None
        or run.phase != "Inconclusive"
        or run.accepted
        or p.status.active_version != run.version
    ):
        return False
    run.accepted = True
    return True


def post_failure_message(run: PostPromotionRun) -> str:
    last = _last_message(run, "Failed" if run.phase == "Failed" else "Error")
    return (
        f"post-promotion analysis of version {run.version} ({run.color}) failed: "
        f"{run.message}; last: {last}"
    )
