"""The chart's notification channels: kept in a Secret (the chart's own, from values, or the
user's), handed to the operator as TURNOUT_OPERATOR_NOTIFICATION_CHANNELS in exactly the form
its settings parse, and the operator restarted when the chart's own channels change."""

from __future__ import annotations

import json

from tests.chart.conftest import operator_container
from tests.manifests import Helm, find, one
from turnout_operator.domain.notifications import Channel
from turnout_operator.settings import OperatorSettings

CHAT = ("operator.notifications.channels[0].name=chat",
        "operator.notifications.channels[0].url=https://hooks.slack.com/services/T/B/x",
        "operator.notifications.channels[0].format=slack")  # fmt: skip


def channels_env(docs: list[dict]) -> dict:  # type: ignore[type-arg]
    container = operator_container(docs)
    return next(
        e for e in container["env"] if e["name"] == "TURNOUT_OPERATOR_NOTIFICATION_CHANNELS"
    )


def test_channels_from_values_go_through_the_charts_secret(helm: Helm) -> None:
    docs = helm.template(None, *CHAT, "operator.notifications.retries=8",
                         "operator.notifications.timeoutSeconds=2")  # fmt: skip
    secret = one(docs, "Secret")
    assert secret["metadata"]["name"] == "turnout-operator-notifications"
    assert channels_env(docs)["valueFrom"] == {
        "secretKeyRef": {"name": "turnout-operator-notifications", "key": "channels.json"}
    }
    raw = secret["stringData"]["channels.json"]
    settings = OperatorSettings(notification_channels=json.loads(raw))
    assert settings.notification_channels == [
        Channel(name="chat", url="https://hooks.slack.com/services/T/B/x", format="slack")
    ]
    env = {e["name"]: e.get("value") for e in operator_container(docs)["env"]}
    assert (env["TURNOUT_OPERATOR_NOTIFICATION_RETRIES"],
            env["TURNOUT_OPERATOR_NOTIFICATION_TIMEOUT_SECONDS"]) == ("8", "2")  # fmt: skip


def test_a_change_of_channels_restarts_the_operator(helm: Helm) -> None:
    def checksum(*sets: str) -> str:
        deployment = one(helm.template(None, *sets), "Deployment")
        return str(
            deployment["spec"]["template"]["metadata"]["annotations"]["checksum/notifications"]
        )

    other = (*CHAT[:1], "operator.notifications.channels[0].url=https://hooks.slack.com/o", CHAT[2])
    assert checksum(*CHAT) != checksum(*other)
    assert checksum(*CHAT) == checksum(*CHAT, "operator.logLevel=debug")


def test_an_existing_secret_is_read_and_none_is_made(helm: Helm) -> None:
    docs = helm.template(None, *CHAT, "operator.notifications.existingSecret=ml-hooks",
                         "operator.notifications.secretKey=hooks")  # fmt: skip
    assert find(docs, "Secret") == []
    assert channels_env(docs)["valueFrom"] == {"secretKeyRef": {"name": "ml-hooks", "key": "hooks"}}


def test_no_channels_no_secret_and_no_variable(helm: Helm) -> None:
    docs = helm.template()
    assert find(docs, "Secret") == []
    names = [e["name"] for e in operator_container(docs)["env"]]
    assert "TURNOUT_OPERATOR_NOTIFICATION_CHANNELS" not in names


def test_the_schema_refuses_a_format_the_operator_lacks(helm: Helm) -> None:
    message = helm.template_error(*CHAT[:2], "operator.notifications.channels[0].format=teams")
    assert (
        "- at '/operator/notifications/channels/0/format': value must be one of 'slack', "
        "'json', 'cloudevents'" in message
    )
