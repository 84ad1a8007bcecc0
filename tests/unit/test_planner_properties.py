"""Property tests of the planner's invariants over random histories.

A small simulated cluster carries out each plan (Deployments become available, crash-loop or
stay stuck according to the version's drawn behaviour; Services follow PointService), the
registry publishes versions, users annotate, time passes; analysis measurements come back as
each version's drawn verdicts. Whatever happens:
- the active Service is only pointed at a color whose pods serve the active version and are
  available;
- at most one rollout is in progress, and never in the active color;
- a rejected version is never promoted;
- no version is promoted while its pre-promotion analysis is failing, running or inconclusive
  (unless turnout.dev/promote came after the inconclusive verdict);
- a failed post-promotion analysis always rolls back;
- mirroring stops whenever the rollout that asked for it ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from turnout_operator.domain.actions import (
    DeployColor,
    Measure,
    PointService,
    RolloutFinished,
    ScaleColor,
    SmokeTest,
    StopShadow,
)
from turnout_operator.domain.analysis import CONSECUTIVE_ERROR_LIMIT, ColorFigures, Measurement
from turnout_operator.domain.observed import (
    ANNOTATIONS,
    PROMOTE,
    ColorState,
    Observed,
    Resolved,
    ResolveFailed,
    SmokeResult,
)
from turnout_operator.domain.planner import Plan, plan
from turnout_operator.domain.spec import ModelDeploymentSpec
from turnout_operator.domain.status import ModelDeploymentStatus

START = datetime(2026, 11, 23, tzinfo=UTC)
BEHAVIOURS = ("good", "good", "good", "crash", "stuck", "smoke_fails")


@dataclass
class Cluster:
    behaviour: dict[str, str]
    colors: dict[str, ColorState] = field(default_factory=dict)
    selectors: dict[str, str | None] = field(
        default_factory=lambda: {"active": None, "preview": None}
    )

    def deploy(self, action: DeployColor) -> None:
        kind = self.behaviour[action.version]
        ok = kind in ("good", "smoke_fails")
        self.colors[action.color] = ColorState(
            version=action.version, replicas=action.replicas,
            available=action.replicas if ok else 0,
            failure="CrashLoopBackOff" if kind == "crash" else None,
        )  # fmt: skip

    def scale(self, action: ScaleColor) -> None:
        state = self.colors.get(action.color)
        if state is not None:
            ok = (state.failure is None and state.available > 0) or state.replicas == 0
            self.colors[action.color] = ColorState(
                version=state.version, replicas=action.replicas,
                available=action.replicas if ok else 0, failure=state.failure,
            )  # fmt: skip

    def crash(self, color: str) -> None:
        state = self.colors.get(color)
        if state is not None and state.replicas:
            self.colors[color] = ColorState(version=state.version, replicas=state.replicas,
                                            available=0, failure="CrashLoopBackOff")  # fmt: skip


# What a measurement of a color reads, by the verdict it must get under any drawn condition:
# "good" passes every one, "bad" fails every one, "thin" leaves every one without enough data,
# "down" could not be read at all.
FIGURES = {
    "good": ColorFigures(requests=100, errors=0, p99_seconds=0.01, prediction_drift=0.0, drift_rows=100,
                         quality_error=0.0, shadow_compared=100, shadow_agreement=1.0,
                         shadow_mean_abs_diff=0.0),
    "bad": ColorFigures(requests=100, errors=100, p99_seconds=100.0, prediction_drift=10.0, drift_rows=100,
                        quality_error=1e6, shadow_compared=100, shadow_agreement=0.0,
                        shadow_mean_abs_diff=1e6),
    "thin": ColorFigures(),
}  # fmt: skip
RESULTS = {"good": 1.0, "bad": -1.0, "thin": None}
VERDICTS = {"good": "Successful", "bad": "Failed", "thin": "Inconclusive", "down": "Error"}
PROMETHEUS = {"prometheus": {"address": "http://p", "query": "q", "successCondition": "result >= 0"}}  # fmt: skip
PRE_CONDITIONS = {
    "shadowAgreementMin": 0.9, "shadowMeanAbsDiffMax": 1.0, "errorRatioMax": 0.05,
    "p99LatencySecondsMax": 1.0, "p99LatencyRatioMax": 2.0, "predictionDriftMax": 0.5,
    "provider": PROMETHEUS,
}  # fmt: skip
POST_CONDITIONS = {"errorRatioMax": 0.05, "p99LatencyRatioMax": 2.0, "driftMax": 0.5,
                   "qualityMax": 1.0, "provider": PROMETHEUS}  # fmt: skip
LIMITS = {"failureLimit": st.integers(0, 2), "inconclusiveLimit": st.integers(0, 2),
          "intervalSeconds": st.sampled_from([5, 30])}  # fmt: skip


def an_analysis(conditions: dict[str, Any], **extra: Any) -> st.SearchStrategy[dict[str, Any]]:
    chosen = st.lists(st.sampled_from(sorted(conditions)), min_size=1, max_size=3, unique=True)
    return st.tuples(chosen, st.fixed_dictionaries({**LIMITS, **extra})).map(
        lambda pair: {**{name: conditions[name] for name in pair[0]}, **pair[1]}
    )


pre_analyses = an_analysis(PRE_CONDITIONS, count=st.integers(1, 3))
post_analyses = an_analysis(
    POST_CONDITIONS, count=st.none() | st.integers(1, 3), windowSeconds=st.integers(5, 30)
)
analyses = st.one_of(
    st.builds(lambda pre: {"prePromotion": pre}, pre_analyses),
    st.builds(lambda post: {"postPromotion": post}, post_analyses),
    st.builds(lambda pre, post: {"prePromotion": pre, "postPromotion": post},
              pre_analyses, post_analyses),
)  # fmt: skip


@dataclass
class Oracle:
    """Argo Rollouts' verdict of a run from the verdicts fed to it, kept by the harness apart
    from the planner: what the planner decides is checked against it."""

    failure_limit: int
    inconclusive_limit: int
    count: int | None
    kinds: list[str] = field(default_factory=list)
    promoted_by_hand: bool = False  # turnout.dev/promote came after an inconclusive verdict

    @property
    def phase(self) -> str:
        failed, inconclusive = self.kinds.count("bad"), self.kinds.count("thin")
        errors = 0  # in a row, at the end
        for kind in reversed(self.kinds):
            if kind != "down":
                break
            errors += 1
        if failed > self.failure_limit:
            return "Failed"
        if inconclusive > self.inconclusive_limit:
            return "Inconclusive"
        if errors > CONSECUTIVE_ERROR_LIMIT:
            return "Error"
        taken = len([k for k in self.kinds if k != "down"])
        if self.count is not None and taken >= self.count:
            return "Successful"
        return "Running"


def oracle(analysis: dict[str, Any] | None) -> Oracle | None:
    if analysis is None:
        return None
    return Oracle(analysis.get("failureLimit", 0), analysis.get("inconclusiveLimit", 0),
                  analysis.get("count"))  # fmt: skip


events = st.one_of(
    st.tuples(st.just("tick"), st.sampled_from([1, 5, 31, 61, 601])),
    st.tuples(st.just("publish"), st.sampled_from(["1", "2", "3", "4", "5"])),
    st.tuples(st.just("annotate"), st.sampled_from(ANNOTATIONS)),
    st.tuples(st.just("crash"), st.sampled_from(["blue", "green"])),
    st.tuples(st.just("registry_down"), st.just(0)),
)


@dataclass
class World:
    """The harness's own record of the analyses, to judge the planner's decisions by."""

    spec: ModelDeploymentSpec
    analysis: dict[str, Any]
    verdicts: dict[str, list[str]]  # per gate and version: the kinds its readings show, in turn
    pre: Oracle | None = None  # the pre-promotion run of the rollout in progress
    pre_of: tuple[str, str] | None = None  # (version, startedAt) that run belongs to
    post: Oracle | None = None  # the post-promotion run of the last switch
    post_of: tuple[str, str] | None = None  # (version, startedAt) that run belongs to
    taken: dict[str, int] = field(default_factory=dict)  # readings per gate and version

    def measure(self, action: Measure, now: datetime, active: str | None) -> Measurement:
        """What the pods would read: the active color as a good baseline, the measured
        version as its next drawn kind; each pre/post reading is also fed to the oracle."""
        if action.gate == "Baseline":
            return Measurement("Baseline", action.version, now,
                               {c: FIGURES["good"] for c in action.colors})  # fmt: skip
        key = f"{action.gate}:{action.version}"
        kinds = self.verdicts[key]
        n = self.taken.get(key, 0)
        self.taken[key] = n + 1
        kind = kinds[n % len(kinds)]
        run = self.pre if action.gate == "PrePromotion" else self.post
        assert run is not None and run.phase == "Running", (action, run)
        run.kinds.append(kind)
        if kind == "down":
            return Measurement(action.gate, action.version, now, error="connection refused")
        measured = action.colors[-1]  # the preview before the switch, the active one after
        colors = {c: FIGURES[kind] if c == measured else FIGURES["good"] for c in action.colors}
        return Measurement(action.gate, action.version, now, colors, result=RESULTS[kind])


# With analyses, time must pass between the other events for measurements to fall due.
paced_events = st.one_of(
    *[st.tuples(st.just("tick"), st.sampled_from([5, 31]))] * 8,
    st.tuples(st.just("tick"), st.sampled_from([1, 61, 601])),
    st.tuples(st.just("publish"), st.sampled_from(["1", "2", "3", "4", "5"])),
    st.tuples(st.just("annotate"), st.sampled_from(ANNOTATIONS)),
    st.tuples(st.just("annotate"), st.just(PROMOTE)),  # what an inconclusive verdict waits for
    st.tuples(st.just("crash"), st.sampled_from(["blue", "green"])),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    behaviour=st.fixed_dictionaries({v: st.sampled_from(BEHAVIOURS) for v in "12345"}),
    history=st.lists(events, min_size=1, max_size=40),
    auto_promotion=st.booleans(),
)
def test_invariants_hold_over_any_history(
    behaviour: dict[str, str], history: list[tuple[str, object]], auto_promotion: bool
) -> None:
    world = World(spec_of(auto_promotion), {}, {})
    run_history(world, Cluster(behaviour), history)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    behaviour=st.fixed_dictionaries({v: st.sampled_from(BEHAVIOURS) for v in "12345"}),
    history=st.lists(paced_events, min_size=20, max_size=80),
    auto_promotion=st.booleans(),
    analysis=analyses,
    shadow=st.booleans(),
    verdicts=st.fixed_dictionaries({
        f"{gate}:{v}": st.lists(st.sampled_from(sorted(VERDICTS)), min_size=1, max_size=4)
        for gate in ("PrePromotion", "PostPromotion") for v in "12345"
    }),
)  # fmt: skip
def test_analysis_gates_hold_over_any_history(
    behaviour: dict[str, str], history: list[tuple[str, object]], auto_promotion: bool,
    analysis: dict[str, Any], shadow: bool, verdicts: dict[str, list[str]],
) -> None:  # fmt: skip
    """The same histories with analyses: measurements come back as each version's drawn
    verdicts (cycled), and the harness's oracle judges every promotion and rollback."""
    analysis = without_shadow_conditions(analysis) if not shadow else analysis
    world = World(spec_of(auto_promotion, analysis, shadow), analysis, verdicts)
    run_history(world, Cluster(behaviour), history)


