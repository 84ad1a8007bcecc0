"""The operator writes its status as a JSON merge patch (RFC 7386) of the stored one.

What users rely on: whatever status was stored before, applying the patch stores exactly the new
status; and the patch has no null inside a list. A list is replaced whole, so a null inside it is
not a removal but a value: a real API server prunes it, any other server stores it or refuses the
patch (`status.history.0.retiredAt: Invalid value: null`), and the operator must not depend on
which.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kube.patches import merge_patch
from turnout_operator.domain.status import (
    Condition,
    HistoryEntry,
    ModelDeploymentStatus,
    Rollout,
    ScaleDown,
)
from turnout_operator.reconcile import wire

TIME = st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"])
VERSION = st.sampled_from(["1", "2", "3"])
COLOR = st.sampled_from(["blue", "green"])


def made(model: type[Any]) -> Any:
    """The model's constructor, called by field name (hypothesis would add its aliases)."""
    return lambda **fields: model(**fields)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


STATUSES = st.builds(
    made(ModelDeploymentStatus),
    phase=st.sampled_from(["Pending", "Progressing", "Healthy", "Degraded"]),
    observed_generation=maybe(st.integers(1, 5)),
    desired_version=maybe(VERSION),
    active_version=maybe(VERSION),
    active_color=maybe(COLOR),
    model_uri=maybe(st.just("models:/m/1")),
    run_id=maybe(st.just("r1")),
    rejected_versions=st.lists(VERSION, max_size=2),
    history=st.lists(
        st.builds(
            made(HistoryEntry),
            version=VERSION,
            color=COLOR,
            promoted_at=maybe(TIME),
            retired_at=maybe(TIME),
            outcome=st.sampled_from(["Promoted", "Retired"]),
        ),
        max_size=3,
    ),
    conditions=st.lists(
        st.builds(
            made(Condition),
            type=st.sampled_from(["Ready", "Degraded"]),
            status=st.sampled_from(["True", "False"]),
            reason=st.just("R"),
            last_transition_time=TIME,
            observed_generation=maybe(st.integers(1, 5)),
        ),
        max_size=2,
    ),
    rollout=maybe(
        st.builds(
            made(Rollout),
            version=VERSION,
            color=COLOR,
            model_uri=st.just("models:/m/2"),
            run_id=maybe(st.just("r2")),
            started_at=TIME,
            ready_at=maybe(TIME),
            smoke=maybe(st.sampled_from(["Passed", "Failed"])),
            scaled_up_at=maybe(TIME),
        )
    ),
    scale_downs=st.lists(
        st.builds(
            made(ScaleDown),
            color=COLOR,
            version=VERSION,
            at=TIME,
            after=st.sampled_from(["Promotion", "Abort"]),
            run_id=maybe(st.just("r0")),
        ),
        max_size=2,
    ),
    resolved_at=maybe(TIME),
)


def nulls_in_lists(value: Any, in_list: bool = False) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in nulls_in_lists(v, in_list)]
    if isinstance(value, list):
        return [x for item in value for x in nulls_in_lists(item, True)]
    return [value] if in_list and value is None else []


@settings(max_examples=300, deadline=None)
@given(STATUSES, STATUSES)
def test_the_patch_turns_any_stored_status_into_the_new_one(
    before: ModelDeploymentStatus, after: ModelDeploymentStatus
) -> None:
    patch = wire(after)
    assert nulls_in_lists(patch) == []
    stored = merge_patch({"status": before.to_api()}, {"status": patch})
    assert stored["status"] == after.to_api()
    assert ModelDeploymentStatus.model_validate(stored["status"]) == after
