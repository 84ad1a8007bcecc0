"""Notifications: which moments of a ModelDeployment's life are worth telling people about, and to
which of the operator's channels each one goes.

The planner marks a moment with a `Notify` action (rollout started, promoted, aborted, rolled
back; the model reference resolving to another version); retraining will mark its own with the
`retraining.*` events defined here. `deliveries()` turns one such action into the notifications
the ModelDeployment's `spec.notifications` asks for, one per selected channel; `formats.py`
renders them. The operator's channels (a name, a URL, a format) come from a Secret through its
settings; a ModelDeployment names channels, never URLs.

Pure: no HTTP here. Sending is notifier.py's, on its own threads, never on the reconcile path.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from turnout_operator.domain.actions import Notify
from turnout_operator.domain.spec import API_VERSION, PLURAL, NotificationEvent, NotificationRoute

EVENTS: tuple[str, ...] = get_args(NotificationEvent)  # CloudEvents type: dev.turnout.<event>
Format = Literal["slack", "json", "cloudevents"]
CHANNEL_NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class Channel(BaseModel):
    """One of the operator's notification channels (a Slack-compatible incoming webhook, or any
    endpoint taking a JSON document or a CloudEvent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=CHANNEL_NAME, description="What spec.notifications calls it.")
    url: str = Field(pattern=r"^https?://\S+$", description="Where to POST (a secret).")
    format: Format = Field("json", description="slack, json or cloudevents.")

    def __repr__(self) -> str:  # the URL is a credential: keep it out of logs
        return f"Channel(name={self.name!r}, format={self.format!r})"

    __str__ = __repr__


def _unique(channels: list[Channel]) -> list[Channel]:
    names = [c.name for c in channels]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"channel names must be unique: {', '.join(twice)} given twice")
    return channels


Channels = Annotated[list[Channel], AfterValidator(_unique)]


@dataclass(frozen=True)
class Notification:
    """One moment to tell one channel about, with everything a format renders."""

    id: str  # the same for every channel and every retry, so receivers can drop repeats
    event: str
    time: str  # RFC 3339, the planner's `now`
    namespace: str
    name: str
    model: str
    version: str
    reason: str
    message: str

    @property
    def source(self) -> str:
        """The ModelDeployment's API path: the CloudEvents `source`."""
        return f"/apis/{API_VERSION}/namespaces/{self.namespace}/{PLURAL}/{self.name}"


def selected(routes: Sequence[NotificationRoute], event: str) -> tuple[str, ...]:
    """The channels `spec.notifications` sends `event` to, each once, in the spec's order."""
    return tuple(dict.fromkeys(r.channel for r in routes if event in r.events))


def deliveries(
    routes: Sequence[NotificationRoute], model: str, namespace: str, name: str, notify: Notify
) -> list[tuple[str, Notification]]:
    """(channel name, notification) for each channel that asked for this moment."""
    channels = selected(routes, notify.event)
    if not channels:
        return []
    key = f"{API_VERSION}/{namespace}/{name}/{notify.event}/{notify.version}/{notify.at}"
    notification = Notification(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, key)), event=notify.event, time=notify.at,
        namespace=namespace, name=name, model=model, version=notify.version,
        reason=notify.reason, message=notify.message,
    )  # fmt: skip
    return [(channel, notification) for channel in channels]


def unknown_channels(
    routes: Sequence[NotificationRoute], configured: Collection[str]
) -> list[tuple[int, str]]:
    """(index in spec.notifications, channel) for each route naming a channel the operator does
    not have."""
    return [(i, r.channel) for i, r in enumerate(routes) if r.channel not in configured]
