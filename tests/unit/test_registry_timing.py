"""When the operator asks the registry again: on a spec change, at the poll interval for an alias
or stage, and with a doubling backoff (capped) while the registry fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from turnout_operator.domain import reasons as R
from turnout_operator.domain.spec import ModelDeploymentSpec, ModelRef, RegistrySpec
from turnout_operator.domain.status import ModelDeploymentStatus, set_condition, timestamp
from turnout_operator.reconcile import _resolve_due, registry_period

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
RETRY = 10.0


def spec(**model: str) -> ModelDeploymentSpec:
    return ModelDeploymentSpec(
        model=ModelRef(name="bikes", **model), registry=RegistrySpec(poll_interval_seconds=60)
    )


def status(resolved: str, failing_since: float, last_try: float = 0.0) -> ModelDeploymentStatus:
    """ModelResolved=`resolved` since `failing_since` seconds before NOW; the registry was last
    asked `last_try` seconds before NOW."""
    since = NOW - timedelta(seconds=failing_since)
    conditions = set_condition([], R.MODEL_RESOLVED, resolved, "Whatever", "", since, 1)  # type: ignore[arg-type]
    return ModelDeploymentStatus(
        observed_generation=1,
        desired_version="3",
        resolved_at=timestamp(NOW - timedelta(seconds=last_try)),
        conditions=conditions,
    )


@pytest.mark.parametrize(
    ("failing_for", "period"),
    [(0, RETRY), (RETRY, RETRY), (2 * RETRY, 2 * RETRY), (100, 100), (3600, 300)],
)
def test_a_failing_registry_is_asked_again_after_as_long_as_it_has_been_failing(
    failing_for: float, period: float
) -> None:
    assert registry_period(spec(version="3"), status("False", failing_for), RETRY) == period


def test_a_healthy_registry_is_polled_only_for_an_alias_or_a_stage() -> None:
    assert registry_period(spec(alias="champion"), status("True", 0), RETRY) == 60
    assert registry_period(spec(stage="Production"), status("True", 0), RETRY) == 60
    assert registry_period(spec(version="3"), status("True", 0), RETRY) is None


def test_the_backoff_holds_until_due_and_a_spec_change_asks_at_once() -> None:
    failing = status("False", failing_since=40, last_try=20)  # failing 20 s at the last try
    assert not _resolve_due(spec(version="3"), failing, 1, NOW - timedelta(seconds=1), RETRY)
    assert _resolve_due(spec(version="3"), failing, 1, NOW, RETRY)
    assert _resolve_due(spec(version="3"), failing, 2, NOW - timedelta(seconds=15), RETRY)
