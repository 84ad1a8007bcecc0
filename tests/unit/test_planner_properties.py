"""Property tests of the planner's invariants over random histories.

A small simulated cluster carries out each plan (Deployments become available, crash-loop or
stay stuck according to the version's drawn behaviour; Services follow PointService), the
registry publishes versions, users annotate, time passes. Whatever happens:
- the active Service is only pointed at a color whose pods serve the active version and are
  available;
- at most one rollout is in progress, and never in the active color;
- a rejected version is never promoted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from turnout_operator.domain.actions import (
    DeployColor,
    PointService,
    RolloutFinished,
    ScaleColor,
    SmokeTest,
)
from turnout_operator.domain.observed import (
    ANNOTATIONS,
    ColorState,
    Observed,
    Resolved,
    ResolveFailed,
    SmokeResult,
)
from turnout_operator.domain.planner import Plan, plan
from turnout_operator.domain.spec import BlueGreen, ModelDeploymentSpec, ModelRef, Strategy
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


events = st.one_of(
    st.tuples(st.just("tick"), st.sampled_from([1, 5, 31, 61, 601])),
    st.tuples(st.just("publish"), st.sampled_from(["1", "2", "3", "4", "5"])),
    st.tuples(st.just("annotate"), st.sampled_from(ANNOTATIONS)),
    st.tuples(st.just("crash"), st.sampled_from(["blue", "green"])),
    st.tuples(st.just("registry_down"), st.just(0)),
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
    spec = ModelDeploymentSpec(
        model=ModelRef(name="m", alias="champion"), replicas=2,
        strategy=Strategy(blue_green=BlueGreen(auto_promotion_enabled=auto_promotion,
                                               progress_deadline_seconds=600)),
    )  # fmt: skip
    cluster = Cluster(behaviour)
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
        elif kind == "crash":
            cluster.crash(str(value))
        else:
            resolution = ResolveFailed("RegistryUnavailable", "down")
        status = reconcile(spec, status, cluster, now, resolution, annotations)


def reconcile(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, cluster: Cluster, now: datetime,
    resolution: Resolved | ResolveFailed, annotations: dict[str, str],
) -> ModelDeploymentStatus:  # fmt: skip
    smoke = None
    for _ in range(3):  # the executor re-plans once after a smoke test
        observed = Observed(
            status=status, annotations=annotations, resolution=resolution,
            colors=dict(cluster.colors),  # type: ignore[arg-type]
            active_selector=cluster.selectors["active"],  # type: ignore[arg-type]
            preview_selector=cluster.selectors["preview"],  # type: ignore[arg-type]
            smoke=smoke,
        )  # fmt: skip
        result = plan(spec, observed, now)
        check(status, result, cluster)
        apply(result, cluster)
        status, annotations = result.status, {}
        tests = [a for a in result.actions if isinstance(a, SmokeTest)]
        if not tests:
            return status
        version = tests[0].version
        smoke = SmokeResult(version, cluster.behaviour[version] != "smoke_fails", "smoke")
    return status


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