def without_shadow_conditions(analysis: dict[str, Any]) -> dict[str, Any]:
    """Shadow conditions need shadow: without it, errorRatioMax takes their place."""
    if "prePromotion" not in analysis:
        return analysis
    shadowless = {k: v for k, v in analysis["prePromotion"].items()
                  if k not in ("shadowAgreementMin", "shadowMeanAbsDiffMax")}  # fmt: skip
    if not shadowless.keys() & PRE_CONDITIONS.keys():
        shadowless["errorRatioMax"] = PRE_CONDITIONS["errorRatioMax"]
    return {**analysis, "prePromotion": shadowless}


def spec_of(
    auto_promotion: bool, analysis: dict[str, Any] | None = None, shadow: bool = False
) -> ModelDeploymentSpec:
    blue_green: dict[str, Any] = {"autoPromotionEnabled": auto_promotion,
                                  "progressDeadlineSeconds": 600}  # fmt: skip
    if analysis is not None:
        blue_green["analysis"] = analysis
    if shadow:
        blue_green["shadow"] = {"percent": 20}
    return ModelDeploymentSpec.model_validate({
        "model": {"name": "m", "alias": "champion"}, "replicas": 2,
        "strategy": {"blueGreen": blue_green},
    })  # fmt: skip


def run_history(world: World, cluster: Cluster, history: list[tuple[str, object]]) -> None:
    status, now, published = ModelDeploymentStatus(), START, "1"
    for kind, value in [("publish", "1"), *history]:
        annotations: dict[str, str] = {}
        resolution: Resolved | ResolveFailed = Resolved(published, f"models:/m/{published}")
        if kind == "tick":
            now += timedelta(seconds=value)  # type: ignore[arg-type]
        elif kind == "publish":
            published = str(value)
            resolution = Resolved(published, f"models:/m/{published}")
        elif kind == "annotate":
            annotations = {str(value): ""}
            if value == PROMOTE and world.pre is not None and world.pre.phase == "Inconclusive":
                world.pre.promoted_by_hand = True
        elif kind == "crash":
            cluster.crash(str(value))
        else:
            resolution = ResolveFailed("RegistryUnavailable", "down")
        status = reconcile(world.spec, status, cluster, now, resolution, annotations, world)


