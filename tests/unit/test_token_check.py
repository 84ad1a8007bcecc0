"""Bearer-token auth of inference (`http.TokenCheck`): a valid token passes in
`Authorization: Bearer` or in `X-Turnout-Token` (the header that survives the Kubernetes API
server's service proxy), anything else is a 401 that names both."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from turnout_serving.errors import Unauthorized
from turnout_serving.http import TOKEN_HEADER, TokenCheck

TOKEN = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)


def request(headers: dict[str, str]) -> Request:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/invocations", "headers": raw})


def passes(check: TokenCheck, headers: dict[str, str]) -> bool:
    try:
        check.check(request(headers))
    except Unauthorized:
        return False
    return True


@given(
    tokens=st.lists(TOKEN, min_size=1, max_size=3),
    bearer=st.none() | TOKEN,
    scheme=st.sampled_from(["Bearer", "bearer", "Basic", "Token"]),
    custom=st.none() | TOKEN,
)
def test_a_request_passes_exactly_when_one_header_holds_a_configured_token(
    tokens: list[str], bearer: str | None, scheme: str, custom: str | None
) -> None:
    headers = {}
    if bearer is not None:
        headers["Authorization"] = f"{scheme} {bearer}"
    if custom is not None:
        headers[TOKEN_HEADER] = custom
    expected = (bearer in tokens and scheme.lower() == "bearer") or custom in tokens
    assert passes(TokenCheck(tokens), headers) is expected


@pytest.mark.parametrize(
    "headers",
    [
        {TOKEN_HEADER: "s3cret"},
        {"Authorization": "Bearer s3cret"},
        {"Authorization": "Basic dXNlcjpwYXNz", TOKEN_HEADER: "s3cret"},  # a gateway's own scheme
        {"Authorization": "Bearer wrong", TOKEN_HEADER: "s3cret"},
    ],
)
def test_either_header_carries_the_token(headers: dict[str, str]) -> None:
    assert passes(TokenCheck(["other", "s3cret"]), headers)


@pytest.mark.parametrize(
    "headers",
    [{}, {TOKEN_HEADER: ""}, {TOKEN_HEADER: "Bearer s3cret"}, {"Authorization": "s3cret"},
     {"Authorization": "Bearer "}, {"X-Api-Key": "s3cret"}],
)  # fmt: skip
def test_a_missing_or_wrong_token_is_refused_naming_both_headers(headers: dict[str, str]) -> None:
    with pytest.raises(Unauthorized) as refused:
        TokenCheck(["s3cret"]).check(request(headers))
    assert refused.value.status_code == 401
    assert refused.value.message == (
        "A valid bearer token is required (Authorization: Bearer <token>, or "
        "X-Turnout-Token: <token>)."
    )


def test_without_tokens_every_request_passes() -> None:
    assert passes(TokenCheck([]), {})
    assert passes(TokenCheck([""]), {TOKEN_HEADER: ""})
