"""Notifications, the pure half: which moments the planner marks (one `Notify` per rollout
started, promoted, aborted, rolled back, and per new version resolved), which channels
`spec.notifications` sends each to, how each format renders it (CloudEvents read back by the
CloudEvents SDK), and that naming a channel the operator lacks is an invalid spec."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from cloudevents.http import from_http
from pydantic import ValidationError

from tests.unit.test_planner import (
    NOW,
    T0,
    in_preview,
    observe,
    promoted_4_with_3_warm,
    serving,
    spec,
    up,
    uri,
)
from tests.unit.test_validation import DEFAULTS
from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import Notify
from turnout_operator.domain.formats import cloudevent, render, slack
from turnout_operator.domain.notifications import EVENTS, Channel, Notification, deliveries
from turnout_operator.domain.observed import ROLLBACK, ColorState, Resolved, SmokeResult
from turnout_operator.domain.planner import Plan, plan
from turnout_operator.domain.spec import ModelDeploymentSpec, NotificationRoute
from turnout_operator.domain.status import HistoryEntry, ModelDeploymentStatus, timestamp
from turnout_operator.domain.validation import check
from turnout_operator.settings import OperatorSettings

AT = timestamp(NOW)


def notified(result: Plan) -> list[tuple[str, str, str]]:
    """(event, version, reason) of each Notify, in order; each stamped with the plan's time."""
    found = [a for a in result.actions if isinstance(a, Notify)]
    assert all(n.at == AT for n in found)
    return [(n.event, n.version, n.reason) for n in found]


def first_deploy() -> Plan:
    return plan(spec(), observe(ModelDeploymentStatus(), resolution=Resolved("3", uri("3"))), NOW)


def promotion() -> Plan:
    colors = {"blue": up("3"), "green": up("4")}
    status = in_preview(smoke="Passed", scaled_up_at=T0, ready_at=T0)
    return plan(spec(), observe(status, colors=colors), NOW)


def abort_by_smoke_test() -> Plan:
    colors = {"blue": up("3"), "green": up("4", 1)}
    smoke = SmokeResult("4", False, "HTTP 500 from /invocations")
    return plan(spec(), observe(in_preview(), colors=colors, smoke=smoke), NOW)


def auto_rollback() -> Plan:
    colors = {"blue": up("3"), "green": ColorState(version="4", replicas=2, failure="OOMKilled")}
    return plan(spec(), observe(promoted_4_with_3_warm(), colors=colors), NOW)


def rollback_by_annotation() -> Plan:
    colors = {"blue": up("3"), "green": up("4")}
    return plan(spec(), observe(promoted_4_with_3_warm(), colors=colors,
                                annotations={ROLLBACK: ""}), NOW)  # fmt: skip


def rollback_by_redeploy() -> Plan:
    status = serving("4", "green")
    status.history.append(HistoryEntry(version="3", color="blue", promoted_at=T0, retired_at=T0,
                                       outcome="Retired"))  # fmt: skip
    return plan(spec(), observe(status, colors={"green": up("4")}, annotations={ROLLBACK: ""}),
                NOW)  # fmt: skip


def alias_moved() -> Plan:
    return plan(spec(), observe(serving("3"), colors={"blue": up("3")},
                                resolution=Resolved("4", uri("4"))), NOW)  # fmt: skip


def resolved_again() -> Plan:
    return plan(spec(), observe(serving("3"), colors={"blue": up("3")},
                                resolution=Resolved("3", uri("3"))), NOW)  # fmt: skip


def waiting_for_pods() -> Plan:
    return plan(spec(), observe(in_preview(), colors={"blue": up("3")}), NOW)