def reconcile(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, cluster: Cluster, now: datetime,
    resolution: Resolved | ResolveFailed, annotations: dict[str, str], world: World | None = None,
) -> ModelDeploymentStatus:  # fmt: skip
    smoke, measurement = None, None
    for _ in range(4):  # the executor re-plans after a smoke test or a measurement
        if world is not None:
            follow_runs(world, status)
        observed = Observed(
            status=status, annotations=annotations, resolution=resolution,
            colors=dict(cluster.colors),  # type: ignore[arg-type]
            active_selector=cluster.selectors["active"],  # type: ignore[arg-type]
            preview_selector=cluster.selectors["preview"],  # type: ignore[arg-type]
            smoke=smoke, measurement=measurement,
        )  # fmt: skip
        result = plan(spec, observed, now)
        check(status, result, cluster)
        if world is not None:
            check_analyses(world, status, result)
        apply(result, cluster)
        status, annotations = result.status, {}
        tests = [a for a in result.actions if isinstance(a, SmokeTest)]
        measures = [a for a in result.actions if isinstance(a, Measure)]
        if not tests and not measures:
            return status
        smoke = measurement = None
        if tests:
            version = tests[0].version
            smoke = SmokeResult(version, cluster.behaviour[version] != "smoke_fails", "smoke")
        if measures and world is not None:
            measurement = world.measure(measures[0], now, status.active_version)
    return status


