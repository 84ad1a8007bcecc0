"""The working state of one planning pass, and the small helpers every step shares.

`plan()` builds one `Pass`, hands it to each step in turn (annotations, resolution, scale-downs,
rollout, Services, status) and turns it into a `Plan`. The pass edits a deep copy of the observed
status; the observed values themselves are never changed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import Action, Emit, Notify, TagVersion
from turnout_operator.domain.observed import Observed, Resolved
from turnout_operator.domain.spec import Color, ModelDeploymentSpec, NotificationEvent
from turnout_operator.domain.status import (
    HistoryEntry,
    ModelDeploymentStatus,
    Outcome,
    Rollout,
    ScaleDown,
    add_history,
    parse_time,
    timestamp,
)


class Pass:
    def __init__(self, spec: ModelDeploymentSpec, observed: Observed, now: datetime) -> None:
        self.spec = spec
        self.bg = spec.blue_green
        self.observed = observed
        self.now = now
        self.status = observed.status.model_copy(deep=True)
        self.actions: list[Action] = []
        self.wakeups: list[datetime] = []
        self.degraded: tuple[str, str] | None = None  # set this pass: (reason, message)
        self.healthy_again = False  # a promotion or a retry clears a sticky Degraded
        self.progress: tuple[str, str] = (R.NO_ROLLOUT, "")  # Progressing reason and message
        self.waiting_for_promotion = False
        self.invalid: str | None = None  # the spec cannot be acted on: why, naming the field
        self.analysing = False  # a post-promotion analysis runs or waits for a decision
        self.held_color: Color | None = None  # kept warm for it, whatever its scale-down says

    def uri(self, version: str) -> str:
        return f"models:/{self.spec.model.name}/{version}"

    def emit(self, warning: bool, reason: str, message: str) -> None:
        self.actions.append(Emit("Warning" if warning else "Normal", reason, message))

    def notify(self, event: NotificationEvent, version: str, reason: str, message: str) -> None:
        self.actions.append(Notify(event, version, reason, message, timestamp(self.now)))

    def after(self, seconds: int) -> datetime:
        return self.now + timedelta(seconds=seconds)

    def elapsed(self, rollout: Rollout) -> float:
        return (self.now - parse_time(rollout.started_at)).total_seconds()

    def desired_version(self) -> str | None:
        resolution = self.observed.resolution
        if isinstance(resolution, Resolved):
            return resolution.version
        return self.status.desired_version

    def target_version(self) -> str | None:
        """What should be active: the desired version unless rejected; after a rollback, the
        last good version; otherwise whatever is active now."""
        desired = self.desired_version()
        if desired is not None and desired not in self.status.rejected_versions:
            return desired
        active = self.status.active_version
        if active is not None and active in self.status.rejected_versions:
            return last_good_version(self.status)
        return active

    def reject(self, version: str, reason: str, message: str) -> None:
        if version not in self.status.rejected_versions:
            self.status.rejected_versions = [*self.status.rejected_versions, version]
        self.actions.append(TagVersion(version, "rejected"))
        self.degraded = (reason, message)

    def record(self, version: str, color: Color, outcome: Outcome, reason: str = "") -> None:
        """A new history entry: promoted now, or ended now (aborted, superseded)."""
        moment = timestamp(self.now)
        promoted = outcome == "Promoted"
        entry = HistoryEntry(
            version=version,
            color=color,
            promoted_at=moment if promoted else None,
            retired_at=None if promoted else moment,
            outcome=outcome,
            reason=reason,
        )
        self.status.history = add_history(self.status.history, entry)

    def close(self, version: str, color: Color, outcome: Outcome, reason: str = "") -> None:
        """End the open (promoted, not retired) history entry of `version` in `color`."""
        entries = list(self.status.history)
        for i, entry in enumerate(entries):
            if entry.version == version and entry.color == color and entry.retired_at is None:
                entries[i] = entry.model_copy(
                    update={
                        "retired_at": timestamp(self.now),
                        "outcome": outcome,
                        "reason": reason or entry.reason,
                    }
                )
                break
        self.status.history = entries

    def retire(self, version: str, color: Color, reason: str = "") -> None:
        """The formerly active `version` leaves `color` for good. A version rolled back by hand
        (and so rejected) keeps its `rejected` tag and goes into history as RolledBack: the
        audit trail must not say it was retired in the ordinary way."""
        if version in self.status.rejected_versions:
            self.close(version, color, "RolledBack", reason)
            return
        self.close(version, color, "Retired", reason)
        self.actions.append(TagVersion(version, "retired"))

    def schedule_scale_down(
        self,
        color: Color,
        version: str,
        delay: int,
        after: Literal["Promotion", "Abort"],
        run_id: str | None = None,
    ) -> None:
        at = self.after(delay)
        self.status.scale_downs = [
            *(sd for sd in self.status.scale_downs if sd.color != color),
            ScaleDown(color=color, version=version, at=timestamp(at), after=after, run_id=run_id),
        ]
        self.wakeups.append(at)

    def drop_scale_down(self, scale_down: ScaleDown) -> None:
        self.status.scale_downs = [sd for sd in self.status.scale_downs if sd is not scale_down]


def last_good_version(status: ModelDeploymentStatus) -> str | None:
    """The newest version that was active before the current one and is not rejected."""
    for entry in status.history:
        if (
            entry.outcome in ("Promoted", "Retired")
            and entry.version != status.active_version
            and entry.version not in status.rejected_versions
        ):
            return entry.version
    return None
