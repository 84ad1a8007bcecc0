"""Shadow traffic's decisions (`domain/shadow.py`): the admin PUT body, the lease, the share drawn
and the copy's wire form, with the clock and the random draw handed in."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout_serving.domain.shadow import (
    MAX_BATCH_COPIES,
    Decision,
    Lease,
    ShadowConfig,
    ShadowCopy,
    decode_batch,
    encode_batch,
    read_config,
)
from turnout_serving.errors import BadRequest

GOOD = {"target": "http://10.244.0.7:8080", "percent": 10, "maxRequestsPerSecond": 5,
        "ttlSeconds": 30}  # fmt: skip


def config(**changes: object) -> ShadowConfig:
    return read_config(json.dumps({**GOOD, **changes}).encode())


# --- the admin PUT body ---------------------------------------------------------------------


def test_a_good_body_reads_with_the_target_as_a_base_url() -> None:
    read = config(target="http://preview.ml.svc:8080/", token="s3cret")
    assert (read.target, read.percent, read.max_requests_per_second, read.ttl_seconds) == (
        "http://preview.ml.svc:8080", 10.0, 5.0, 30.0)  # fmt: skip
    assert read.token is not None and read.token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(read)
    assert config(target="https://gw.example/models/diabetes").target == (
        "https://gw.example/models/diabetes"
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target": "ftp://preview:21"}, "target: URL scheme should be 'http' or 'https'"),
        ({"target": "preview:8080"}, "target: URL scheme should be 'http' or 'https'"),
        ({"target": "not a url"}, "target: Input should be a valid URL"),
        ({"target": "http://u:p@preview:8080"}, "target: Value error, must be a base URL: no user info, query or fragment"),
        ({"target": "http://preview:8080/?x=1"}, "target: Value error, must be a base URL: no user info, query or fragment"),
        ({"target": 8080}, "target: Value error, must be a URL string"),
        ({"percent": 100.5}, "percent: Input should be less than or equal to 100"),
        ({"percent": -1}, "percent: Input should be greater than or equal to 0"),
        ({"percent": "10"}, "percent: Input should be a valid number"),
        ({"percent": True}, "percent: Input should be a valid number"),
        ({"maxRequestsPerSecond": 0}, "maxRequestsPerSecond: Input should be greater than 0"),
        ({"ttlSeconds": 0}, "ttlSeconds: Input should be greater than 0"),
        ({"ttlSeconds": 86401}, "ttlSeconds: Input should be less than or equal to 86400"),
        ({"ttl": 30}, "ttl: Extra inputs are not permitted"),
        ({"token": 5}, "token: Input should be a valid string"),
    ],
)  # fmt: skip
def test_a_wrong_field_is_a_400_naming_it(changes: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        config(**changes)
    assert refused.value.status_code == 400
    assert message in refused.value.message


def test_missing_fields_and_bodies_that_are_no_object_are_named() -> None:
    with pytest.raises(BadRequest, match="percent: Field required; maxRequestsPerSecond: Field "
                       "required; ttlSeconds: Field required"):  # fmt: skip
        read_config(b'{"target": "http://preview:8080"}')
    with pytest.raises(BadRequest, match="body: Input should be an object"):
        read_config(b"[]")
    with pytest.raises(BadRequest, match="body: Invalid JSON"):
        read_config(b"{")
    with pytest.raises(BadRequest, match="percent: Input should be a finite number"):
        read_config(json.dumps({**GOOD, "percent": 1e400}).encode())


# --- the lease ------------------------------------------------------------------------------


def test_the_share_drawn_is_percent_of_the_draws() -> None:
    lease = Lease(config(percent=25, maxRequestsPerSecond=1000), now=0.0)
    draws = [i / 100 for i in range(100)]
    decisions = [lease.decide(1.0, draw) for draw in draws]
    assert decisions.count(Decision.SEND) == 25
    assert decisions[:25] == [Decision.SEND] * 25
    assert set(decisions[25:]) == {Decision.NOT_DRAWN}


@pytest.mark.parametrize(("percent", "sent"), [(0, 0), (100, 100)])
def test_zero_percent_sends_nothing_and_a_hundred_sends_everything(
    percent: float, sent: int
) -> None:
    lease = Lease(config(percent=percent, maxRequestsPerSecond=1000), now=0.0)
    assert [lease.decide(0.0, draw / 100) for draw in range(100)].count(Decision.SEND) == sent
    assert lease.decide(0.0, 0.999999) is (Decision.SEND if percent == 100 else Decision.NOT_DRAWN)


def test_drawn_answers_over_the_rate_are_dropped_and_undrawn_ones_spend_nothing() -> None:
    lease = Lease(config(percent=50, maxRequestsPerSecond=2), now=0.0)
    assert [lease.decide(0.0, 0.9) for _ in range(10)] == [Decision.NOT_DRAWN] * 10
    assert [lease.decide(0.0, 0.1) for _ in range(3)] == [
        Decision.SEND, Decision.SEND, Decision.DROPPED_RATE]  # fmt: skip
    assert lease.decide(0.5, 0.1) is Decision.SEND  # one token back after half a second


def test_a_lease_expires_ttl_seconds_after_the_put_and_a_renewal_extends_it() -> None:
    lease = Lease(config(ttlSeconds=30, percent=100), now=100.0)
    assert lease.decide(129.9, 0.0) is Decision.SEND
    assert not lease.expired(129.9)
    assert lease.expired(130.0)
    assert lease.decide(130.0, 0.0) is Decision.EXPIRED
    renewed = lease.renewed(config(ttlSeconds=30, percent=100), now=120.0)
    assert renewed.expires_at == 150.0
    assert renewed.decide(149.0, 0.0) is Decision.SEND
    assert renewed.decide(150.0, 0.0) is Decision.EXPIRED


def test_a_renewal_keeps_the_bucket_unless_the_rate_changes() -> None:
    lease = Lease(config(percent=100, maxRequestsPerSecond=1), now=0.0)
    assert lease.decide(0.0, 0.0) is Decision.SEND
    same = lease.renewed(config(percent=100, maxRequestsPerSecond=1), now=0.0)
    assert same.decide(0.0, 0.0) is Decision.DROPPED_RATE  # a PUT is no way around the rate
    faster = same.renewed(config(percent=100, maxRequestsPerSecond=3), now=0.0)
    assert [faster.decide(0.0, 0.0) for _ in range(4)] == [Decision.SEND] * 3 + [
        Decision.DROPPED_RATE
    ]


# --- the copy on the wire -------------------------------------------------------------------


copies = st.builds(
    lambda **fields: ShadowCopy(**fields),  # by field name (hypothesis would read the aliases)
    protocol=st.sampled_from(["mlflow", "open_inference"]),
    content_type=st.one_of(st.none(), st.text(max_size=40)),
    path=st.sampled_from(["/invocations", "/v2/models/m/infer"]),
    request_id=st.text(min_size=1, max_size=128),
    body=st.binary(max_size=500),
    active_answer=st.binary(max_size=500),
    active_latency_seconds=st.floats(0, 1e6),
)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(batch=st.lists(copies, min_size=1, max_size=MAX_BATCH_COPIES))
def test_copies_read_back_as_they_were_written(batch: list[ShadowCopy]) -> None:
    wire = encode_batch(batch)
    assert decode_batch(wire) == batch
    assert {key for copy in json.loads(wire)["copies"] for key in copy} == {
        "protocol", "contentType", "path", "requestId", "body", "activeAnswer",
        "activeLatencySeconds"}  # fmt: skip


def one_copy() -> dict[str, object]:
    return dict(json.loads(encode_batch([ShadowCopy(
        protocol="mlflow", content_type="text/csv", path="/invocations", request_id="r-1",
        body=b"a\n1", active_answer=b'{"predictions": [1.0]}', active_latency_seconds=0.002,
    )]))["copies"][0])  # fmt: skip


def test_copies_with_fields_from_a_newer_server_read_and_broken_ones_name_their_fields() -> None:
    wire = one_copy()
    newer = {"copies": [{**wire, "activeColor": "blue"}], "sentAt": 1}
    assert decode_batch(json.dumps(newer).encode())[0].body == b"a\n1"
    broken = {**wire, "protocol": "grpc", "body": "not base64!", "activeLatencySeconds": -1}
    del broken["requestId"]
    with pytest.raises(BadRequest) as refused:
        decode_batch(json.dumps({"copies": [wire, broken]}).encode())
    assert refused.value.message == (
        "Invalid shadow copies: copies.1.protocol: Input should be 'mlflow' or 'open_inference'; "
        "copies.1.requestId: Field required; copies.1.body: Value error, is not valid base64: "
        "Only base64 data is allowed; copies.1.activeLatencySeconds: Input should be greater "
        "than or equal to 0"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"copies": []}, "copies: List should have at least 1 item after validation, not 0"),
        ({"copies": "x"}, "copies: Input should be a valid array"),
        ({}, "copies: Field required"),
    ],
)
def test_a_batch_holds_one_to_the_most_copies(body: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        decode_batch(json.dumps(body).encode())
    too_many = {"copies": [one_copy()] * (MAX_BATCH_COPIES + 1)}
    with pytest.raises(
        BadRequest, match=f"copies: List should have at most {MAX_BATCH_COPIES} items"
    ):
        decode_batch(json.dumps(too_many).encode())
