"""Registry webhook deliveries: a delivery MLflow signed is let in and names its registered model;
a tampered, unsigned, stale or replayed one is refused with its reason. MLflow's own signing code
(mlflow/webhooks/delivery.py) and example payloads are the reference."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlflow.entities.webhook import VALID_ENTITY_ACTIONS, WebhookEntity, WebhookEvent
from mlflow.webhooks import constants
from mlflow.webhooks.delivery import _generate_hmac_signature
from mlflow.webhooks.types import get_example_payload_for_event
from multidict import CIMultiDict

from turnout_operator.domain import webhooks as W

SECRET = "s3cret-from-a-Secret"
NOW = 1_760_000_000.0
DELIVERY = "5b0f9a4e-6c1d-4a53-9d1e-2f4f0f3d9c11"


def envelope(entity: str, action: str, data: dict[str, Any]) -> bytes:
    """A body as MLflow's delivery builds it."""
    return json.dumps({"entity": entity, "action": action,
                       "timestamp": "2025-10-09T08:53:20+00:00", "data": data}).encode()  # fmt: skip


ALIAS_MOVED = envelope("model_version_alias", "created",
                       {"name": "Diabetes", "alias": "champion", "version": "3"})  # fmt: skip


def headers(
    body: bytes, delivery: str = DELIVERY, sent: float = NOW, secret: str = SECRET
) -> dict[str, str]:
    """The headers MLflow sends with `body`, signed by MLflow's own function."""
    timestamp = str(int(sent))
    try:
        signed = _generate_hmac_signature(secret, delivery, timestamp, body.decode())
    except UnicodeDecodeError:  # MLflow sends JSON text only; a forger could send anything
        signed = W.signature(secret.encode(), delivery, timestamp, body)
    return {
        constants.WEBHOOK_DELIVERY_ID_HEADER: delivery,
        constants.WEBHOOK_TIMESTAMP_HEADER: timestamp,
        constants.WEBHOOK_SIGNATURE_HEADER: signed,
    }


def ids(window: float = 300, size: int = 1000) -> W.DeliveryIds:
    return W.DeliveryIds(window, size)


def test_the_header_names_and_signature_version_are_mlflows() -> None:
    assert (W.SIGNATURE, W.TIMESTAMP, W.DELIVERY_ID, W.SIGNATURE_VERSION) == (
        constants.WEBHOOK_SIGNATURE_HEADER, constants.WEBHOOK_TIMESTAMP_HEADER,
        constants.WEBHOOK_DELIVERY_ID_HEADER, constants.WEBHOOK_SIGNATURE_VERSION,
    )  # fmt: skip


@given(secret=st.text(min_size=1), delivery=st.uuids().map(str),
       timestamp=st.integers(0, 2**40).map(str), payload=st.text())  # fmt: skip
def test_the_signature_is_the_one_mlflow_computes(
    secret: str, delivery: str, timestamp: str, payload: str
) -> None:
    assert W.signature(secret.encode(), delivery, timestamp, payload.encode()) == (
        _generate_hmac_signature(secret, delivery, timestamp, payload)
    )


def test_a_signed_alias_move_names_its_registered_model() -> None:
    seen = ids()
    event = W.verify(SECRET.encode(), headers(ALIAS_MOVED), ALIAS_MOVED, NOW, seen)
    assert event == W.RegistryEvent(DELIVERY, "model_version_alias", "created", "Diabetes")
    assert event.result == "accepted"
    assert DELIVERY in seen


def test_header_names_are_looked_up_case_insensitively() -> None:
    lowered = CIMultiDict((k.lower(), v) for k, v in headers(ALIAS_MOVED).items())
    event = W.verify(SECRET.encode(), lowered, ALIAS_MOVED, NOW, ids())
    assert isinstance(event, W.RegistryEvent) and event.model == "Diabetes"


def every_event() -> list[tuple[str, str]]:
    """Every (entity, action) MLflow can send, from its own table of valid events."""
    return sorted(
        (entity.value, action.value)
        for entity, actions in VALID_ENTITY_ACTIONS.items()
        for action in actions
    )


@pytest.mark.parametrize(("entity", "action"), every_event())
def test_every_event_mlflow_sends_is_accepted_for_models_and_ignored_otherwise(
    entity: str, action: str
) -> None:
    event_type = WebhookEvent(entity, action)
    data = dict(get_example_payload_for_event(event_type))
    body = envelope(entity, action, data)
    event = W.verify(SECRET.encode(), headers(body), body, NOW, ids())
    assert isinstance(event, W.RegistryEvent)
    registered_model = WebhookEntity(entity) in {
        WebhookEntity.REGISTERED_MODEL, WebhookEntity.MODEL_VERSION,
        WebhookEntity.MODEL_VERSION_TAG, WebhookEntity.MODEL_VERSION_ALIAS,
    }  # fmt: skip
    assert (event.entity, event.action) == (entity, action)
    assert event.model == (data["name"] if registered_model else None)
    assert event.result == ("accepted" if registered_model else "ignored")


# --- refusals ----------------------------------------------------------------------------------


