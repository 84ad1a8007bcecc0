"""The blue-green planner, case by case: each test states a situation and the exact actions and
status it must lead to. Property tests of its invariants are in test_planner_properties.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import (
    DeployColor,
    Emit,
    Notify,
    PointService,
    RemoveAnnotation,
    RolloutFinished,
    ScaleColor,
    SmokeTest,
    StartRetraining,
    TagVersion,
)
from turnout_operator.domain.observed import (
    ABORT,
    PROMOTE,
    RETRY,
    ROLLBACK,
    ColorState,
    Observed,
    Resolved,
    ResolveFailed,
    SmokeResult,
)
from turnout_operator.domain.planner import Plan, plan, plan_invalid
from turnout_operator.domain.retraining import Seen
from turnout_operator.domain.spec import (
    BlueGreen,
    ModelDeploymentSpec,
    ModelRef,
    Retraining,
    Strategy,
)
from turnout_operator.domain.status import (
    HistoryEntry,
    ModelDeploymentStatus,
    Rollout,
    ScaleDown,
    timestamp,
)

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
T0 = timestamp(NOW - timedelta(seconds=60))


def uri(version: str) -> str:
    return f"models:/bikes/{version}"


def spec(**blue_green: object) -> ModelDeploymentSpec:
    return ModelDeploymentSpec(
        model=ModelRef(name="bikes", alias="champion"),
        replicas=2,
        strategy=Strategy(blue_green=BlueGreen(**blue_green)),  # type: ignore[arg-type]
    )


def up(version: str, replicas: int = 2) -> ColorState:
    return ColorState(version=version, replicas=replicas, available=replicas)


def serving(version: str = "3", color: str = "blue", **extra: object) -> ModelDeploymentStatus:
    """A Healthy status with `version` active in `color`."""
    fields: dict[str, object] = {"desired_version": version, **extra}
    return ModelDeploymentStatus(
        phase="Healthy",
        active_version=version,
        active_color=color,  # type: ignore[arg-type]
        model_uri=uri(version),
        history=[HistoryEntry(version=version, color=color, promoted_at=T0, outcome="Promoted")],  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


def in_preview(version: str = "4", **rollout: object) -> ModelDeploymentStatus:
    """Version 3 active in blue, `version` rolling out to green."""
    return serving(
        desired_version=version,
        rollout=Rollout(version=version, color="green", model_uri=uri(version),
                        **{"started_at": T0, **rollout}),  # type: ignore[arg-type]
    )  # fmt: skip


def observe(status: ModelDeploymentStatus, **fields: object) -> Observed:
    fields.setdefault("active_selector", status.active_color)
    if status.rollout is not None:
        fields.setdefault("preview_selector", status.rollout.color)
    else:
        fields.setdefault("preview_selector", status.active_color)
    return Observed(status=status, name="bikes", namespace="ml", **fields)  # type: ignore[arg-type]


def condition(result: Plan, type_: str) -> tuple[str, str]:
    found = result.status.condition(type_)
    assert found is not None
    return found.status, found.reason


def emitted(result: Plan) -> list[tuple[str, str]]:
    return [(a.type, a.reason) for a in result.actions if isinstance(a, Emit)]


def without_events(result: Plan) -> list[object]:
    """The actions on the cluster and the registry (notifications: test_notifications.py)."""
    return [a for a in result.actions if not isinstance(a, Emit | Notify | RolloutFinished)]


# --- first deploy ---------------------------------------------------------------------------


def test_first_deploy_goes_straight_to_full_replicas_in_blue() -> None:
    result = plan(
        spec(), observe(ModelDeploymentStatus(), resolution=Resolved("3", uri("3"), "r3")), NOW
    )
    assert without_events(result) == [
        DeployColor("blue", "3", uri("3"), 2), PointService("preview", "blue"),
        TagVersion("3", "preview"), DeployColor("blue", "3", uri("3"), 2),
    ]  # fmt: skip
    assert result.status.rollout == Rollout(version="3", color="blue", model_uri=uri("3"),
                                            run_id="r3", started_at=timestamp(NOW))  # fmt: skip
    assert result.status.phase == "Progressing"
    assert condition(result, R.READY) == ("False", R.NOT_DEPLOYED)
    assert condition(result, R.PROGRESSING) == ("True", R.WAITING_FOR_PREVIEW)
    assert condition(result, R.MODEL_RESOLVED) == ("True", R.RESOLVED)
    assert result.requeue_after == 600.0  # the progress deadline
    assert emitted(result) == [("Normal", R.ROLLOUT_STARTED)]


def test_first_deploy_is_smoke_tested_then_made_active_without_a_promotion_gate() -> None:
    status = ModelDeploymentStatus(
        desired_version="3",
        rollout=Rollout(version="3", color="blue", model_uri=uri("3"), started_at=T0),
    )
    smoke = plan(spec(auto_promotion_enabled=False), observe(status, colors={"blue": up("3")}), NOW)
    assert SmokeTest("blue", "3") in smoke.actions
    assert smoke.status.phase == "Progressing"
    passed = plan(
        spec(auto_promotion_enabled=False),
        observe(smoke.status, colors={"blue": up("3")}, smoke=SmokeResult("3", True)),
        NOW,
    )
    assert PointService("active", "blue") in passed.actions
    assert TagVersion("3", "active") in passed.actions
    assert RolloutFinished("promoted", 60.0) in passed.actions
    status = passed.status
    assert (status.phase, status.active_version, status.active_color) == ("Healthy", "3", "blue")
    assert status.rollout is None and status.scale_downs == []
    assert status.endpoints.active == "http://bikes.ml.svc"
    assert condition(passed, R.READY) == ("True", R.AVAILABLE)
    assert condition(passed, R.DEGRADED) == ("False", R.HEALTHY)


# --- steady state and the registry -----------------------------------------------------------


def test_a_healthy_deployment_only_keeps_its_active_color() -> None:
    result = plan(spec(), observe(serving(), colors={"blue": up("3")}), NOW)
    assert result.actions == (DeployColor("blue", "3", uri("3"), 2),)
    assert result.status.phase == "Healthy"
    assert result.requeue_after is None


def test_registry_errors_never_disturb_what_serves() -> None:
    failure = ResolveFailed(R.REGISTRY_UNAVAILABLE, "MLflow at http://mlflow:5000 is unreachable")
    result = plan(spec(), observe(serving(), colors={"blue": up("3")}, resolution=failure), NOW)
    assert without_events(result) == [DeployColor("blue", "3", uri("3"), 2)]
    assert emitted(result) == [("Warning", R.MODEL_RESOLUTION_FAILED)]
    assert condition(result, R.MODEL_RESOLVED) == ("False", R.REGISTRY_UNAVAILABLE)
    assert result.status.phase == "Healthy"
    again = plan(spec(), observe(result.status, colors={"blue": up("3")}, resolution=failure), NOW)
    assert emitted(again) == []  # one event per change, not one per retry


def test_a_model_that_does_not_exist_shows_why_and_deploys_nothing() -> None:
    failure = ResolveFailed(R.MODEL_NOT_FOUND, "registered model 'bikes' not found")
    result = plan(spec(), observe(ModelDeploymentStatus(), resolution=failure), NOW)
    assert without_events(result) == []
    assert result.status.phase == "Degraded"
    assert condition(result, R.DEGRADED) == ("True", R.MODEL_NOT_FOUND)
    assert result.status.message == "registered model 'bikes' not found"


# --- a rollout -------------------------------------------------------------------------------


def test_a_new_version_goes_to_the_idle_color_with_preview_replicas() -> None:
    result = plan(spec(), observe(serving(), colors={"blue": up("3")},
                                  resolution=Resolved("4", uri("4"))), NOW)  # fmt: skip
    assert without_events(result) == [
        DeployColor("green", "4", uri("4"), 1), PointService("preview", "green"),
        TagVersion("4", "preview"), DeployColor("green", "4", uri("4"), 1),
        DeployColor("blue", "3", uri("3"), 2),
    ]  # fmt: skip
    assert (result.status.preview_version, result.status.preview_color) == ("4", "green")
    assert result.status.active_version == "3"
    assert result.status.phase == "Progressing"


def test_ready_and_smoke_tested_preview_is_scaled_up_then_switched() -> None:
    colors = {"blue": up("3"), "green": up("4", 1)}
    scaled = plan(spec(), observe(in_preview(smoke="Passed"), colors=colors), NOW)
    assert DeployColor("green", "4", uri("4"), 2) in scaled.actions
    assert not any(isinstance(a, PointService) and a.role == "active" for a in scaled.actions)
    assert condition(scaled, R.PROGRESSING) == ("True", R.SCALING_UP)
    colors = {"blue": up("3"), "green": up("4", 2)}
    switched = plan(spec(), observe(scaled.status, colors=colors), NOW + timedelta(seconds=5))
    assert PointService("active", "green") in switched.actions
    assert TagVersion("4", "active") in switched.actions
    status = switched.status
    assert (status.active_version, status.active_color, status.rollout) == ("4", "green", None)
    assert status.scale_downs == [
        ScaleDown(color="blue", version="3", at=timestamp(NOW + timedelta(seconds=35)),
                  after="Promotion"),
    ]  # fmt: skip
    assert switched.requeue_after == 30.0
    assert [(h.version, h.outcome) for h in status.history] == [
        ("4", "Promoted"),
        ("3", "Promoted"),
    ]


def test_after_a_switch_the_next_pass_over_the_same_cluster_changes_no_status() -> None:
    """The outcome the switch wrote (Progressing False, "version 4 promoted") stands until the
    next rollout: a pass that finds nothing new writes nothing (no status patch)."""
    scaled = plan(spec(), observe(in_preview(smoke="Passed"),
                                  colors={"blue": up("3"), "green": up("4", 1)}), NOW)  # fmt: skip
    colors = {"blue": up("3"), "green": up("4", 2)}
    switched = plan(spec(), observe(scaled.status, colors=colors), NOW)
    assert switched.status.active_version == "4"
    assert condition(switched, R.PROGRESSING) == ("False", R.ROLLOUT_COMPLETE)
    again = plan(spec(), observe(switched.status, colors=colors), NOW + timedelta(seconds=1))
    assert again.status == switched.status
    progressing = again.status.condition(R.PROGRESSING)
    assert progressing is not None and progressing.message == "version 4 promoted"


def test_the_old_color_is_scaled_down_after_the_delay_and_its_version_retired() -> None:
    status = serving("4", "green", scale_downs=[
        ScaleDown(color="blue", version="3", at=timestamp(NOW), after="Promotion")])  # fmt: skip
    status.history.append(
        HistoryEntry(version="3", color="blue", promoted_at=T0, outcome="Promoted")
    )
    result = plan(spec(), observe(status, colors={"blue": up("3"), "green": up("4")}), NOW)
    assert ScaleColor("blue", 0) in result.actions
    assert TagVersion("3", "retired") in result.actions
    assert result.status.scale_downs == []
    assert result.status.history[1].outcome == "Retired"
    assert result.status.history[1].retired_at == timestamp(NOW)


def test_manual_promotion_waits_paused_for_the_annotation() -> None:
    colors = {"blue": up("3"), "green": up("4", 1)}
    waiting = plan(spec(auto_promotion_enabled=False),
                   observe(in_preview(smoke="Passed"), colors=colors), NOW)  # fmt: skip
    assert waiting.status.phase == "Paused"
    assert condition(waiting, R.PROGRESSING) == ("True", R.WAITING_FOR_PROMOTION)
    assert not any(isinstance(a, DeployColor) and a.replicas == 2 and a.color == "green"
                   for a in waiting.actions)  # fmt: skip
    promoted = plan(spec(auto_promotion_enabled=False),
                    observe(waiting.status, colors=colors, annotations={PROMOTE: ""}), NOW)  # fmt: skip
    assert RemoveAnnotation(PROMOTE) in promoted.actions
    assert DeployColor("green", "4", uri("4"), 2) in promoted.actions
    assert promoted.status.rollout is not None and promoted.status.rollout.promote


def test_timed_auto_promotion_waits_then_proceeds() -> None:
    colors = {"blue": up("3"), "green": up("4", 1)}
    status = in_preview(smoke="Passed", ready_at=timestamp(NOW - timedelta(seconds=10)))
    waiting = plan(spec(auto_promotion_seconds=60), observe(status, colors=colors), NOW)
    assert condition(waiting, R.PROGRESSING) == ("True", R.AUTO_PROMOTION_PENDING)
    assert waiting.requeue_after == 50.0
    later = plan(spec(auto_promotion_seconds=60), observe(status, colors=colors),
                 NOW + timedelta(seconds=50))  # fmt: skip
    assert DeployColor("green", "4", uri("4"), 2) in later.actions


# --- aborts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "green", "annotations", "smoke", "reason"),
    [
        (in_preview(), up("4", 1), {ABORT: "yes"}, None, R.ABORTED_BY_USER),
        (in_preview(), up("4", 1), {}, SmokeResult("4", False, "500 from /invocations"),
         R.SMOKE_TEST_FAILED),
        (in_preview(started_at=timestamp(NOW - timedelta(seconds=600))),
         ColorState(version="4", replicas=1, available=0), {}, None, R.PROGRESS_DEADLINE_EXCEEDED),
        (in_preview(), ColorState(version="4", replicas=1, failure="CrashLoopBackOff"), {}, None,
         R.CRASH_LOOP),
        (in_preview(), ColorState(version="4", replicas=1, failure="ImagePullBackOff"), {}, None,
         R.IMAGE_PULL),
    ],
    ids=["annotation", "smoke-test", "deadline", "crash-loop", "image-pull"],
)  # fmt: skip
def test_an_abort_rejects_the_version_and_never_touches_the_active_service(
    status: ModelDeploymentStatus, green: ColorState, annotations: dict[str, str],
    smoke: SmokeResult | None, reason: str,
) -> None:  # fmt: skip
    colors = {"blue": up("3"), "green": green}
    result = plan(spec(), observe(status, colors=colors, annotations=annotations, smoke=smoke), NOW)
    assert not any(isinstance(a, PointService) and a.role == "active" for a in result.actions)
    assert PointService("preview", "blue") in result.actions
    assert TagVersion("4", "rejected") in result.actions
    assert ("Warning", reason) in emitted(result)
    s = result.status
    assert (s.phase, s.active_version, s.rollout, s.rejected_versions) == (
        "Degraded",
        "3",
        None,
        ["4"],
    )
    assert condition(result, R.DEGRADED) == ("True", reason)
    assert condition(result, R.READY) == ("True", R.AVAILABLE)
    assert s.scale_downs == [ScaleDown(color="green", version="4",
                                       at=timestamp(NOW + timedelta(seconds=30)), after="Abort")]  # fmt: skip
    assert (s.history[0].version, s.history[0].outcome) == ("4", "Aborted")
    # The next reconcile, with the registry still saying 4, does not start it again.
    again = plan(spec(), observe(s, colors=colors, resolution=Resolved("4", uri("4"))), NOW)
    assert again.status.rollout is None
    assert again.status.phase == "Degraded"
    assert not any(isinstance(a, DeployColor) and a.version == "4" for a in again.actions)


def test_retry_clears_the_rejection_and_rolls_out_again() -> None:
    status = serving(desired_version="4", rejected_versions=["4"])
    result = plan(spec(), observe(status, colors={"blue": up("3")}, annotations={RETRY: ""}), NOW)
    assert RemoveAnnotation(RETRY) in result.actions
    assert DeployColor("green", "4", uri("4"), 1) in result.actions
    assert result.status.rejected_versions == []
    assert result.status.phase == "Progressing"


def test_a_newer_version_replaces_the_one_in_preview() -> None:
    colors = {"blue": up("3"), "green": ColorState(version="4", replicas=1)}
    result = plan(
        spec(), observe(in_preview(), colors=colors, resolution=Resolved("5", uri("5"))), NOW
    )
    assert DeployColor("green", "5", uri("5"), 1) in result.actions
    assert ("Normal", R.SUPERSEDED) in emitted(result)
    assert result.status.rollout is not None and result.status.rollout.version == "5"
    assert result.status.rejected_versions == []
    assert (result.status.history[0].version, result.status.history[0].outcome) == (
        "4",
        "Superseded",
    )


# --- rollback --------------------------------------------------------------------------------


def promoted_4_with_3_warm() -> ModelDeploymentStatus:
    status = serving("4", "green", scale_downs=[
        ScaleDown(color="blue", version="3", at=timestamp(NOW + timedelta(seconds=20)),
                  after="Promotion")])  # fmt: skip
    status.history.append(
        HistoryEntry(version="3", color="blue", promoted_at=T0, outcome="Promoted")
    )
    return status


def test_newly_active_pods_failing_inside_the_window_switch_back_at_once() -> None:
    colors = {
        "blue": up("3"),
        "green": ColorState(version="4", replicas=2, failure="CrashLoopBackOff"),
    }
    result = plan(spec(), observe(promoted_4_with_3_warm(), colors=colors), NOW)
    assert result.actions[:2] == (PointService("active", "blue"), PointService("preview", "blue"))
    assert TagVersion("4", "rejected") in result.actions
    # counted once, timed from 4's promotion (T0, a minute ago) to the rollback
    assert [a for a in result.actions if isinstance(a, RolloutFinished)] == [
        RolloutFinished("rolled_back", 60.0)
    ]
    s = result.status
    assert (s.active_version, s.active_color, s.rejected_versions) == ("3", "blue", ["4"])
    assert condition(result, R.DEGRADED) == ("True", R.AUTO_ROLLED_BACK)
    assert s.scale_downs == [ScaleDown(color="green", version="4",
                                       at=timestamp(NOW + timedelta(seconds=30)), after="Abort")]  # fmt: skip
    assert [(h.version, h.outcome) for h in s.history[:2]] == [
        ("3", "Promoted"),
        ("4", "RolledBack"),
    ]


def test_rollback_annotation_switches_to_the_warm_previous_version() -> None:
    colors = {"blue": up("3"), "green": up("4")}
    result = plan(spec(), observe(promoted_4_with_3_warm(), colors=colors, resolution=Resolved("4", uri("4")),
                                  annotations={ROLLBACK: "now"}), NOW)  # fmt: skip
    assert RemoveAnnotation(ROLLBACK) in result.actions
    assert PointService("active", "blue") in result.actions
    assert RolloutFinished("rolled_back", 60.0) in result.actions
    s = result.status
    assert (s.active_version, s.active_color, s.rejected_versions) == ("3", "blue", ["4"])
    assert condition(result, R.DEGRADED) == ("True", R.ROLLED_BACK)
    assert s.rollout is None  # 4 is rejected: the registry still saying 4 starts nothing


def test_rollback_after_the_old_color_is_gone_redeploys_the_last_good_version() -> None:
    status = serving("4", "green")
    status.history.append(HistoryEntry(version="3", color="blue", promoted_at=T0, retired_at=T0,
                                       outcome="Retired"))  # fmt: skip
    result = plan(spec(), observe(status, colors={"green": up("4")},
                                  annotations={ROLLBACK: ""}), NOW)  # fmt: skip
    assert DeployColor("blue", "3", uri("3"), 1) in result.actions
    assert not any(isinstance(a, PointService) and a.role == "active" for a in result.actions)
    assert result.status.rollout is not None and result.status.rollout.version == "3"
    assert result.status.rejected_versions == ["4"]
    assert RolloutFinished("rolled_back", 60.0) in result.actions


def test_a_rollback_by_redeploy_ends_degraded_like_a_warm_one() -> None:
    # The last good version is active again, but the desired one (4) stays rejected: the
    # spec is not what serves, so Degraded stays True until a retry or a new version.
    status = serving("4", "green")
    status.history.append(HistoryEntry(version="3", color="blue", promoted_at=T0, retired_at=T0,
                                       outcome="Retired"))  # fmt: skip
    started = plan(spec(), observe(status, colors={"green": up("4")}, annotations={ROLLBACK: ""}),
                   NOW).status  # fmt: skip
    assert started.rollout is not None
    started.rollout.smoke = "Passed"
    # blue becomes available with the preview's one replica, is scaled to two, then switched
    scaled = plan(spec(), observe(started, colors={"green": up("4"), "blue": up("3", 1)}), NOW)
    assert DeployColor("blue", "3", uri("3"), 2) in scaled.actions
    colors = {"green": up("4"), "blue": up("3", 2)}
    result = plan(spec(), observe(scaled.status, colors=colors), NOW + timedelta(seconds=5))
    assert PointService("active", "blue") in result.actions
    assert (result.status.active_version, result.status.phase) == ("3", "Degraded")
    assert condition(result, R.DEGRADED) == ("True", R.ROLLED_BACK)
    assert condition(result, R.READY)[0] == "True"
    assert (
        result.status.message == "version 4 rolled back to 3 by the turnout.dev/rollback annotation"
    )


def test_a_rolled_back_version_leaving_service_stays_rejected_not_retired() -> None:
    # After a rollback by redeploy: 3 is active again in blue, the rejected 4 waits in green.
    status = serving("3", "blue", rejected_versions=["4"], scale_downs=[
        ScaleDown(color="green", version="4", at=timestamp(NOW), after="Promotion")])  # fmt: skip
    status.history.append(
        HistoryEntry(version="4", color="green", promoted_at=T0, outcome="Promoted")
    )
    result = plan(spec(), observe(status, colors={"blue": up("3"), "green": up("4")}), NOW)
    assert ScaleColor("green", 0) in result.actions
    assert not any(isinstance(a, TagVersion) for a in result.actions)
    entry = result.status.history[1]
    assert (entry.version, entry.outcome, entry.retired_at) == ("4", "RolledBack", timestamp(NOW))


def test_paused_spec_freezes_rollouts() -> None:
    paused = spec().model_copy(update={"paused": True})
    result = plan(paused, observe(serving(), colors={"blue": up("3")},
                                  resolution=Resolved("4", uri("4"))), NOW)  # fmt: skip
    assert result.actions == (  # the new version is news even while nothing moves
        Notify("version.resolved", "4", R.RESOLVED,
               "models:/bikes@champion is now version 4 (was 3)", timestamp(NOW)),
        DeployColor("blue", "3", uri("3"), 2),
    )  # fmt: skip
    assert result.status.phase == "Paused"
    assert result.status.desired_version == "4"


def test_an_idle_color_left_running_is_scaled_down() -> None:
    result = plan(spec(), observe(serving(), colors={"blue": up("3"), "green": up("2")}), NOW)
    assert ScaleColor("green", 0) in result.actions


def test_the_active_service_is_repointed_only_at_available_pods() -> None:
    fixed = plan(spec(), observe(serving(), colors={"blue": up("3")}, active_selector="green"), NOW)
    assert PointService("active", "blue") in fixed.actions
    down = ColorState(version="3", replicas=2, available=0)
    held = plan(spec(), observe(serving(), colors={"blue": down}, active_selector="green"), NOW)
    assert not any(isinstance(a, PointService) and a.role == "active" for a in held.actions)
    assert held.status.phase == "Degraded"
    assert condition(held, R.READY) == ("False", R.ACTIVE_UNAVAILABLE)


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    first = plan(spec(), observe(serving(), colors={"blue": up("3")}), NOW)
    later = plan(spec(), observe(first.status, colors={"blue": up("3")}), NOW + timedelta(hours=1))
    ready = later.status.condition(R.READY)
    assert ready is not None and ready.last_transition_time == timestamp(NOW)


# --- a spec the operator cannot act on -------------------------------------------------------

WHY = "spec.strategy.blueGreen.scaleDownDelaySeconds: Input should be less than or equal to 604800"


def test_an_invalid_spec_deploys_nothing_and_says_why_once() -> None:
    colors = {"blue": up("3"), "green": ColorState(version="4", replicas=1)}
    result = plan_invalid(spec(), observe(in_preview(), colors=colors), NOW, WHY)
    assert without_events(result) == []
    assert emitted(result) == [("Warning", R.INVALID_SPEC)]
    s = result.status
    assert (s.phase, s.message, s.active_version) == ("Degraded", WHY, "3")
    assert condition(result, R.DEGRADED) == ("True", R.INVALID_SPEC)
    assert condition(result, R.PROGRESSING) == ("True", R.INVALID_SPEC)
    again = plan_invalid(spec(), observe(s, colors=colors), NOW + timedelta(seconds=5), WHY)
    assert again.actions == () and again.status == s  # no second event, no status write


def test_abort_and_rollback_work_whatever_the_spec_says() -> None:
    colors = {"blue": up("3"), "green": ColorState(version="4", replicas=1)}
    aborted = plan_invalid(spec(), observe(in_preview(), colors=colors, annotations={ABORT: ""}),
                           NOW, WHY)  # fmt: skip
    assert RemoveAnnotation(ABORT) in aborted.actions
    assert PointService("preview", "blue") in aborted.actions
    assert not any(isinstance(a, DeployColor | SmokeTest) for a in aborted.actions)
    s = aborted.status
    assert (s.rollout, s.rejected_versions, s.phase) == (None, ["4"], "Degraded")
    assert s.scale_downs == [ScaleDown(color="green", version="4",
                                       at=timestamp(NOW + timedelta(seconds=30)), after="Abort")]  # fmt: skip
    # ... and the aborted preview is scaled down when due, the spec still invalid
    later = plan_invalid(spec(), observe(s, colors=colors), NOW + timedelta(seconds=31), WHY)
    assert ScaleColor("green", 0) in later.actions

    warm = {"blue": up("3"), "green": up("4")}
    rolled = plan_invalid(spec(), observe(promoted_4_with_3_warm(), colors=warm,
                                          annotations={ROLLBACK: ""}), NOW, WHY)  # fmt: skip
    assert PointService("active", "blue") in rolled.actions
    assert (rolled.status.active_version, rolled.status.active_color) == ("3", "blue")
    assert not any(isinstance(a, DeployColor | SmokeTest) for a in rolled.actions)


# --- retraining ----------------------------------------------------------------------------------


def retraining_spec() -> ModelDeploymentSpec:
    return spec().model_copy(update={"retraining": Retraining.model_validate({
        "triggers": {"drift": {"psiAbove": 0.2, "forSeconds": 60}},
        "jobTemplate": {"image": "trainer:1"},
    })})  # fmt: skip


def test_a_healthy_model_whose_drift_lasted_is_retrained_and_the_status_says_why() -> None:
    drifting = Seen(name="bikes", active_version="3", drift_psi=0.5, drift_rows=500)
    first = plan(retraining_spec(), observe(serving(), colors={"blue": up("3")},
                                            retraining=drifting), NOW)  # fmt: skip
    assert first.status.retraining is not None
    assert first.status.retraining.drift_above_since == timestamp(NOW)
    assert first.requeue_after == 60.0  # when the drift will have lasted forSeconds
    later = NOW + timedelta(seconds=60)
    second = plan(retraining_spec(), observe(first.status, colors={"blue": up("3")},
                                             retraining=drifting), later)  # fmt: skip
    [start] = [a for a in second.actions if isinstance(a, StartRetraining)]
    assert (start.job_name, start.reason, start.version) == ("bikes-retrain-1", "Drift", "3")
    last = second.status.retraining.last if second.status.retraining else None
    assert last is not None and (last.state, last.started_at) == ("Running", timestamp(later))
    assert (second.status.phase, second.status.active_version) == ("Healthy", "3")


def test_no_retraining_is_decided_while_a_rollout_runs_and_none_without_the_spec() -> None:
    drifting = Seen(name="bikes", active_version="3", drift_psi=0.5, drift_rows=500,
                    rollout_in_progress=True, annotation=None)  # fmt: skip
    status = in_preview().model_copy(update={"retraining": None})
    result = plan(retraining_spec(), observe(status, retraining=drifting), NOW)
    assert not [a for a in result.actions if isinstance(a, StartRetraining)]
    plain = plan(spec(), observe(serving(), retraining=drifting), NOW)
    assert plain.status.retraining is None
