"""spec.retraining and the pure retraining decision (domain/retraining.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from turnout_operator.domain.actions import (
    Emit,
    MoveAlias,
    Notify,
    RemoveAnnotation,
    RetrainingCounted,
    StartRetraining,
)
from turnout_operator.domain.retraining import (
    Decision,
    Retrained,
    Seen,
    compare,
    decide,
    job_name,
)
from turnout_operator.domain.spec import ModelDeploymentSpec, Retraining
from turnout_operator.domain.status import RetrainingStatus, timestamp

T0 = datetime(2025, 3, 3, 12, 0, 0, tzinfo=UTC)  # a Monday
JOB = {"image": "trainer:1", "command": ["python", "train.py"]}


def retraining(**overrides: Any) -> Retraining:
    return Retraining.model_validate({"jobTemplate": JOB, **overrides})


def starts(decision: Decision) -> list[StartRetraining]:
    return [a for a in decision.actions if isinstance(a, StartRetraining)]


# --- the spec --------------------------------------------------------------------------------


def test_a_full_retraining_spec_parses_with_its_defaults() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "m", "alias": "champion"},
            "retraining": {
                "triggers": {
                    "drift": {"psiAbove": 0.2},
                    "quality": {"maxRelativeToTraining": 1.25},
                    "schedule": "0 3 * * 1",
                },
                "jobTemplate": JOB,
            },
        }
    )
    r = spec.retraining
    assert r is not None
    assert r.triggers.drift is not None and r.triggers.drift.for_seconds == 600
    assert r.triggers.drift.min_rows == 100
    assert r.triggers.quality is not None and r.triggers.quality.min_labelled_rows == 50
    assert (r.cooldown_seconds, r.promote, r.history_limit) == (3600, "none", 10)
    assert (r.job_template.backoff_limit, r.job_template.active_deadline_seconds) == (0, 3600)


@pytest.mark.parametrize(
    ("retraining_spec", "message"),
    [
        ({"triggers": {"quality": {}}, "jobTemplate": JOB}, "exactly one of maxAbsolute or maxRelativeToTraining"),
        ({"triggers": {"quality": {"maxAbsolute": 1, "maxRelativeToTraining": 1.2}}, "jobTemplate": JOB}, "exactly one of maxAbsolute or maxRelativeToTraining"),
        ({"triggers": {"schedule": "0 3 * *"}, "jobTemplate": JOB}, "String should match pattern"),
        ({"triggers": {"schedule": "0 25 * * *"}, "jobTemplate": JOB}, "'0 25 \\* \\* \\*' is not a cron schedule of five fields"),
        ({"triggers": {"schedule": "0 3 * * 1 2025"}, "jobTemplate": JOB}, "String should match pattern"),
        ({"triggers": {"drift": {"psiAbove": 0}}, "jobTemplate": JOB}, "greater than 0"),
        ({"jobTemplate": {"image": "t", "env": [{"name": "MLFLOW_TRACKING_URI", "value": "x"}]}}, "set by the operator"),
        ({"jobTemplate": JOB, "promote": "always"}, "'none' or 'alias'"),
        ({"triggers": {}}, "jobTemplate\n  Field required"),
    ],
)  # fmt: skip
def test_an_invalid_retraining_spec_names_what_is_wrong(
    retraining_spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelDeploymentSpec.model_validate(
            {"model": {"name": "m", "version": "1"}, "retraining": retraining_spec}
        )


def test_job_names_fit_a_label_value_and_tell_long_names_apart() -> None:
    assert job_name("fraud", 3) == "fraud-retrain-3"
    long_a, long_b = "a" * 55, "a" * 54 + "b"
    assert len(job_name(long_a, 12345)) == 63
    assert job_name(long_a, 1) != job_name(long_b, 1)
    assert job_name(long_a, 1).endswith("-retrain-1")


# --- the decision ----------------------------------------------------------------------------


def test_sustained_drift_starts_a_job_once_it_has_lasted_for_seconds() -> None:
    spec = retraining(triggers={"drift": {"psiAbove": 0.2, "forSeconds": 300, "minRows": 100}})
    seen = Seen(name="fraud", active_version="4", drift_psi=0.5, drift_rows=500)
    first = decide(spec, None, seen, T0)
    assert first.status.drift_above_since == timestamp(T0)
    assert starts(first) == []
    assert first.wake_at == T0 + timedelta(seconds=300)
    early = decide(spec, first.status, seen, T0 + timedelta(seconds=299))
    assert starts(early) == []
    due = decide(spec, early.status, seen, T0 + timedelta(seconds=300))
    figures = {"psi": 0.5, "driftRows": 500.0, "aboveSeconds": 300.0, "bound": 0.2}
    assert starts(due) == [StartRetraining("fraud-retrain-1", "Drift", "4", figures)]
    message = "Job fraud-retrain-1 started: prediction drift PSI 0.5 > 0.2 for 300 s"
    assert Emit("Normal", "RetrainingStarted", message) in due.actions
    assert Notify("retraining.started", "4", "RetrainingStarted", message,
                  timestamp(T0 + timedelta(seconds=300))) in due.actions  # fmt: skip
    assert RetrainingCounted("Drift", "started") in due.actions
    last = due.status.last
    assert last is not None
    assert (last.state, last.job_name, last.version, last.figures) == (
        "Running", "fraud-retrain-1", "4", figures
    )  # fmt: skip
    assert due.status.started == 1


def test_a_reading_at_or_below_the_bound_or_on_a_small_window_restarts_the_drift_clock() -> None:
    spec = retraining(triggers={"drift": {"psiAbove": 0.2, "forSeconds": 60, "minRows": 100}})
    above = Seen(drift_psi=0.5, drift_rows=500)
    first = decide(spec, None, above, T0)
    for interruption in (Seen(drift_psi=0.2, drift_rows=500), Seen(drift_psi=0.9, drift_rows=99)):
        cut = decide(spec, first.status, interruption, T0 + timedelta(seconds=30))
        assert cut.status.drift_above_since is None
        again = decide(spec, cut.status, above, T0 + timedelta(seconds=61))
        assert starts(again) == []
        assert again.status.drift_above_since == timestamp(T0 + timedelta(seconds=61))


@pytest.mark.parametrize(
    ("quality", "seen", "expected"),
    [
        ({"maxAbsolute": 2.0}, Seen(quality_error=2.5, quality_rows=50), {"liveError": 2.5, "labelledRows": 50.0, "bound": 2.0}),
        ({"maxAbsolute": 2.0}, Seen(quality_error=2.0, quality_rows=50), None),
        ({"maxAbsolute": 2.0}, Seen(quality_error=9.0, quality_rows=49), None),
        ({"maxRelativeToTraining": 1.25}, Seen(quality_error=1.3, quality_rows=80, training_error=1.0), {"liveError": 1.3, "labelledRows": 80.0, "trainingError": 1.0, "bound": 1.25}),
        ({"maxRelativeToTraining": 1.25}, Seen(quality_error=1.2, quality_rows=80, training_error=1.0), None),
        ({"maxRelativeToTraining": 1.25}, Seen(quality_error=9.0, quality_rows=80), None),
        ({"maxAbsolute": 2.0}, Seen(quality_error=None, quality_rows=80), None),
    ],
)  # fmt: skip
def test_quality_past_its_bound_on_enough_labelled_rows_starts_a_job(
    quality: dict[str, Any], seen: Seen, expected: dict[str, float] | None
) -> None:
    spec = retraining(triggers={"quality": quality})
    found = starts(decide(spec, None, seen, T0))
    if expected is None:
        assert found == []
    else:
        assert found == [StartRetraining("model-retrain-1", "Quality", None, expected)]


def test_the_schedule_fires_on_a_due_time_after_the_first_look_not_for_the_past() -> None:
    spec = retraining(triggers={"schedule": "0 3 * * *"}, cooldownSeconds=0)
    first = decide(spec, None, Seen(), T0)  # 12:00: 03:00 today already passed
    assert starts(first) == []
    assert first.status.schedule_due_at == "2025-03-03T03:00:00Z"
    assert first.wake_at == datetime(2025, 3, 4, 3, 0, tzinfo=UTC)
    later = decide(spec, first.status, Seen(), datetime(2025, 3, 4, 2, 59, tzinfo=UTC))
    assert starts(later) == []
    due = decide(spec, later.status, Seen(), datetime(2025, 3, 4, 3, 0, 5, tzinfo=UTC))
    assert [s.reason for s in starts(due)] == ["Schedule"]
    assert due.status.schedule_due_at == "2025-03-04T03:00:00Z"


def test_a_schedule_due_while_a_job_runs_is_skipped() -> None:
    spec = retraining(triggers={"schedule": "0 3 * * *"}, cooldownSeconds=0)
    running = decide(spec, None, Seen(annotation="now"), datetime(2025, 3, 4, 2, 0, tzinfo=UTC))
    during = decide(spec, running.status, Seen(job="Running"),
                    datetime(2025, 3, 4, 3, 0, tzinfo=UTC))  # fmt: skip
    assert starts(during) == []
    after = decide(spec, during.status, Seen(job="Succeeded"),
                   datetime(2025, 3, 4, 3, 10, tzinfo=UTC))  # fmt: skip
    assert starts(after) == []


def test_the_annotation_starts_one_at_once_even_in_the_cooldown_and_is_removed() -> None:
    spec = retraining(cooldownSeconds=3600)
    first = decide(spec, None, Seen(annotation="now", active_version="2"), T0)
    assert starts(first) == [StartRetraining("model-retrain-1", "Requested", "2", {})]
    assert RemoveAnnotation("turnout.dev/retrain") in first.actions
    ended = decide(spec, first.status, Seen(job="Failed", job_message="BackoffLimitExceeded"),
                   T0 + timedelta(seconds=60))  # fmt: skip
    again = decide(spec, ended.status, Seen(annotation="now"), T0 + timedelta(seconds=61))
    assert [s.job_name for s in starts(again)] == ["model-retrain-2"]
    history = again.status.history
    assert [(h.job_name, h.state) for h in history] == [("model-retrain-1", "Failed")]


def test_the_annotation_waits_while_a_job_runs_and_other_values_are_refused() -> None:
    spec = retraining()
    running = decide(spec, None, Seen(annotation="now"), T0)
    waiting = decide(spec, running.status, Seen(annotation="now", job="Running"), T0)
    assert waiting.actions == ()
    wrong = decide(spec, None, Seen(annotation="yes"), T0)
    assert wrong.actions == (
        RemoveAnnotation("turnout.dev/retrain"),
        Emit("Warning", "AnnotationIgnored",
             "turnout.dev/retrain='yes' ignored: the only value is 'now'"),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("job", "message", "state", "event", "result"),
    [
        ("Succeeded", "", "Succeeded", "retraining.finished", "succeeded"),
        ("Failed", "BackoffLimitExceeded", "Failed", "retraining.failed", "failed"),
        ("Missing", "", "Failed", "retraining.failed", "failed"),
    ],
)
def test_the_end_of_the_job_is_recorded_once_with_an_event_a_notification_and_a_count(
    job: str, message: str, state: str, event: str, result: str
) -> None:
    spec = retraining()
    started = decide(spec, None, Seen(annotation="now", active_version="7"), T0)
    end = T0 + timedelta(minutes=5)
    ended = decide(spec, started.status, Seen(job=job, job_message=message), end)  # type: ignore[arg-type]
    last = ended.status.last
    assert last is not None and (last.state, last.finished_at) == (state, timestamp(end))
    expected = {
        "Succeeded": "Job model-retrain-1 succeeded",
        "Failed": "Job model-retrain-1 failed: BackoffLimitExceeded",
        "Missing": "Job model-retrain-1 failed: it was deleted before it ended",
    }[job]
    assert last.message == expected
    reason = "RetrainingSucceeded" if state == "Succeeded" else "RetrainingFailed"
    assert ended.actions == (
        Emit("Normal" if state == "Succeeded" else "Warning", reason, expected),
        Notify(event, "7", reason, expected, timestamp(end)),  # type: ignore[arg-type]
        RetrainingCounted("Requested", result),  # type: ignore[arg-type]
    )
    assert decide(spec, ended.status, Seen(job=job), end).actions == ()  # type: ignore[arg-type]


def test_a_failed_job_is_not_retried_before_the_cooldown_ends() -> None:
    spec = retraining(triggers={"quality": {"maxAbsolute": 1.0}}, cooldownSeconds=600)
    bad = Seen(quality_error=5.0, quality_rows=100)
    started = decide(spec, None, bad, T0)
    failed = decide(spec, started.status, Seen(job="Failed", quality_error=5.0, quality_rows=100),
                    T0 + timedelta(seconds=60))  # fmt: skip
    assert starts(failed) == []
    assert failed.wake_at == T0 + timedelta(seconds=660)
    assert starts(decide(spec, failed.status, bad, T0 + timedelta(seconds=659))) == []
    retried = decide(spec, failed.status, bad, T0 + timedelta(seconds=660))
    assert [s.job_name for s in starts(retried)] == ["model-retrain-2"]


def test_no_automatic_trigger_while_a_rollout_is_in_progress() -> None:
    spec = retraining(triggers={"quality": {"maxAbsolute": 1.0}})
    seen = Seen(quality_error=5.0, quality_rows=100, rollout_in_progress=True)
    assert starts(decide(spec, None, seen, T0)) == []


def test_history_is_bounded_by_history_limit() -> None:
    spec = retraining(cooldownSeconds=0, historyLimit=3)
    status: RetrainingStatus | None = None
    for i in range(6):
        at = T0 + timedelta(minutes=i)
        status = decide(spec, status, Seen(annotation="now"), at).status
        status = decide(spec, status, Seen(job="Succeeded"), at + timedelta(seconds=30)).status
    assert status is not None and status.last is not None
    assert status.last.job_name == "model-retrain-6"
    assert [h.job_name for h in status.history] == ["model-retrain-5", "model-retrain-4"]


# --- properties ------------------------------------------------------------------------------

STEP = st.fixed_dictionaries(
    {
        "seconds": st.integers(0, 900),
        "psi": st.one_of(st.none(), st.floats(0, 2)),
        "drift_rows": st.integers(0, 400),
        "error": st.one_of(st.none(), st.floats(0, 5)),
        "rows": st.integers(0, 200),
        "training": st.one_of(st.none(), st.floats(0.01, 3)),
        "annotation": st.sampled_from([None, None, None, "now", "later"]),
        "job": st.sampled_from(["Running", "Succeeded", "Failed", "Missing", None]),
        "rollout": st.booleans(),
    }
)
SPECS = st.builds(
    lambda cooldown, psi, for_s, quality, schedule: retraining(
        cooldownSeconds=cooldown,
        triggers={
            "drift": {"psiAbove": psi, "forSeconds": for_s, "minRows": 100},
            "quality": quality,
            **({"schedule": schedule} if schedule else {}),
        },
    ),
    st.integers(0, 3600),
    st.floats(0.05, 1),
    st.integers(0, 1200),
    st.sampled_from([{"maxAbsolute": 1.0, "minLabelledRows": 50}, {"maxRelativeToTraining": 1.25}]),
    st.sampled_from([None, "*/5 * * * *", "0 * * * *"]),
)


@settings(max_examples=200, deadline=None)
@given(spec=SPECS, steps=st.lists(STEP, min_size=1, max_size=25))
def test_never_two_at_once_cooldown_respected_and_no_trigger_without_data(
    spec: Retraining, steps: list[dict[str, Any]]
) -> None:
    status: RetrainingStatus | None = None
    now = T0
    for step in steps:
        now += timedelta(seconds=step["seconds"])
        running = status is not None and status.last is not None and status.last.state == "Running"
        # the Job as read: whatever it is while one runs, nothing to read otherwise
        seen = Seen(
            drift_psi=step["psi"], drift_rows=step["drift_rows"], quality_error=step["error"],
            quality_rows=step["rows"], training_error=step["training"],
            annotation=step["annotation"], job=step["job"] if running else None,
            rollout_in_progress=step["rollout"],
        )  # fmt: skip
        decision = decide(spec, status, seen, now)
        started = starts(decision)
        assert len(started) <= 1
        still_running = running and step["job"] in ("Running", None)
        if started:
            assert not still_running, "a second Job while one runs"
            reason = started[0].reason
            if reason != "Requested":
                assert not step["rollout"]
                last = status.last if status else None
                if last is not None:
                    end = last.finished_at or last.started_at
                    gap = now - datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                    assert gap.total_seconds() >= spec.cooldown_seconds
            if reason == "Quality":
                quality = spec.triggers.quality
                assert quality is not None and step["rows"] >= quality.min_labelled_rows
            if reason == "Drift":
                assert step["drift_rows"] >= 100
            assert decision.status.last is not None
            assert decision.status.last.state == "Running"
        else:
            assert decision.status.last == (status.last if status else None) or running
        status = decision.status


# --- promote: alias ----------------------------------------------------------------------------


def promoting() -> tuple[Retraining, RetrainingStatus]:
    """A `promote: alias` retraining whose Job just succeeded."""
    spec = retraining(promote="alias")
    started = decide(spec, None, Seen(annotation="now", active_version="7"), T0)
    ended = decide(spec, started.status, Seen(job="Succeeded", alias="champion"), T0)
    assert ended.status.last is not None and ended.status.last.promotion == "Pending"
    return spec, ended.status


def test_the_alias_moves_to_the_retrained_version_when_it_beats_the_serving_one() -> None:
    spec, pending = promoting()
    retrained = Retrained("8", {"mae": 3.0, "champion_mae": 4.5}, {"mae": 2.0})
    promoted = decide(spec, pending, Seen(alias="champion", retrained=retrained), T0)
    last = promoted.status.last
    assert last is not None and (last.promotion, last.registered_version) == ("Promoted", "8")
    message = "version 8 moved to @champion: mae 3 beats 4.5"
    assert promoted.actions == (
        MoveAlias("champion", "8"),
        Emit("Normal", "RetrainedVersionPromoted", message),
        RetrainingCounted("Requested", "promoted"),
    )
    assert (
        decide(spec, promoted.status, Seen(alias="champion", retrained=retrained), T0).actions == ()
    )


@pytest.mark.parametrize(
    ("retrained", "why"),
    [
        (Retrained("8", {"mae": 4.5, "champion_mae": 4.5}), "version 8 not promoted, @champion stays: mae 4.5 does not beat 4.5"),
        (Retrained("8", {"accuracy": 0.8}, {"accuracy": 0.9}), "version 8 not promoted, @champion stays: accuracy 0.8 does not beat 0.9"),
        (Retrained("8", {"loss": 0.1}), "version 8 not promoted, @champion stays: its run logged none of mae, rmse, accuracy, r2"),
        (Retrained("8", {"mae": 1.0}), "version 8 not promoted, @champion stays: no mae of the serving version to compare with"),
        (Retrained(None), "version none not promoted, @champion stays: Job model-retrain-1 registered no version tagged turnout.retraining.job=model-retrain-1"),
    ],
)  # fmt: skip
def test_a_retrained_version_that_does_not_beat_the_serving_one_is_kept_out(
    retrained: Retrained, why: str
) -> None:
    spec, pending = promoting()
    kept = decide(spec, pending, Seen(alias="champion", retrained=retrained), T0)
    last = kept.status.last
    assert last is not None and (last.promotion, last.registered_version) == (
        "Kept", retrained.version
    )  # fmt: skip
    assert kept.actions == (
        Emit("Normal", "RetrainedVersionNotPromoted", why),
        RetrainingCounted("Requested", "kept"),
    )


def test_a_pending_promotion_waits_for_the_registry_and_asks_again_soon() -> None:
    spec, pending = promoting()
    waiting = decide(spec, pending, Seen(alias="champion"), T0)
    assert (waiting.actions, waiting.status) == ((), pending)
    assert waiting.wake_at == T0 + timedelta(seconds=10)


@given(
    new=st.floats(0, 100, allow_nan=False), champion=st.floats(0, 100, allow_nan=False),
    metric=st.sampled_from(["mae", "rmse", "accuracy", "r2"]),
)  # fmt: skip
def test_compare_promotes_exactly_when_strictly_better(
    new: float, champion: float, metric: str
) -> None:
    lower_is_better = metric in ("mae", "rmse")
    verdict = compare({metric: new, f"champion_{metric}": champion}, {metric: -1.0})
    assert verdict.better == (new < champion if lower_is_better else new > champion)


def test_promote_alias_needs_an_alias_to_move() -> None:
    with pytest.raises(ValidationError, match=r"retraining\.promote: alias moves model\.alias"):
        ModelDeploymentSpec.model_validate({
            "model": {"name": "m", "version": "1"},
            "retraining": {"jobTemplate": JOB, "promote": "alias"},
        })  # fmt: skip