@pytest.mark.parametrize(
    ("situation", "expected"),
    [
        # the first resolution is no news: the rollout it starts is
        (first_deploy, [("rollout.started", "3", R.ROLLOUT_STARTED)]),
        (promotion, [("rollout.promoted", "4", R.PROMOTED)]),
        (abort_by_smoke_test, [("rollout.aborted", "4", R.SMOKE_TEST_FAILED)]),
        (auto_rollback, [("rollout.rolled_back", "4", R.AUTO_ROLLED_BACK)]),
        (rollback_by_annotation, [("rollout.rolled_back", "4", R.ROLLED_BACK)]),
        # rolled back, then the last good version rolls out again
        (
            rollback_by_redeploy,
            [
                ("rollout.rolled_back", "4", R.ROLLED_BACK),
                ("rollout.started", "3", R.ROLLOUT_STARTED),
            ],
        ),
        (
            alias_moved,
            [("version.resolved", "4", R.RESOLVED), ("rollout.started", "4", R.ROLLOUT_STARTED)],
        ),
        (resolved_again, []),
        (waiting_for_pods, []),
    ],
    ids=lambda case: getattr(case, "__name__", ""),
)
def test_the_planner_marks_each_moment_once(situation: Any, expected: list[Any]) -> None:
    assert notified(situation()) == expected


def test_a_rollout_notifies_its_messages() -> None:
    started = next(a for a in first_deploy().actions if isinstance(a, Notify))
    assert started == Notify("rollout.started", "3", R.ROLLOUT_STARTED,
                             "deploying version 3 to blue", AT)  # fmt: skip
    moved = next(a for a in alias_moved().actions if isinstance(a, Notify))
    assert moved.message == "models:/bikes@champion is now version 4 (was 3)"


# --- which channels -----------------------------------------------------------------------------

ROUTES = [
    NotificationRoute(channel="slack-ml", events=["rollout.promoted", "rollout.aborted"]),
    NotificationRoute(channel="events", events=["rollout.started", "rollout.promoted"]),
    NotificationRoute(channel="slack-ml", events=["rollout.promoted"]),
]
PROMOTED = Notify("rollout.promoted", "4", R.PROMOTED, "version 4 (green) is active", AT)


def test_each_selected_channel_gets_the_moment_once_with_one_id() -> None:
    sent = deliveries(ROUTES, "bikes", "ml", "bikes", PROMOTED)
    assert [channel for channel, _ in sent] == ["slack-ml", "events"]
    key = f"turnout.dev/v1alpha1/ml/bikes/rollout.promoted/4/{AT}"
    expected = Notification(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, key)), event="rollout.promoted", time=AT,
        namespace="ml", name="bikes", model="bikes", version="4", reason=R.PROMOTED,
        message="version 4 (green) is active",
    )  # fmt: skip
    assert [n for _, n in sent] == [expected, expected]


def test_an_event_no_route_selects_goes_nowhere() -> None:
    rolled_back = Notify("rollout.rolled_back", "4", R.ROLLED_BACK, "back to 3", AT)
    assert deliveries(ROUTES, "bikes", "ml", "bikes", rolled_back) == []
    assert deliveries([], "bikes", "ml", "bikes", PROMOTED) == []


# --- formats ------------------------------------------------------------------------------------

NOTE = deliveries(ROUTES, "bikes", "ml", "bikes", PROMOTED)[0][1]


def test_cloudevents_structured_mode_as_the_cloudevents_sdk_reads_it() -> None:
    content_type, body = render(NOTE, "cloudevents")
    assert content_type == "application/cloudevents+json; charset=utf-8"
    event = from_http({"content-type": content_type}, body)
    assert event["specversion"] == "1.0"
    assert event["id"] == NOTE.id
    assert event["source"] == "/apis/turnout.dev/v1alpha1/namespaces/ml/modeldeployments/bikes"
    assert event["type"] == "dev.turnout.rollout.promoted"
    assert event["subject"] == "models:/bikes/4"
    assert event["time"] == AT == "2026-11-23T12:00:00Z"
    assert event["datacontenttype"] == "application/json"
    assert event.data == {
        "namespace": "ml", "name": "bikes", "model": "bikes", "version": "4",
        "reason": "Promoted", "message": "version 4 (green) is active",
    }  # fmt: skip
    assert json.loads(body) == cloudevent(NOTE)


def test_every_event_is_a_cloudevents_type_of_turnout() -> None:
    for event in EVENTS:
        note = Notification(**{**NOTE.__dict__, "event": event})
        assert from_http(*_wire(note))["type"] == f"dev.turnout.{event}"


def _wire(note: Notification) -> tuple[dict[str, str], bytes]:
    content_type, body = render(note, "cloudevents")
    return {"content-type": content_type}, body