@given(data=st.data())
def test_any_tampered_byte_of_the_body_or_headers_is_refused(data: st.DataObject) -> None:
    sent = headers(ALIAS_MOVED)
    part = data.draw(st.sampled_from(["body", *sent]))
    original = ALIAS_MOVED if part == "body" else sent[part].encode()
    at = data.draw(st.integers(0, len(original) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[at]))
    tampered = original[:at] + bytes([byte]) + original[at + 1 :]
    body, got = ALIAS_MOVED, dict(sent)
    if part == "body":
        body = tampered
    else:
        got[part] = tampered.decode("latin-1")
    seen = ids()
    refused = W.verify(SECRET.encode(), got, body, NOW, seen)
    assert isinstance(refused, W.Refused)
    assert (refused.reason, refused.code) == ("bad_signature", 401)
    assert len(seen) == 0


def test_another_secret_is_refused() -> None:
    refused = W.verify(b"another", headers(ALIAS_MOVED), ALIAS_MOVED, NOW, ids())
    assert refused == W.Refused("bad_signature", "X-MLflow-Signature does not match the body")


def test_a_delivery_without_a_signature_is_refused_naming_the_header() -> None:
    unsigned = headers(ALIAS_MOVED)
    del unsigned[W.SIGNATURE]
    refused = W.verify(SECRET.encode(), unsigned, ALIAS_MOVED, NOW, ids())
    assert refused == W.Refused("missing_header", "missing header X-MLflow-Signature")
    assert refused.code == 400
    assert W.verify(SECRET.encode(), {}, ALIAS_MOVED, NOW, ids()) == W.Refused(
        "missing_header",
        "missing header X-MLflow-Delivery-Id, X-MLflow-Timestamp, X-MLflow-Signature",
    )


@pytest.mark.parametrize(
    ("age", "verdict"),
    [(0, "accepted"), (300, "accepted"), (301, "stale"), (86_400, "stale"), (-300, "accepted"),
     (-301, "stale")],
)  # fmt: skip
def test_a_delivery_signed_longer_ago_than_the_window_is_refused_as_stale(
    age: int, verdict: str
) -> None:
    body = ALIAS_MOVED
    got = W.verify(SECRET.encode(), headers(body, sent=NOW - age), body, NOW, ids(window=300))
    reason = got.result if isinstance(got, W.RegistryEvent) else got.reason
    assert reason == verdict
    if verdict == "stale":
        assert got == W.Refused(
            "stale", "X-MLflow-Timestamp is more than 300 s from the current time"
        )


def test_a_replayed_delivery_is_refused_and_the_first_one_still_counts() -> None:
    seen = ids()
    first = W.verify(SECRET.encode(), headers(ALIAS_MOVED), ALIAS_MOVED, NOW, seen)
    again = W.verify(SECRET.encode(), headers(ALIAS_MOVED), ALIAS_MOVED, NOW + 5, seen)
    assert isinstance(first, W.RegistryEvent)
    assert again == W.Refused("replayed", f"delivery {DELIVERY} was already received")
    assert again.code == 409
    other = W.verify(SECRET.encode(), headers(ALIAS_MOVED, delivery="another-id"), ALIAS_MOVED,
                     NOW + 5, seen)  # fmt: skip
    assert isinstance(other, W.RegistryEvent)


def test_a_refused_delivery_does_not_reserve_its_id() -> None:
    seen = ids()
    forged = {**headers(ALIAS_MOVED), W.SIGNATURE: "v1,AAAA"}
    assert W.verify(SECRET.encode(), forged, ALIAS_MOVED, NOW, seen).reason == "bad_signature"  # type: ignore[union-attr]
    assert isinstance(W.verify(SECRET.encode(), headers(ALIAS_MOVED), ALIAS_MOVED, NOW, seen),
                      W.RegistryEvent)  # fmt: skip


def test_a_signature_among_several_in_the_header_is_enough() -> None:
    sent = headers(ALIAS_MOVED)
    sent[W.SIGNATURE] = f"v1,bm90LXRoaXMtb25l v2,xyz {sent[W.SIGNATURE]}"
    assert isinstance(W.verify(SECRET.encode(), sent, ALIAS_MOVED, NOW, ids()), W.RegistryEvent)


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"not json", "the body is not JSON"), (b"\xff\xfe", "the body is not JSON"),
     (b"[1, 2]", "the body is not a JSON object"),
     (b'{"entity": "model_version", "action": "created"}', "the body lacks entity, action or data"),
     (b'{"entity": "model_version", "action": "created", "data": {"version": "1"}}',
      "a model_version event without data.name")],
)  # fmt: skip
def test_a_signed_body_that_is_not_an_mlflow_event_is_refused_as_malformed(
    body: bytes, message: str
) -> None:
    seen = ids()
    assert W.verify(SECRET.encode(), headers(body), body, NOW, seen) == W.Refused(
        "malformed", message
    )
    assert len(seen) == 0


# --- the ids remembered, and who follows a model -------------------------------------------------


def test_ids_are_remembered_for_the_window_and_at_most_size_of_them() -> None:
    seen = W.DeliveryIds(window_seconds=10, size=3)
    for i in range(5):
        seen.add(f"id{i}", NOW + i)
    assert [f"id{i}" in seen for i in range(5)] == [False, False, True, True, True]
    seen.forget(NOW + 13)  # id2 was let in at NOW + 2: older than 10 s now
    assert [f"id{i}" in seen for i in range(5)] == [False, False, False, True, True]
    assert len(seen) == 2


def test_the_model_deployments_serving_the_model_are_the_ones_affected() -> None:
    models = {("ml", "bikes"): "Bikes", ("ml", "taxis"): "Taxis", ("shop", "bikes-eu"): "Bikes"}
    assert W.following(models, "Bikes") == [("ml", "bikes"), ("shop", "bikes-eu")]
    assert W.following(models, "Boats") == []
