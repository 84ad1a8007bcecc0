"""Scaling with load, blue-green aware (domain/autoscaling.py, domain/scaling_manifests.py):
the autoscaler follows the active color, the preview is brought to the active color's count
before it takes the traffic, a rollback moves the autoscaler back; the objects as built. Then
two properties over random histories of load, releases and rollbacks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.unit.test_planner import (
    NOW,
    condition,
    in_preview,
    observe,
    serving,
    up,
    uri,
)
from tests.unit.test_planner import promoted_4_with_3_warm as warm_3_behind_4
from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import (
    Action,
    Autoscale,
    DeployColor,
    PointService,
    RemoveAutoscaler,
    ScaleColor,
)
from turnout_operator.domain.manifests import Defaults, build_deployment
from turnout_operator.domain.observed import ROLLBACK, ColorState, Observed, Resolved
from turnout_operator.domain.planner import plan
from turnout_operator.domain.scaling_manifests import (
    autoscaler_color,
    build_autoscaler,
    build_disruption_budget,
)
from turnout_operator.domain.spec import (
    Autoscaling,
    BlueGreen,
    DisruptionBudget,
    ModelDeploymentSpec,
    ModelRef,
    PodsMetric,
    PodTemplate,
    ScalingMetrics,
    Strategy,
)
from turnout_operator.domain.status import ModelDeploymentStatus

SELECTOR = "turnout.dev/model-deployment=bikes,turnout.dev/color="


def scaled(
    min_replicas: int = 2, max_replicas: int = 6, **blue_green: object
) -> ModelDeploymentSpec:
    return ModelDeploymentSpec(
        model=ModelRef(name="bikes", alias="champion"),
        replicas=2,  # ignored with autoscaling
        strategy=Strategy(blue_green=BlueGreen(**blue_green)),  # type: ignore[arg-type]
        autoscaling=Autoscaling(min_replicas=min_replicas, max_replicas=max_replicas),
    )


def autoscaled(color: str, version: str, replicas: int) -> DeployColor:
    return DeployColor(color, version, uri(version), replicas, autoscaled=True)  # type: ignore[arg-type]


def of_kind(actions: tuple[Action, ...], *kinds: type) -> list[Action]:
    return [a for a in actions if isinstance(a, kinds)]


# --- the planner -----------------------------------------------------------------------------


def test_the_first_deploy_starts_at_min_replicas_and_gets_no_autoscaler_until_active() -> None:
    empty = Observed(status=ModelDeploymentStatus(), name="bikes", namespace="ml",
                     resolution=Resolved("1", uri("1")))  # fmt: skip
    result = plan(scaled(min_replicas=3), empty, NOW)
    assert of_kind(result.actions, DeployColor, Autoscale) == [
        DeployColor("blue", "1", uri("1"), 3), DeployColor("blue", "1", uri("1"), 3),
    ]  # fmt: skip
    assert (result.status.replicas, result.status.selector) == (None, None)


@pytest.mark.parametrize(("hpa_count", "available"), [(5, 5), (2, 1), (9, 9)])
def test_the_active_color_keeps_the_autoscalers_count(hpa_count: int, available: int) -> None:
    """Whatever the autoscaler set (9 is above maxReplicas: bounds just lowered, the autoscaler
    brings it down itself), the operator keeps it and says so."""
    state = ColorState(version="3", replicas=hpa_count, available=available)
    result = plan(scaled(), observe(serving(), colors={"blue": state}, autoscaler="blue"), NOW)
    assert of_kind(result.actions, DeployColor, Autoscale, ScaleColor) == [
        autoscaled("blue", "3", hpa_count), Autoscale("blue"),
    ]  # fmt: skip
    assert (result.status.replicas, result.status.selector) == (available, SELECTOR + "blue")
    assert condition(result, R.READY) == ("True", R.AVAILABLE)
    assert result.status.message == f"version 3 (blue): {available}/{hpa_count} pods available"


def test_without_autoscaling_the_status_reports_the_active_pods_for_kubectl_scale() -> None:
    spec = scaled().model_copy(update={"autoscaling": None, "replicas": 3})
    result = plan(spec, observe(serving(), colors={"blue": up("3", 2)}), NOW)
    assert of_kind(result.actions, DeployColor, Autoscale, RemoveAutoscaler) == [
        DeployColor("blue", "3", uri("3"), 3),
    ]
    assert (result.status.replicas, result.status.selector) == (2, SELECTOR + "blue")


def test_dropping_autoscaling_removes_the_autoscaler_and_spec_replicas_rule_again() -> None:
    spec = scaled().model_copy(update={"autoscaling": None})
    result = plan(spec, observe(serving(), colors={"blue": up("3", 5)}, autoscaler="blue"), NOW)
    assert of_kind(result.actions, DeployColor, Autoscale, RemoveAutoscaler) == [
        DeployColor("blue", "3", uri("3"), 2), RemoveAutoscaler(),
    ]  # fmt: skip


def test_the_preview_follows_the_active_count_up_to_the_switch_then_takes_the_autoscaler() -> None:
    # ready in preview at previewReplicaCount (1) while the autoscaler runs blue at 5
    colors = {"blue": up("3", 5), "green": up("4", 1)}
    scaling = plan(scaled(smoke_test=False), observe(in_preview(), colors=colors,
                                                     autoscaler="blue"), NOW)  # fmt: skip
    assert of_kind(scaling.actions, DeployColor, PointService, Autoscale) == [
        DeployColor("green", "4", uri("4"), 5), autoscaled("blue", "3", 5), Autoscale("blue"),
    ]  # fmt: skip
    assert condition(scaling, R.PROGRESSING) == ("True", R.SCALING_UP)
    assert scaling.status.message == "scaling green to 5"
    # the load grows meanwhile: the autoscaler takes blue to 6, green (at 5) follows
    later = NOW + timedelta(seconds=5)
    colors = {"blue": up("3", 6), "green": up("4", 5)}
    following = plan(scaled(smoke_test=False), observe(scaling.status, colors=colors,
                                                       autoscaler="blue"), later)  # fmt: skip
    assert of_kind(following.actions, DeployColor, PointService, Autoscale) == [
        DeployColor("green", "4", uri("4"), 6), autoscaled("blue", "3", 6), Autoscale("blue"),
    ]  # fmt: skip
    assert following.status.message == "5/6 pods of version 4 available"
    assert following.status.active_color == "blue"
    # green runs 6: the switch, and the autoscaler moves to green with the active Service
    colors = {"blue": up("3", 6), "green": up("4", 6)}
    switched = plan(scaled(smoke_test=False), observe(following.status, colors=colors,
                                                      autoscaler="blue"), later)  # fmt: skip
    assert of_kind(switched.actions, DeployColor, PointService, Autoscale) == [
        PointService("active", "green"), PointService("preview", "green"),
        autoscaled("green", "4", 6), Autoscale("green"),
    ]  # fmt: skip
    assert (switched.status.active_color, switched.status.replicas) == ("green", 6)
    assert switched.status.selector == SELECTOR + "green"


def test_a_rollback_moves_the_autoscaler_back_to_the_warm_color_at_its_own_count() -> None:
    colors = {"blue": up("3", 4), "green": up("4", 6)}
    result = plan(scaled(), observe(warm_3_behind_4(), colors=colors, autoscaler="green",
                                    resolution=Resolved("4", uri("4")),
                                    annotations={ROLLBACK: "now"}), NOW)  # fmt: skip
    assert of_kind(result.actions, DeployColor, PointService, Autoscale) == [
        PointService("active", "blue"), PointService("preview", "blue"),
        autoscaled("blue", "3", 4), Autoscale("blue"),
    ]  # fmt: skip
    assert (result.status.active_color, result.status.replicas) == ("blue", 4)


# --- the objects ------------------------------------------------------------------------------


def test_the_autoscaler_targets_one_colors_deployment_with_the_metrics_asked_for() -> None:
    scaling = Autoscaling(min_replicas=2, max_replicas=8, metrics=ScalingMetrics(
        cpu_utilization=70, pods=PodsMetric(average_value="4")))  # fmt: skip
    hpa = build_autoscaler("bikes", "ml", "green", scaling)
    assert hpa["metadata"]["name"] == "bikes"
    assert autoscaler_color(hpa) == "green"
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "bikes-green"},
        "minReplicas": 2,
        "maxReplicas": 8,
        "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": 70}}},
            {"type": "Pods", "pods": {"metric": {"name": "turnout_inference_in_flight"},
                                      "target": {"type": "AverageValue", "averageValue": "4"}}},
        ],
    }  # fmt: skip


def test_cpu_at_80_percent_is_the_default_metric() -> None:
    hpa = build_autoscaler("bikes", "ml", "blue", Autoscaling(max_replicas=4))
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 80}}}]  # fmt: skip
    assert hpa["spec"]["minReplicas"] == 1


@pytest.mark.parametrize(("budget", "limit"), [
    (None, {"maxUnavailable": 1}),
    (DisruptionBudget(), {"maxUnavailable": 1}),
    (DisruptionBudget(min_available=2), {"minAvailable": 2}),
])  # fmt: skip
def test_each_color_has_a_disruption_budget(
    budget: DisruptionBudget, limit: dict[str, int]
) -> None:
    pdb = build_disruption_budget("bikes", "ml", "blue", budget)
    assert (pdb["apiVersion"], pdb["kind"], pdb["metadata"]["name"]) == (
        "policy/v1", "PodDisruptionBudget", "bikes-blue")  # fmt: skip
    assert pdb["spec"] == {**limit, "selector": {"matchLabels": {
        "turnout.dev/model-deployment": "bikes", "turnout.dev/color": "blue"}}}  # fmt: skip


def test_pods_spread_over_nodes_unless_the_template_says_otherwise() -> None:
    defaults = Defaults(image="turnout-serve:1", tracking_uri="http://mlflow")
    spec = scaled()
    pod = build_deployment("bikes", "ml", "blue", "3", uri("3"), 2, spec, defaults)
    assert pod["spec"]["template"]["spec"]["topologySpreadConstraints"] == [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"turnout.dev/model-deployment": "bikes",
                                          "turnout.dev/color": "blue"}},
    }]  # fmt: skip
    zones = [{"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone",
              "whenUnsatisfiable": "DoNotSchedule"}]  # fmt: skip
    own = spec.model_copy(update={"template": PodTemplate(topology_spread_constraints=zones)})
    pod = build_deployment("bikes", "ml", "blue", "3", uri("3"), 2, own, defaults)
    assert pod["spec"]["template"]["spec"]["topologySpreadConstraints"] == zones


@pytest.mark.parametrize(("autoscaling", "message"), [
    ({"minReplicas": 5, "maxReplicas": 4}, "autoscaling.minReplicas may be at most maxReplicas"),
    ({"maxReplicas": 4, "metrics": {}}, "autoscaling.metrics needs cpuUtilization or pods"),
])  # fmt: skip
def test_autoscaling_that_cannot_work_is_refused_saying_why(
    autoscaling: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelDeploymentSpec.model_validate(
            {"model": {"name": "bikes", "version": "1"}, "autoscaling": autoscaling}
        )


# --- properties -------------------------------------------------------------------------------


@dataclass
class Cluster:
    """Deployments that become available at once, Services, and an autoscaler that sets its
    target Deployment's replicas to what the load asks for (within its bounds)."""

    colors: dict[str, ColorState] = field(default_factory=dict)
    active: str | None = None
    preview: str | None = None
    hpa: str | None = None
    # promotions: (the color, its pods, the pods of the color it replaced) at the switch
    switches: list[tuple[str, int, int]] = field(default_factory=list)

    def carry_out(self, actions: tuple[Action, ...], rolling_back: bool) -> None:
        for a in actions:
            match a:
                case DeployColor(color, version, _, replicas, keep):
                    state = self.colors.get(color)
                    if keep and state is not None and state.exists:
                        replicas = state.replicas
                    self.colors[color] = ColorState(version, replicas, available=replicas)
                case ScaleColor(color, replicas) if color in self.colors:
                    state = self.colors[color]
                    self.colors[color] = ColorState(state.version, replicas, available=replicas)
                case PointService("active", color):
                    if color != self.active and self.active is not None and not rolling_back:
                        running = self.colors[self.active].replicas
                        self.switches.append((color, self.colors[color].replicas, running))
                    self.active = color
                case PointService("preview", color):
                    self.preview = color
                case Autoscale(color):
                    self.hpa = color
                case RemoveAutoscaler():
                    self.hpa = None

    def load(self, wanted: int, scaling: Autoscaling) -> None:
        if self.hpa is not None and self.hpa in self.colors:
            state = self.colors[self.hpa]
            count = max(scaling.min_replicas, min(scaling.max_replicas, wanted))
            self.colors[self.hpa] = ColorState(state.version, count, available=count)


