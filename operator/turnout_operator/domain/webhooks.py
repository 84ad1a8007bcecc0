"""What a registry webhook delivery means: whether MLflow sent it, and which ModelDeployments it
concerns. Pure: the caller reads the request, the secret and the clock, and acts on the verdict.

MLflow signs a delivery as the Standard Webhooks convention does (mlflow/webhooks/delivery.py):
`X-MLflow-Signature: v1,<base64 HMAC-SHA256>` over `<delivery id>.<timestamp>.<body>`, with the
key the webhook was created with, the Unix `X-MLflow-Timestamp` and the `X-MLflow-Delivery-Id`
(a UUID) in their own headers. The signature covers the id and the timestamp, so checking it first
makes them trustworthy: a stale timestamp is refused (an old capture replayed later), and a
delivery id seen within the window is refused (a capture replayed at once). Only a delivery that
passed both is remembered, so unsigned requests cannot fill the memory of ids.

A refusal never says more than its reason: it must not help a forger.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# MLflow's header names (mlflow/webhooks/constants.py; a unit test compares them).
SIGNATURE = "X-MLflow-Signature"
TIMESTAMP = "X-MLflow-Timestamp"
DELIVERY_ID = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"
HEADERS = (DELIVERY_ID, TIMESTAMP, SIGNATURE)

# Why a delivery is refused: the `reason` label of the deliveries metric, and the answer's code.
MISSING_HEADER = "missing_header"
BAD_SIGNATURE = "bad_signature"
STALE = "stale"
REPLAYED = "replayed"
MALFORMED = "malformed"
TOO_LARGE = "too_large"
REFUSALS = {MISSING_HEADER: 400, BAD_SIGNATURE: 401, STALE: 401, REPLAYED: 409, MALFORMED: 400,
            TOO_LARGE: 413}  # fmt: skip
# What happened to a delivery that was let in.
ACCEPTED = "accepted"  # a registered model's event: its ModelDeployments resolve again
IGNORED = "ignored"  # signed, but of something no ModelDeployment follows (prompts, budgets)
RESULTS = (ACCEPTED, IGNORED, *REFUSALS)

# The entities MLflow sends for registered models; their payloads all carry `data.name`.
MODEL_ENTITIES = frozenset(
    {"registered_model", "model_version", "model_version_tag", "model_version_alias"}
)


@dataclass(frozen=True)
class Refused:
    reason: str  # one of REFUSALS
    message: str

    @property
    def code(self) -> int:
        return REFUSALS[self.reason]


@dataclass(frozen=True)
class RegistryEvent:
    """A verified delivery: `model_version_alias` `created`, of registered model `model`, ..."""

    delivery_id: str
    entity: str
    action: str
    model: str | None  # None: not a registered model's event

    @property
    def result(self) -> str:
        return ACCEPTED if self.model is not None else IGNORED


class DeliveryIds:
    """The delivery ids let in during the last `window_seconds`, at most `size` of them (the
    oldest go first once full). Pure: the caller passes the time."""

    def __init__(self, window_seconds: float, size: int) -> None:
        self.window, self.size = window_seconds, size
        self._seen: OrderedDict[str, float] = OrderedDict()  # id -> when let in, oldest first

    def __contains__(self, delivery_id: str) -> bool:
        return delivery_id in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, delivery_id: str, now: float) -> None:
        self.forget(now)
        self._seen[delivery_id] = now
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)

    def forget(self, now: float) -> None:
        """Drop the ids older than the window: their deliveries are refused as stale anyway."""
        while self._seen and next(iter(self._seen.values())) < now - self.window:
            self._seen.popitem(last=False)


def signature(secret: bytes, delivery_id: str, timestamp: str, body: bytes) -> str:
    """MLflow's signature header value for one delivery."""
    signed = b".".join((delivery_id.encode(), timestamp.encode(), body))
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify(
    secret: bytes, headers: Mapping[str, str], body: bytes, now: float, seen: DeliveryIds,
) -> RegistryEvent | Refused:  # fmt: skip
    """The event one delivery carries, or why it is refused. `headers` must look names up
    case-insensitively (as HTTP's do); `seen` learns the id of a delivery that passes."""
    delivery_id, timestamp, signatures = (headers.get(h) or "" for h in HEADERS)
    missing = [
        h for h, v in zip(HEADERS, (delivery_id, timestamp, signatures), strict=True) if not v
    ]
    if missing:
        return Refused(MISSING_HEADER, f"missing header {', '.join(missing)}")
    if not _signed(secret, delivery_id, timestamp, body, signatures.split()):
        return Refused(BAD_SIGNATURE, f"{SIGNATURE} does not match the body")
    try:
        sent = int(timestamp)
    except ValueError:
        return Refused(MALFORMED, f"{TIMESTAMP} is not a Unix time in seconds")
    if abs(now - sent) > seen.window:
        return Refused(STALE, f"{TIMESTAMP} is more than {seen.window:g} s from the current time")
    if delivery_id in seen:
        return Refused(REPLAYED, f"delivery {delivery_id} was already received")
    event = parse_event(delivery_id, body)
    if isinstance(event, Refused):
        return event
    seen.add(delivery_id, now)
    return event


def _signed(
    secret: bytes, delivery_id: str, timestamp: str, body: bytes, given: Iterable[str]
) -> bool:
    """Whether one of the `v1,...` signatures given is the body's (compared in constant time;
    the Standard Webhooks header may list several, space-separated, during a key rotation)."""
    expected = signature(secret, delivery_id, timestamp, body).split(",", 1)[1]
    found = False
    for each in given:
        version, _, value = each.partition(",")
        found |= version == SIGNATURE_VERSION and hmac.compare_digest(
            value.encode(), expected.encode()
        )
    return found


def parse_event(delivery_id: str, body: bytes) -> RegistryEvent | Refused:
    """The entity, action and registered model name of a delivery's JSON body."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return Refused(MALFORMED, "the body is not JSON")
    if not isinstance(payload, dict):
        return Refused(MALFORMED, "the body is not a JSON object")
    entity, action, data = payload.get("entity"), payload.get("action"), payload.get("data")
    if not isinstance(entity, str) or not isinstance(action, str) or not isinstance(data, dict):
        return Refused(MALFORMED, "the body lacks entity, action or data")
    if entity not in MODEL_ENTITIES:
        return RegistryEvent(delivery_id, entity, action, None)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        return Refused(MALFORMED, f"a {entity} event without data.name")
    return RegistryEvent(delivery_id, entity, action, name)


def following(models: Mapping[tuple[str, str], str], model: str) -> list[tuple[str, str]]:
    """The ModelDeployments ((namespace, name) -> the registered model they serve) that serve
    `model`: those that resolve it again. Which tracking server each names is not compared: the
    delivery does not say which server sent it, and one question too many costs little."""
    return sorted(key for key, name in models.items() if name == model)
