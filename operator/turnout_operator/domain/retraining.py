"""When to retrain: `decide(retraining, status, seen, now) -> Decision`.

A pure function of the spec, the figures the adapters read (the active version's drift and live
quality, the training run's own error, the running Job's state, the annotation) and the clock
passed in. It keeps the triggers' memory in `status.retraining` (since when drift has stayed
above its bound, the schedule's last due time acted on) and says what to do: start a Job, record
how the running one ended, or nothing.

Rules (property tests in tests/unit/test_retraining_properties.py):
- never a second Job while one runs: a trigger, the schedule or the annotation waits for it;
- no trigger within `cooldownSeconds` of the end of the last retraining (of its start while it
  had not ended), so a failed Job is not retried in a loop; only the annotation
  `turnout.dev/retrain=now` starts one sooner;
- no trigger on too little data: quality needs `minLabelledRows` labelled rows, drift a window of
  `minRows` rows for the whole `forSeconds`; a reading with fewer rows restarts the clock;
- no automatic trigger while a rollout is in progress (the figures are of a version on its way
  out) or the ModelDeployment is paused; a schedule due time that finds a Job running, the
  cooldown not over or a rollout in progress is skipped, as a CronJob with
  `concurrencyPolicy: Forbid` skips it;
- with `promote: alias`, a Job that succeeded leaves its promotion Pending until the adapters
  read the version it registered (`Seen.retrained`); the alias moves to it only when its
  evaluation beats the serving version's (`compare`), once.

It must never do I/O or read the clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from croniter import croniter

from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import (
    Action,
    Emit,
    MoveAlias,
    Notify,
    RemoveAnnotation,
    RetrainingCounted,
    StartRetraining,
)
from turnout_operator.domain.spec import RETRAIN, Retraining
from turnout_operator.domain.status import (
    RetrainingReason,
    RetrainingRecord,
    RetrainingStatus,
    parse_time,
    timestamp,
)

JOB_NAME_MAX = 63  # the Job controller labels its pods with the Job's name: a label value
RUNNING_RECHECK_SECONDS = 30  # how often a running Job is read again when no watch says more

PROMOTION_RECHECK_SECONDS = 10  # how soon a Pending promotion asks the registry again
# Evaluation metrics compared for `promote: alias`, in order of preference, and which way is
# better; `champion_<metric>` is the serving version scored by the trainer on the same holdout.
EVALUATION_METRICS = (("mae", -1), ("rmse", -1), ("accuracy", 1), ("r2", 1))

JobState = Literal["Running", "Succeeded", "Failed", "Missing"]


@dataclass(frozen=True)
class Retrained:
    """The version a succeeded Job registered (tagged with its name), with its run's metrics
    and the serving version's run's; `version` None: the Job registered none."""

    version: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    serving_metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    better: bool
    why: str  # one line for people, with the figures


@dataclass(frozen=True)
class Seen:
    """What the adapters read for the retraining decision. Figures are the active version's;
    None: no reading (no pod, no feedback, no training metric logged)."""

    name: str = "model"
    alias: str | None = None  # spec.model.alias: what `promote: alias` moves
    active_version: str | None = None
    rollout_in_progress: bool = False  # or paused: no automatic trigger
    drift_psi: float | None = None
    drift_rows: int = 0
    quality_error: float | None = None  # live MAE, or 1 - live accuracy
    quality_rows: int = 0  # labelled rows behind it
    training_error: float | None = None  # the training run's `mae`, or 1 - its `accuracy`
    annotation: str | None = None  # the value of turnout.dev/retrain, when set
    job: JobState | None = None  # the latest retraining's Job as read; None: not read
    job_message: str = ""  # why it failed, as the Job's condition says
    retrained: Retrained | None = None  # read only while a promotion is Pending


@dataclass(frozen=True)
class Decision:
    status: RetrainingStatus
    actions: tuple[Action, ...]
    wake_at: datetime | None  # when a trigger may next become due (cooldown, drift, schedule)


def job_name(name: str, number: int) -> str:
    """`<name>-retrain-<n>`, with the name shortened (and told apart by a hash) when the whole
    would pass 63 characters."""
    whole = f"{name}-retrain-{number}"
    if len(whole) <= JOB_NAME_MAX:
        return whole
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    suffix = f"-{digest}-retrain-{number}"
    return name[: JOB_NAME_MAX - len(suffix)].rstrip("-.") + suffix


def decide(
    spec: Retraining, status: RetrainingStatus | None, seen: Seen, now: datetime
) -> Decision:
    d = _Deciding(spec, status or RetrainingStatus(), seen, now)
    d.follow_job()
    d.promote()
    d.track_drift()
    d.trigger()
    return Decision(d.status, tuple(d.actions), min(d.wakeups, default=None))


class _Deciding:
    def __init__(
        self, spec: Retraining, status: RetrainingStatus, seen: Seen, now: datetime
    ) -> None:
        self.spec, self.seen, self.now = spec, seen, now
        self.status = status.model_copy(deep=True)
        self.actions: list[Action] = []
        self.wakeups: list[datetime] = []

    @property
    def running(self) -> bool:
        last = self.status.last
        return last is not None and last.state == "Running"

    def follow_job(self) -> None:
        """Record how the running Job ended, once."""
        last, job = self.status.last, self.seen.job
        if last is None or last.state != "Running" or job is None or job == "Running":
            if self.running:
                self.wakeups.append(self.now + timedelta(seconds=RUNNING_RECHECK_SECONDS))
            return
        ok = job == "Succeeded"
        message = (
            f"Job {last.job_name} succeeded"
            if ok
            else f"Job {last.job_name} failed: "
            + (self.seen.job_message or "it was deleted before it ended" if job == "Missing"
               else self.seen.job_message or "it failed")
        )  # fmt: skip
        pending = ok and self.spec.promote == "alias"
        self.status.last = last.model_copy(
            update={
                "state": "Succeeded" if ok else "Failed",
                "finished_at": timestamp(self.now),
                "message": message,
                "promotion": "Pending" if pending else None,
            }
        )
        reason = R.RETRAINING_SUCCEEDED if ok else R.RETRAINING_FAILED
        self.actions.append(Emit("Normal" if ok else "Warning", reason, message))
        self.actions.append(
            Notify(
                "retraining.finished" if ok else "retraining.failed",
                last.version or "",
                reason,
                message,
                timestamp(self.now),
            )
        )
        self.actions.append(RetrainingCounted(last.reason, "succeeded" if ok else "failed"))

    def promote(self) -> None:
        """`promote: alias`: once the version the Job registered is read, move the alias to it
        if it beats the serving version, and say why either way."""
        last = self.status.last
        if last is None or last.promotion != "Pending":
            return
        retrained, alias = self.seen.retrained, self.seen.alias
        if retrained is None or alias is None:
            self.wakeups.append(self.now + timedelta(seconds=PROMOTION_RECHECK_SECONDS))
            return
        if retrained.version is None:
            verdict = Comparison(False, f"Job {last.job_name} registered no version tagged "
                                        f"{RETRAINING_JOB_TAG}={last.job_name}")  # fmt: skip
        else:
            verdict = compare(retrained.metrics, retrained.serving_metrics)
        promoted = verdict.better and retrained.version is not None
        update = {"promotion": "Promoted" if promoted else "Kept",
                  "registered_version": retrained.version}  # fmt: skip
        self.status.last = last.model_copy(update=update)
        if promoted and retrained.version is not None:
            message = f"version {retrained.version} moved to @{alias}: {verdict.why}"
            self.actions.append(MoveAlias(alias, retrained.version))
            self.actions.append(Emit("Normal", R.RETRAINED_PROMOTED, message))
        else:
            version = retrained.version or "none"
            message = f"version {version} not promoted, @{alias} stays: {verdict.why}"
            self.actions.append(Emit("Normal", R.RETRAINED_KEPT, message))
        self.actions.append(RetrainingCounted(last.reason, "promoted" if promoted else "kept"))

    def track_drift(self) -> None:
        """Since when drift has stayed above the bound, on windows with enough rows."""
        drift = self.spec.triggers.drift
        seen = self.seen
        above = (
            drift is not None
            and seen.drift_psi is not None
            and seen.drift_rows >= drift.min_rows
            and seen.drift_psi > drift.psi_above
        )
        if not above:
            self.status.drift_above_since = None
        elif self.status.drift_above_since is None:
            self.status.drift_above_since = timestamp(self.now)

    def trigger(self) -> None:
        due = self._schedule_due()
        if self.seen.annotation is not None:
            self._requested()
            return
        if self.running or self.seen.rollout_in_progress:
            return
        cooldown_end = self._cooldown_end()
        if cooldown_end is not None and self.now < cooldown_end:
            self.wakeups.append(cooldown_end)
            return
        for found in (self._quality(), self._drift(), ("Schedule", {}) if due else None):
            if found is not None:
                reason, figures = found
                self._start(reason, figures)
                return

    def _requested(self) -> None:
        if self.seen.annotation != "now":
            self.actions.append(RemoveAnnotation(RETRAIN))
            self.actions.append(
                Emit(
                    "Warning",
                    R.ANNOTATION_IGNORED,
                    f"{RETRAIN}={self.seen.annotation!r} ignored: the only value is 'now'",
                )
            )
            return
        if self.running:  # the annotation stays: it starts one once this Job has ended
            return
        self.actions.append(RemoveAnnotation(RETRAIN))
        self._start("Requested", {})

    def _cooldown_end(self) -> datetime | None:
        last = self.status.last
        if last is None:
            return None
        since = parse_time(last.finished_at or last.started_at)
        return since + timedelta(seconds=self.spec.cooldown_seconds)

    def _quality(self) -> tuple[RetrainingReason, dict[str, float]] | None:
        quality, seen = self.spec.triggers.quality, self.seen
        if quality is None or seen.quality_error is None:
            return None
        if seen.quality_rows < quality.min_labelled_rows:
            return None
        figures = {"liveError": seen.quality_error, "labelledRows": float(seen.quality_rows)}
        if quality.max_absolute is not None:
            bound = quality.max_absolute
        else:
            if seen.training_error is None:
                return None
            factor = quality.max_relative_to_training or 0.0
            bound = factor * seen.training_error
            figures["trainingError"] = seen.training_error
        figures["bound"] = bound
        return ("Quality", figures) if seen.quality_error > bound else None

    def _drift(self) -> tuple[RetrainingReason, dict[str, float]] | None:
        drift, since = self.spec.triggers.drift, self.status.drift_above_since
        if drift is None or since is None or self.seen.drift_psi is None:
            return None
        lasted = (self.now - parse_time(since)).total_seconds()
        if lasted < drift.for_seconds:
            self.wakeups.append(parse_time(since) + timedelta(seconds=drift.for_seconds))
            return None
        return "Drift", {
            "psi": self.seen.drift_psi,
            "driftRows": float(self.seen.drift_rows),
            "aboveSeconds": lasted,
            "bound": drift.psi_above,
        }

    def _schedule_due(self) -> bool:
        """True when a due time of the schedule passed since the last one acted on; the first
        look only remembers the latest due time (a new schedule does not fire for the past)."""
        schedule = self.spec.triggers.schedule
        if schedule is None:
            self.status.schedule_due_at = None
            return False
        # croniter's previous time is strictly before its start: a due time of now counts
        latest: datetime = croniter(schedule, self.now + timedelta(seconds=1)).get_prev(datetime)
        self.wakeups.append(croniter(schedule, self.now).get_next(datetime))
        before = self.status.schedule_due_at
        self.status.schedule_due_at = timestamp(latest)
        return before is not None and parse_time(before) < latest

    def _start(self, reason: RetrainingReason, figures: dict[str, float]) -> None:
        status = self.status
        number = status.started + 1
        name = job_name(self.seen.name, number)
        if status.last is not None:
            history = [status.last, *status.history]
            status.history = history[: max(self.spec.history_limit - 1, 0)]
        status.last = RetrainingRecord(
            job_name=name,
            reason=reason,
            state="Running",
            started_at=timestamp(self.now),
            version=self.seen.active_version,
            figures=figures,
        )
        status.started = number
        status.drift_above_since = None
        message = f"Job {name} started: {describe(reason, figures)}"
        self.actions.append(StartRetraining(name, reason, self.seen.active_version, figures))
        self.actions.append(Emit("Normal", R.RETRAINING_STARTED, message))
        self.actions.append(
            Notify(
                "retraining.started",
                self.seen.active_version or "",
                R.RETRAINING_STARTED,
                message,
                timestamp(self.now),
            )
        )
        self.actions.append(RetrainingCounted(reason, "started"))
        self.wakeups.append(self.now + timedelta(seconds=RUNNING_RECHECK_SECONDS))


RETRAINING_JOB_TAG = "turnout.retraining.job"


def compare(new: Mapping[str, float], serving: Mapping[str, float]) -> Comparison:
    """Whether the new version's evaluation beats the serving one's: the first metric of
    EVALUATION_METRICS the new run logged, against the serving version scored on the same
    holdout (`champion_<metric>` in the new run) or, failing that, the serving run's own.
    Strictly better only: a tie keeps the serving version."""
    for metric, sign in EVALUATION_METRICS:
        if metric not in new:
            continue
        baseline = new.get(f"champion_{metric}", serving.get(metric))
        if baseline is None:
            return Comparison(False, f"no {metric} of the serving version to compare with")
        better = sign * (new[metric] - baseline) > 0
        word = "beats" if better else "does not beat"
        return Comparison(better, f"{metric} {new[metric]:.4g} {word} {baseline:.4g}")
    names = ", ".join(m for m, _ in EVALUATION_METRICS)
    return Comparison(False, f"its run logged none of {names}")


def describe(reason: RetrainingReason, figures: dict[str, float]) -> str:
    if reason == "Requested":
        return f"asked for by {RETRAIN}=now"
    if reason == "Schedule":
        return "the schedule is due"
    if reason == "Quality":
        return (
            f"live error {figures['liveError']:.4g} > {figures['bound']:.4g} over "
            f"{figures['labelledRows']:.0f} labelled rows"
        )
    return (
        f"prediction drift PSI {figures['psi']:.4g} > {figures['bound']:.4g} for "
        f"{figures['aboveSeconds']:.0f} s"
    )