def test_slack_gets_text_and_blocks() -> None:
    content_type, body = render(NOTE, "slack")
    assert content_type == "application/json; charset=utf-8"
    assert json.loads(body) == slack(NOTE) == {
        "text": ":white_check_mark: ml/bikes: promoted, bikes version 4: version 4 (green) is "
        "active",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text":
                ":white_check_mark: *ml/bikes*: promoted, `bikes` version *4*\n"
                "version 4 (green) is active"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text":
                f"rollout.promoted · Promoted · {AT}"}]},
        ],
    }  # fmt: skip


def test_json_is_one_flat_document() -> None:
    content_type, body = render(NOTE, "json")
    assert content_type == "application/json; charset=utf-8"
    assert json.loads(body) == {
        "id": NOTE.id, "event": "rollout.promoted", "time": AT, "namespace": "ml",
        "name": "bikes", "model": "bikes", "version": "4", "reason": "Promoted",
        "message": "version 4 (green) is active",
    }  # fmt: skip


# --- the spec and the operator's channels -------------------------------------------------------

RAW = {"model": {"name": "m", "version": "1"}}


def test_a_channel_the_operator_lacks_is_an_invalid_spec_naming_the_field() -> None:
    raw = {**RAW, "notifications": [
        {"channel": "slack-ml", "events": ["rollout.promoted"]},
        {"channel": "pagerduty", "events": ["rollout.aborted"]},
    ]}  # fmt: skip
    checked = check("m", "ml", raw, DEFAULTS, ("slack-ml", "events"))
    assert [str(p) for p in checked.problems] == [
        "spec.notifications[1].channel: no notification channel 'pagerduty' is configured in "
        "the operator (configured: events, slack-ml)"
    ]
    assert check("m", "ml", raw, DEFAULTS, ()).why.endswith("(configured: none)")
    assert check("m", "ml", raw, DEFAULTS, ("slack-ml", "pagerduty")).problems == ()


def test_an_unknown_event_or_an_empty_route_is_refused() -> None:
    bad = {**RAW, "notifications": [{"channel": "a", "events": ["rollout.exploded"]}]}
    (problem,) = check("m", "ml", bad, DEFAULTS, ("a",)).problems
    assert problem.field == "spec.notifications.0.events.0"
    with pytest.raises(ValidationError, match="at least 1 item"):
        ModelDeploymentSpec.model_validate({**RAW, "notifications": [{"channel": "a",
                                                                       "events": []}]})  # fmt: skip


def test_channels_come_from_the_settings_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNOUT_OPERATOR_NOTIFICATION_CHANNELS", json.dumps([
        {"name": "slack-ml", "url": "https://hooks.slack.com/services/T/B/x", "format": "slack"},
        {"name": "events", "url": "http://broker.knative-eventing.svc/ml", "format": "cloudevents"},
    ]))  # fmt: skip
    channels = OperatorSettings().notification_channels
    assert channels == [
        Channel(name="slack-ml", url="https://hooks.slack.com/services/T/B/x", format="slack"),
        Channel(name="events", url="http://broker.knative-eventing.svc/ml", format="cloudevents"),
    ]
    # a webhook URL is a credential: never in a log line made of the settings or a channel
    assert "hooks.slack.com" not in repr(channels) + str(channels[0]) + repr(OperatorSettings())


@pytest.mark.parametrize(
    ("channels", "why"),
    [
        ([{"name": "a", "url": "http://x/1"}, {"name": "a", "url": "http://x/2"}],
         "channel names must be unique: a given twice"),
        ([{"name": "a", "url": "http://x", "format": "teams"}], "'slack', 'json' or 'cloudevents'"),
        ([{"name": "a", "url": "ftp://x"}], "should match pattern"),
        ([{"name": "Slack ML", "url": "http://x"}], "should match pattern"),
    ],
)  # fmt: skip
def test_bad_channels_stop_the_operator_at_start(channels: list[Any], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        OperatorSettings(notification_channels=channels)


def test_the_moment_is_stamped_with_the_plans_time_not_the_senders() -> None:
    later = NOW + timedelta(hours=1)
    result = plan(spec(), observe(ModelDeploymentStatus(), resolution=Resolved("3", uri("3"))),
                  later)  # fmt: skip
    assert [a.at for a in result.actions if isinstance(a, Notify)] == [timestamp(later)]