def follow_runs(world: World, status: ModelDeploymentStatus) -> None:
    """A new rollout (or switch) starts a new run in the oracle, as it does in the planner."""
    rollout = status.rollout
    key = (rollout.version, rollout.started_at) if rollout else None
    if key != world.pre_of:
        world.pre_of, world.pre = key, oracle(world.analysis.get("prePromotion"))
    run = status.post_promotion_analysis
    key = (run.version, run.started_at) if run else None
    if key != world.post_of:
        world.post_of, world.post = key, oracle(world.analysis.get("postPromotion"))


def check_analyses(world: World, before: ModelDeploymentStatus, result: Plan) -> None:
    after = result.status
    promoted = any(isinstance(a, RolloutFinished) and a.outcome == "promoted"
                   for a in result.actions)  # fmt: skip
    if promoted and before.active_version is not None and world.pre is not None:
        phase = world.pre.phase
        assert phase == "Successful" or (phase == "Inconclusive" and world.pre.promoted_by_hand), (
            world.pre, before.rollout,
        )  # fmt: skip
    # The planner's verdicts are the oracle's (Argo's rules over the same readings).
    rollout = after.rollout
    run = rollout.pre_promotion_analysis if rollout else None
    same = rollout is not None and (rollout.version, rollout.started_at) == world.pre_of
    if run is not None and world.pre is not None and same:
        assert run.phase == world.pre.phase, (run, world.pre)
    post = after.post_promotion_analysis
    if (
        post is not None
        and world.post is not None
        and (post.version, post.started_at) == world.post_of
    ):
        expected = world.post.phase
        # the window may end a run the oracle (which knows no time) still counts as running
        assert post.phase == expected or (expected, post.phase) == ("Running", "Successful"), (
            post, world.post,
        )  # fmt: skip
    running = before.post_promotion_analysis
    failed = world.post is not None and world.post.phase in ("Failed", "Error")
    if running is not None and running.phase == "Running" and failed:
        assert after.active_version != running.version, (world.post, after)
        assert running.version in after.rejected_versions
    if before.rollout is not None and before.rollout.mirroring:
        ended = after.rollout is None or after.rollout.started_at != before.rollout.started_at
        if ended:
            assert any(isinstance(a, StopShadow) for a in result.actions), result.actions


def check(before: ModelDeploymentStatus, result: Plan, cluster: Cluster) -> None:
    after = result.status
    for action in result.actions:
        if isinstance(action, PointService) and action.role == "active":
            state = cluster.colors.get(action.color)
            assert state is not None and state.version == after.active_version, (action, state)
            assert state.available > 0, (action, state)
        if isinstance(action, RolloutFinished) and action.outcome == "promoted":
            assert after.active_version not in after.rejected_versions
            assert after.active_version not in before.rejected_versions or any(
                a for a in result.actions if getattr(a, "key", None) == "turnout.dev/retry"
            )
    if after.rollout is not None:
        assert after.rollout.color != after.active_color
    assert sum(1 for a in result.actions if isinstance(a, RolloutFinished)) <= 2


def apply(result: Plan, cluster: Cluster) -> None:
    for action in result.actions:
        if isinstance(action, DeployColor):
            cluster.deploy(action)
        elif isinstance(action, ScaleColor):
            cluster.scale(action)
        elif isinstance(action, PointService):
            cluster.selectors[action.role] = action.color
