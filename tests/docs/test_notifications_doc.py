"""docs/notifications.md shows what the operator sends: its channels list is one the operator
accepts, its ModelDeployment routes the worked example's promotion to both channels, and the
Slack message and the CloudEvent of the worked example are the operator's own, byte for byte
once parsed."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.conftest import ROOT
from tests.docs.markdown import Block, blocks
from turnout_operator.domain import reasons as R
from turnout_operator.domain.actions import Notify
from turnout_operator.domain.formats import render
from turnout_operator.domain.notifications import deliveries
from turnout_operator.domain.spec import ModelDeploymentSpec
from turnout_operator.settings import OperatorSettings

DOC = blocks(ROOT / "docs" / "notifications.md")
PROMOTED = Notify("rollout.promoted", "4", R.PROMOTED, "version 4 (green) is active",
                  "2026-11-23T12:00:00Z")  # fmt: skip


def of(lang: str) -> list[Block]:
    return [b for b in DOC if b.lang == lang]


def body(block: Block) -> Any:
    return json.loads("\n".join(block.lines))


def worked_example() -> dict[str, tuple[str, bytes]]:
    """channel -> (Content-Type, body) of the promotion, as the operator renders it."""
    [manifest] = of("yaml")
    md = yaml.safe_load("\n".join(manifest.lines))
    spec = ModelDeploymentSpec.model_validate(md["spec"])
    [channels_json, _, _] = of("json")
    channels = {c.name: c for c in OperatorSettings(notification_channels=body(channels_json))
                .notification_channels}  # fmt: skip
    sent = deliveries(spec.notifications, spec.model.name, md["metadata"]["namespace"],
                      md["metadata"]["name"], PROMOTED)  # fmt: skip
    return {name: render(note, channels[name].format) for name, note in sent}


def test_the_promotion_goes_to_both_channels_of_the_example() -> None:
    assert sorted(worked_example()) == ["events", "ml-team"]


def test_the_slack_message_is_the_operators() -> None:
    [_, slack, _] = of("json")
    assert body(slack) == json.loads(worked_example()["ml-team"][1])


def test_the_cloudevent_is_the_operators() -> None:
    [_, _, event] = of("json")
    content_type, sent = worked_example()["events"]
    assert f"`Content-Type: {content_type}`" in (ROOT / "docs" / "notifications.md").read_text()
    assert body(event) == json.loads(sent)
