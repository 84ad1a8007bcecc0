"""Builders of the scaling objects a ModelDeployment owns: its HorizontalPodAutoscaler
(autoscaling/v2, on the active color's Deployment) and one PodDisruptionBudget per color
(policy/v1). Plain dicts from arguments only, as manifests.py builds the Deployments."""

from __future__ import annotations

from typing import Any

from turnout_operator.domain.manifests import COLOR_LABEL, deployment_name, labels, selector
from turnout_operator.domain.spec import COLORS, Autoscaling, Color, DisruptionBudget


def autoscaler_name(name: str) -> str:
    return name


def disruption_budget_name(name: str, color: Color) -> str:
    return deployment_name(name, color)


def build_autoscaler(
    name: str, namespace: str, color: Color, scaling: Autoscaling
) -> dict[str, Any]:
    metrics: list[dict[str, Any]] = []
    if scaling.metrics.cpu_utilization is not None:
        metrics.append(
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {
                        "type": "Utilization",
                        "averageUtilization": scaling.metrics.cpu_utilization,
                    },
                },
            }
        )
    if scaling.metrics.pods is not None:
        pods = scaling.metrics.pods
        metrics.append(
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": pods.name},
                    "target": {"type": "AverageValue", "averageValue": pods.average_value},
                },
            }
        )
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": autoscaler_name(name),
            "namespace": namespace,
            "labels": {**labels(name), COLOR_LABEL: color},
        },
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": deployment_name(name, color),
            },
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": metrics,
        },
    }


def autoscaler_color(hpa: dict[str, Any]) -> Color | None:
    """The color an autoscaler of ours targets (its label, set with its scaleTargetRef)."""
    color = ((hpa.get("metadata") or {}).get("labels") or {}).get(COLOR_LABEL)
    return next((c for c in COLORS if c == color), None)


def build_disruption_budget(
    name: str, namespace: str, color: Color, budget: DisruptionBudget | None
) -> dict[str, Any]:
    """`maxUnavailable: 1` unless the spec sets minAvailable."""
    limit: dict[str, int] = (
        {"maxUnavailable": 1}
        if budget is None or budget.min_available is None
        else {"minAvailable": budget.min_available}
    )
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": disruption_budget_name(name, color),
            "namespace": namespace,
            "labels": {**labels(name), COLOR_LABEL: color},
        },
        "spec": {**limit, "selector": {"matchLabels": selector(name, color)}},
    }