steps = st.lists(
    st.one_of(
        st.tuples(st.just("load"), st.integers(1, 12)),
        st.tuples(st.just("release"), st.integers(2, 6)),
        st.tuples(st.just("rollback"), st.just(0)),
        st.tuples(st.just("wait"), st.sampled_from([1, 10, 40])),
    ),
    min_size=1, max_size=25,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(steps=steps, bounds=st.tuples(st.integers(1, 4), st.integers(0, 6)),
       preview_count=st.integers(1, 3))  # fmt: skip
def test_the_autoscaler_follows_the_active_color_and_no_switch_leaves_pods_behind(
    steps: list[tuple[str, int]], bounds: tuple[int, int], preview_count: int
) -> None:
    """Whatever the load, the releases and the rollbacks: after every reconcile the autoscaler
    targets the active color, and the new color never takes the traffic with fewer pods than
    the color it replaces ran at that moment (a rollback goes back to the warm color as it is)."""
    spec = scaled(bounds[0], bounds[0] + bounds[1], smoke_test=False,
                  preview_replica_count=preview_count, scale_down_delay_seconds=30)  # fmt: skip
    assert spec.autoscaling is not None
    cluster, now, version = Cluster(), NOW, 1
    status = ModelDeploymentStatus()
    for kind, value in [("wait", 1), *steps]:
        annotations = {}
        if kind == "load":
            cluster.load(value, spec.autoscaling)
        elif kind == "release":
            version += 1
        elif kind == "rollback":
            annotations = {ROLLBACK: "now"}
        else:
            now += timedelta(seconds=value)
        for _ in range(3):  # a few reconciles: the cluster catches up between them
            observed = Observed(
                status=status, name="bikes", namespace="ml", annotations=annotations,
                resolution=Resolved(str(version), uri(str(version))),
                colors=dict(cluster.colors),  # type: ignore[arg-type]
                active_selector=cluster.active, preview_selector=cluster.preview,  # type: ignore[arg-type]
                autoscaler=cluster.hpa,  # type: ignore[arg-type]
            )  # fmt: skip
            result = plan(spec, observed, now)
            cluster.carry_out(result.actions, rolling_back=bool(annotations))
            status, annotations = result.status, {}
            assert cluster.hpa == status.active_color
    for color, its, replaced in cluster.switches:
        assert its >= replaced, (color, its, replaced)
