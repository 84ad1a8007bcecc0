"""How a notification reads on the wire, per channel format: `slack` (a Slack-compatible incoming
webhook's `{"text", "blocks"}`), `json` (one flat JSON document), `cloudevents` (a CloudEvents
1.0 event in structured mode, `application/cloudevents+json`).

Pure: returns the content type and the body; notifier.py POSTs them.
"""

from __future__ import annotations

import json
from typing import Any

from turnout_operator.domain.notifications import Format, Notification

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
TYPE_PREFIX = "dev.turnout."

# What each event says in a chat message: an emoji and a title.
HEADLINES = {
    "rollout.started": (":arrows_counterclockwise:", "rollout started"),
    "rollout.promoted": (":white_check_mark:", "promoted"),
    "rollout.aborted": (":no_entry:", "rollout aborted"),
    "rollout.rolled_back": (":rewind:", "rolled back"),
    "retraining.started": (":hammer_and_wrench:", "retraining started"),
    "retraining.finished": (":package:", "retraining finished"),
    "retraining.failed": (":x:", "retraining failed"),
    "version.resolved": (":label:", "new version"),
}


def data(n: Notification) -> dict[str, Any]:
    """The facts of a notification, as the `json` format and a CloudEvent's `data` carry them."""
    return {
        "namespace": n.namespace, "name": n.name, "model": n.model, "version": n.version,
        "reason": n.reason, "message": n.message,
    }  # fmt: skip


def cloudevent(n: Notification) -> dict[str, Any]:
    """The CloudEvents 1.0 attributes (required: id, source, specversion, type) and data."""
    return {
        "specversion": "1.0",
        "id": n.id,
        "source": n.source,
        "type": TYPE_PREFIX + n.event,
        "subject": f"models:/{n.model}/{n.version}",
        "time": n.time,
        "datacontenttype": "application/json",
        "data": data(n),
    }


def slack(n: Notification) -> dict[str, Any]:
    emoji, title = HEADLINES.get(n.event, (":bell:", n.event))
    where = f"{n.namespace}/{n.name}"
    text = f"{emoji} {where}: {title}, {n.model} version {n.version}: {n.message}"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text":
                f"{emoji} *{where}*: {title}, `{n.model}` version *{n.version}*\n{n.message}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text":
                f"{n.event} · {n.reason} · {n.time}"}]},
        ],
    }  # fmt: skip


def document(n: Notification) -> dict[str, Any]:
    return {"id": n.id, "event": n.event, "time": n.time, **data(n)}


def render(n: Notification, fmt: Format) -> tuple[str, bytes]:
    """(Content-Type, body) of `n` in format `fmt`."""
    if fmt == "cloudevents":
        return CLOUDEVENTS_CONTENT_TYPE, _dump(cloudevent(n))
    return JSON_CONTENT_TYPE, _dump(slack(n) if fmt == "slack" else document(n))


def _dump(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()
