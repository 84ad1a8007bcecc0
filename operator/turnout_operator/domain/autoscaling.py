"""Scale with load, blue-green aware: the planner's steps for spec.autoscaling.

Argo Rollouts' way with a HorizontalPodAutoscaler, applied to two colors: one autoscaler per
ModelDeployment, always on the active color's Deployment, whose replicas it then owns (the
operator reads them instead of forcing spec.replicas). A rollout brings the preview up at
previewReplicaCount and, before the switch, to the count the active color runs at that moment
(following it while the autoscaler still moves it), so the new color takes the traffic at the
scale the old one needed; the autoscaler moves to it with the active Service, and a rollback
moves it back with the Service to the warm color, which kept its count.

Without autoscaling these functions give spec.replicas, and the status's replicas and selector
are what `kubectl scale` (the CRD's scale subresource) reads.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from turnout_operator.domain.actions import Autoscale, RemoveAutoscaler
from turnout_operator.domain.manifests import COLOR_LABEL, NAME_LABEL
from turnout_operator.domain.observed import NO_DEPLOYMENT, ColorState
from turnout_operator.domain.plan_state import Pass
from turnout_operator.domain.spec import ModelDeploymentSpec


def active_replicas(spec: ModelDeploymentSpec, state: ColorState) -> int:
    """The pods the active color should run: spec.replicas; with autoscaling, what the
    autoscaler set on its Deployment (the autoscaler keeps it within its bounds, also when they
    change), minReplicas before there is one."""
    scaling = spec.autoscaling
    if scaling is None:
        return spec.replicas
    if not state.exists or state.replicas == 0:
        return scaling.min_replicas
    return state.replicas


def full_replicas(p: Pass) -> int:
    """The pods a rollout's color runs before it takes the traffic: as many as the active color
    runs now (spec.replicas, or its autoscaled count; the first rollout: minReplicas)."""
    active = p.status.active_color
    return active_replicas(p.spec, p.observed.color(active) if active else NO_DEPLOYMENT)


def keep_autoscaler(p: Pass) -> None:
    """The autoscaler targets the active color: made once a color is active, moved when the
    status's active color moves (a switch, a rollback), removed with spec.autoscaling."""
    active = p.status.active_color
    if p.spec.autoscaling is not None and active is not None:
        p.actions.append(Autoscale(active))
    elif p.spec.autoscaling is None and p.observed.autoscaler is not None:
        p.actions.append(RemoveAutoscaler())


def record_scale(p: Pass) -> None:
    """status.replicas and status.selector: the active color's available pods and its pods'
    label selector, the scale subresource's view."""
    status, active = p.status, p.status.active_color
    if active is None:
        status.replicas, status.selector = None, None
        return
    status.replicas = p.observed.color(active).available
    status.selector = f"{NAME_LABEL}={p.observed.name},{COLOR_LABEL}={active}"
